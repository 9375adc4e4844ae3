"""What the training loop, the estimators, ``evaluate``, ``score`` and the CLI may call on a model.

One :class:`Model` protocol, checked once when a model is built (:func:`check_model`), instead
of ``hasattr`` probing at run time. Every estimator is written against :meth:`Model.log_weights`,
so a new model that implements the protocol gets the importance-weighted log-likelihood,
anomaly scores and any importance-weighted objective for free (pyro does the same with its
model and guide).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.distributions import Distribution

from ..batch import Batch
from ..config import ModelConfig
from ..errors import VaekitError


@dataclass(frozen=True)
class Headline:
    """The figure a model leads with, which ``evaluate`` reports and early stopping follows.

    Attributes
    ----------
    key : the field of the model's terms (``"elbo"``, ``"log_likelihood"``, ``"reconstruction"``)
    label : how people read it (``"ELBO"``)
    bounds_log_likelihood : whether it is ``log p(x)`` or a lower bound on it, so that bits per
        dimension and the importance-weighted gap make sense
    exact : whether it is ``log p(x)`` itself (no bound, no sampling)
    kl_estimated : whether its KL part is estimated by sampling (a prior with no closed form, or
        two stochastic layers) rather than exact
    """

    key: str
    label: str
    bounds_log_likelihood: bool
    exact: bool = False
    kl_estimated: bool = False


@runtime_checkable
class Model(Protocol):
    """A latent-variable model as vaekit uses it.

    ``batch`` is a :class:`vaekit.batch.Batch` (``{"x": ..., "y": ...}``); the Python API also
    accepts a bare tensor as ``{"x": tensor}``. Per-example figures are in nats, higher is better.
    """

    config: ModelConfig
    headline: ClassVar[Headline]
    #: False for a model fitted in closed form (PCA): ``fit_closed_form`` replaces the loop
    trains_by_gradient: ClassVar[bool]
    #: what the model is conditioned on, beside ``x`` (a conditional VAE: ``("y",)``)
    conditions: tuple[str, ...]

    @property
    def device(self) -> torch.device:
        """Where the model's tensors are (the estimators put each batch there)."""

    def prior(self) -> Distribution:
        """``pz``: the prior, a distribution over ``(latent_dim,)``."""

    def encode(self, batch: Batch) -> Distribution:
        """``qz = q(z|x, ...)``: batch shape ``(B,)``, event shape ``(latent_dim,)``."""

    def decode(self, z: Tensor, batch: Batch | None = None) -> Distribution:
        """``px_z = p(x|z, ...)``; ``z`` may carry leading sample axes, e.g. ``(K, B, L)``."""

    def log_weights(self, batch: Batch, k: int) -> Tensor:
        """``(k, B)``: ``log p(x, z_k) - log q(z_k|x)`` for ``k`` fresh draws ``z_k ~ q(z|x)``."""

    def elbo(self, batch: Batch, n_samples: int = 1) -> NamedTuple:
        """The terms the model reports, per example ``(B,)``; ``headline.key`` names the figure."""

    def training_loss(self, batch: Batch, *, beta: float = 1.0, free_bits: float = 0.0,
                      noise: Tensor | None = None) -> tuple[Tensor, NamedTuple]:
        """Per-example loss ``(B,)`` and the terms of :meth:`elbo` under the same draws. A model
        that trains on importance-weighted objectives also takes ``objective=`` and
        ``n_samples=`` (the loop passes them only when they are not the ELBO's)."""

    def draw_noise(self, n: int, generator: torch.Generator) -> Tensor | None:
        """The training loss's noise for ``n`` examples, examples first, from ``generator``
        (with ``n_samples`` K as a third argument when the run draws K per example)."""

    def sample(self, n: int, *, generator: torch.Generator | None = None, **conditions: Any) -> Tensor:
        """Means of ``p(x|z)`` for ``n`` draws of the prior (and the given conditions). vaekit's
        models also take ``draw=True`` (draws of ``p(x|z)``) and ``temperature=T``; the command
        line passes them only when asked, so a model may leave them out."""

    def reconstruct(self, batch: Batch) -> Tensor:
        """Means of ``p(x|z)`` at ``z = E_q[z]``."""

    def check_values(self, lo: float, hi: float, what: str) -> None:
        """Refuse, in one line naming ``what``, data whose values ``[lo, hi]`` the model gives no
        density to (``vaekit train`` and the commands call it before any work)."""

    def init_output_bias(self, mean: Tensor) -> None:
        """Start the generative model at the data's per-dimension ``mean`` (may do nothing)."""


def check_model(model: Any) -> None:
    """Refuse, in one line, a model that lacks part of :class:`Model` (checked once, at build)."""
    missing = [name for name in _MEMBERS if not hasattr(model, name)]
    if missing:
        raise VaekitError(f"{type(model).__name__} does not implement the vaekit model protocol: "
                          f"it lacks {', '.join(missing)}")
    if not isinstance(model.headline, Headline):
        raise VaekitError(f"{type(model).__name__}.headline must be a vaekit.models.Headline")


_MEMBERS = ("config", "headline", "trains_by_gradient", "conditions", "device", "prior", "encode", "decode", "log_weights", "elbo",
            "training_loss", "draw_noise", "sample", "reconstruct", "check_values", "init_output_bias")
