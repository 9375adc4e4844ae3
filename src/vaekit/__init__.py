"""vaekit: variational autoencoders, correct to the mathematics, fast, and pleasant to use.

>>> import vaekit
>>> model, summary = vaekit.train(vaekit.ModelConfig(latent_dim=8), vaekit.TrainConfig(epochs=5), "runs/demo")  # doctest: +SKIP
>>> model = vaekit.load("runs/demo")  # doctest: +SKIP
"""

__version__ = "0.1.0"

from .config import ModelConfig, TrainConfig
from .data.builtin import DATASETS, Dataset, load_dataset, register_dataset
from .models.distributions import diag_normal, kl_diag_normal_standard, kl_gaussian, standard_normal
from .evaluation.embed import encode_means
from .errors import VaekitError
from .evaluation.metrics import bits_per_dim, evaluate
from .models.likelihoods import LIKELIHOODS, Likelihood, make_likelihood, register_likelihood
from .models.vae import ELBO, VAE
from .models.networks import ARCHS, Decoder, GaussianEncoder, build_networks, register_arch
from .runs import Run, load, load_run
from .data.prepare import ByteImages, load_labelled_split, load_split, prepare_data
from .training.loop import fit, resume, train

__all__ = [
    "ARCHS", "ByteImages", "DATASETS", "Dataset", "Decoder", "ELBO", "GaussianEncoder", "LIKELIHOODS", "Likelihood",
    "ModelConfig", "Run", "TrainConfig", "VAE", "VaekitError", "bits_per_dim", "build_networks",
    "diag_normal", "encode_means", "evaluate", "fit", "kl_diag_normal_standard", "kl_gaussian", "load",
    "load_dataset", "load_labelled_split", "load_run", "load_split", "make_likelihood", "prepare_data", "register_arch",
    "register_dataset", "register_likelihood", "resume", "standard_normal", "train",
]
