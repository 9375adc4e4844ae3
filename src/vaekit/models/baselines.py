"""The baselines the seeds compare VAEs against: a deterministic autoencoder and PCA.

Both are trained and evaluated through the same commands as the VAE (``--model ae|pca``) and
share its interface: ``encode`` (a distribution over codes, here a point mass), ``decode``,
``reconstruct``, ``sample``, ``objective``.

- ``ae``: the VAE's own networks and likelihood, no sampling and no KL: it maximizes
  ``log p(x | z = loc(x))``. With ``--arch linear --likelihood gaussian`` that is the squared
  error of a linear autoencoder, whose decoder spans the PCA subspace (Baldi and Hornik 1989;
  the third seed).
- ``pca``: principal component analysis (scikit-learn), read as probabilistic PCA with its
  closed-form maximum-likelihood noise variance (Tipping and Bishop 1999), so it has an exact
  log-likelihood to report beside its reconstruction error. Its codes are the principal
  component scores.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Independent, Normal

from ..evaluation import ppca
from ..config import ModelConfig
from .distributions import diag_normal, standard_normal
from .likelihoods import make_likelihood
from .vae import LatentVariableModel, register_model
from .networks import build_networks


class AETerms(NamedTuple):
    """Per-example terms of the autoencoder's objective, shape ``(B,)``."""

    reconstruction: Tensor  # log p(x | z = loc(x)); not a bound on log p(x)


class PCATerms(NamedTuple):
    """Per-example terms of PCA read as probabilistic PCA, shape ``(B,)``."""

    log_likelihood: Tensor  # exact log p(x) under the PPCA model


def _point_mass(loc: Tensor) -> Independent:
    # A Gaussian of (numerically) zero width, so that .mean, .sample and .rsample give the code.
    return diag_normal(loc, torch.full_like(loc, 1e-12))


@register_model("ae")
class Autoencoder(LatentVariableModel):
    """A deterministic autoencoder with the VAE's networks: ``z = loc(x)``, no noise, no KL."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder, self.decoder = build_networks(config)
        self.likelihood = make_likelihood(config.likelihood, config.data_shape, gaussian_variance=config.gaussian_variance)
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    def prior(self) -> Independent:
        # An autoencoder has no prior; N(0, I) only draws codes for `sample`, and its codes
        # follow no such law: that is what the VAE's KL term adds.
        return standard_normal(self.latent_dim, device=self._zero.device, dtype=self._zero.dtype)

    def code(self, x: Tensor) -> Tensor:
        return self.encoder.loc_head(self.encoder.trunk(x))

    def encode(self, x: Tensor) -> Independent:
        return _point_mass(self.code(x))

    def decode(self, z: Tensor):
        return self.likelihood(self.decoder(z))

    def objective(self, x: Tensor) -> AETerms:
        return AETerms(self.decode(self.code(x)).log_prob(x))

    def draw_noise(self, n: int, generator: torch.Generator) -> None:
        return None  # deterministic: no noise

    def forward(self, x: Tensor, **kwargs) -> tuple[Tensor, AETerms]:
        return self.training_loss(x, **kwargs)

    def training_loss(self, x: Tensor, **_) -> tuple[Tensor, AETerms]:
        """``-log p(x | z = loc(x))`` per example; the KL options do not apply."""
        terms = self.objective(x)
        return -terms.reconstruction, terms


@register_model("pca")
class PCA(LatentVariableModel):
    """PCA with ``latent_dim`` components, fitted in closed form by :meth:`fit_closed_form`.

    Codes are the principal-component scores ``U^T (x - mean)``; reconstructions are
    ``U U^T (x - mean) + mean``. As probabilistic PCA, ``W = U (Lambda - c I)^{1/2}`` and
    ``c`` the mean of the discarded eigenvalues give the exact ``log p(x)``.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d = math.prod(config.data_shape)
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("components", torch.zeros(config.latent_dim, d))  # (L, D), orthonormal rows
        self.register_buffer("explained_variance", torch.ones(config.latent_dim))
        self.register_buffer("noise_variance", torch.ones(()))

    @torch.no_grad()
    def fit_closed_form(self, x: Tensor) -> "PCA":
        """Fit on ``x`` (N, *data_shape) with scikit-learn's PCA (an SVD)."""
        from sklearn.decomposition import PCA as SkPCA

        flat = x.reshape(len(x), -1).double().cpu().numpy()
        sk = SkPCA(n_components=self.latent_dim, svd_solver="full").fit(flat)
        as_t = lambda a: torch.as_tensor(a, dtype=self.mean.dtype, device=self.mean.device)  # noqa: E731
        self.mean.copy_(as_t(sk.mean_))
        self.components.copy_(as_t(sk.components_))
        self.explained_variance.copy_(as_t(sk.explained_variance_))
        self.noise_variance.copy_(as_t(max(float(sk.noise_variance_), 1e-12)))
        return self

    def as_ppca(self) -> ppca.LinearGaussian:
        c = float(self.noise_variance)
        scale = (self.explained_variance.double() - c).clamp_min(0).sqrt()
        return ppca.LinearGaussian(self.components.double().T * scale, self.mean.double(), c)

    def prior(self) -> Independent:
        """The law of the scores: ``N(0, diag(explained_variance))``."""
        return diag_normal(torch.zeros_like(self.explained_variance), self.explained_variance.sqrt())

    def encode(self, x: Tensor) -> Independent:
        """A point mass at the scores ``U^T (x - mean)``."""
        return _point_mass((x.reshape(len(x), -1) - self.mean) @ self.components.T)

    def decode(self, z: Tensor) -> Independent:
        """``N(U z + mean, c I)``: the projection back, with the discarded variance as noise."""
        loc = (z @ self.components + self.mean).reshape(*z.shape[:-1], *self.config.data_shape)
        return Independent(Normal(loc, self.noise_variance.sqrt().expand_as(loc)), len(self.config.data_shape))

    def objective(self, x: Tensor) -> PCATerms:
        return PCATerms(ppca.exact_log_likelihood(self.as_ppca(), x).to(x.dtype))
