"""The model core: models and priors, networks, likelihoods, distributions.

It imports nothing from vaekit's data, training, evaluation or command line. A model is
anything that implements :class:`Model`; :func:`register_model` makes it buildable by name.
"""

from .base import DecoderModel, ModelBase
from .protocol import Headline, Model, check_model
from .registry import MODELS, build_model, register_model
from .priors import PRIORS, Prior, StandardNormal, build_prior, register_prior
from .terms import ELBO
from .two_layer import TwoLayerVAE
from .vae import VAE
from .baselines import PCA, Autoencoder  # noqa: F401  (registers ae and pca)
from . import resnet  # noqa: F401  (registers the resnet arch)

__all__ = ["DecoderModel", "ELBO", "Headline", "MODELS", "Model", "ModelBase", "PCA", "PRIORS", "Prior", "StandardNormal",
           "Autoencoder", "TwoLayerVAE", "VAE", "build_model", "build_prior", "check_model", "register_model", "register_prior"]
