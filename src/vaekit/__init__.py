"""vaekit: variational autoencoders, correct to the mathematics, fast, and pleasant to use.

>>> import vaekit
>>> model, summary = vaekit.train(vaekit.ModelConfig(latent_dim=8), vaekit.TrainConfig(epochs=5), "runs/demo")  # doctest: +SKIP
>>> model = vaekit.load("runs/demo")  # doctest: +SKIP
"""

from .version import __version__  # noqa: F401

from .batch import Batch, make_batch
from .config import ModelConfig, TrainConfig
from .data.builtin import DATASETS, Dataset, load_dataset, register_dataset
from .data.examples import ByteImages, Examples
from .data.prepare import load_examples, load_labelled_split, load_split, prepare_data
from .errors import VaekitError
from .evaluation.embed import encode_means
from .evaluation.metrics import bits_per_dim, evaluate
from .models import (ELBO, MODELS, PRIORS, VAE, Headline, Model, ModelBase, Prior, StandardNormal, build_model,
                     register_model, register_prior)
from .models.distributions import DiagonalNormal, diag_normal, kl_diag_normal_standard, kl_gaussian, standard_normal
from .models.likelihoods import LIKELIHOODS, Likelihood, make_likelihood, register_likelihood
from .models.networks import ARCHS, Decoder, GaussianEncoder, build_networks, register_arch
from .runs import Run, load, load_run
from .training import fit, resume, train

__all__ = [
    "ARCHS", "Batch", "ByteImages", "DATASETS", "Dataset", "Decoder", "DiagonalNormal", "ELBO", "Examples",
    "GaussianEncoder", "Headline", "LIKELIHOODS", "Likelihood", "MODELS", "Model", "ModelBase", "ModelConfig",
    "PRIORS", "Prior", "Run", "StandardNormal", "TrainConfig", "VAE", "VaekitError", "bits_per_dim", "build_model",
    "build_networks", "diag_normal", "encode_means", "evaluate", "fit", "kl_diag_normal_standard", "kl_gaussian",
    "load", "load_dataset", "load_examples", "load_labelled_split", "load_run", "load_split", "make_batch",
    "make_likelihood", "prepare_data", "register_arch", "register_dataset", "register_likelihood", "register_model",
    "register_prior", "resume", "standard_normal", "train",
]
