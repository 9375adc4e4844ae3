"""vaekit: variational autoencoders, correct to the mathematics, fast, and pleasant to use.

>>> import vaekit
>>> model, summary = vaekit.train(vaekit.ModelConfig(latent_dim=8), vaekit.TrainConfig(epochs=5), "runs/demo")  # doctest: +SKIP
>>> model = vaekit.load("runs/demo")  # doctest: +SKIP

The public names are imported from their modules on first use, so that ``import vaekit`` (and
``vaekit --help``) does not pay for importing torch until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__  # noqa: F401

#: The public names by the module that defines them (relative to this package).
_EXPORTS: dict[str, tuple[str, ...]] = {
    ".batch": ("Batch", "make_batch"),
    ".config": ("ModelConfig", "TrainConfig"),
    ".data.builtin": ("DATASETS", "Dataset", "load_dataset", "register_dataset"),
    ".data.examples": ("ByteImages", "Examples"),
    ".data.prepare": ("load_examples", "load_labelled_split", "load_split", "prepare_data"),
    ".errors": ("VaekitError",),
    ".evaluation.embed": ("encode_means",),
    ".evaluation.metrics": ("bits_per_dim", "evaluate"),
    ".models": ("ELBO", "MODELS", "PRIORS", "VAE", "Headline", "Model", "ModelBase", "Prior", "StandardNormal",
                "build_model", "register_model", "register_prior"),
    ".models.distributions": ("DiagonalNormal", "diag_normal", "kl_diag_normal_standard", "kl_gaussian",
                              "standard_normal"),
    ".models.likelihoods": ("LIKELIHOODS", "Likelihood", "make_likelihood", "register_likelihood"),
    ".models.networks": ("ARCHS", "Decoder", "GaussianEncoder", "build_networks", "register_arch"),
    ".runs": ("Run", "load", "load_run"),
    ".training": ("fit", "resume", "train"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF, key=lambda name: (name.lower(), name))

if TYPE_CHECKING:  # what type checkers and editors see: the same names (tests/test_cli_startup.py)
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


def __getattr__(name: str) -> Any:
    """``vaekit.NAME``: a public name, imported from its module on first use; or a submodule
    (``vaekit.plots``), imported as the eager imports of earlier versions left it."""
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(_MODULE_OF[name], __name__), name)
    elif name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value  # once: later look-ups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
