"""The baselines the seeds compare VAEs against: a deterministic autoencoder and PCA.

Both are trained and evaluated through the same commands as the VAE (``--model ae|pca``) and
implement the same :class:`~vaekit.models.Model` protocol: ``encode`` (a distribution over
codes, here a point mass), ``decode``, ``reconstruct``, ``sample``, ``elbo`` (the terms each
reports, led by the figure its ``headline`` declares).

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
from torch.distributions import Independent, LowRankMultivariateNormal, Normal

from ..batch import Batch, as_batch
from ..config import ModelConfig, size_model
from ..errors import VaekitError
from .base import DecoderModel, ModelBase
from .distributions import DiagonalNormal, diag_normal, gaussian_noise
from .likelihoods import make_likelihood
from .networks import build_networks
from .priors import build_prior
from .protocol import Headline
from .registry import register_model


class AETerms(NamedTuple):
    """Per-example terms of the autoencoder's objective, shape ``(B,)``."""

    reconstruction: Tensor  # log p(x | z = loc(x)); not a bound on log p(x)


class PCATerms(NamedTuple):
    """Per-example terms of PCA read as probabilistic PCA, shape ``(B,)``."""

    log_likelihood: Tensor  # exact log p(x) under the PPCA model


def _point_mass(loc: Tensor) -> DiagonalNormal:
    # A Gaussian of (numerically) zero width, so that .mean, .sample and .rsample give the code.
    return diag_normal(loc, torch.full_like(loc, 1e-12))


@register_model("ae")
class Autoencoder(DecoderModel):
    """A deterministic autoencoder with the VAE's networks: ``z = loc(x)``, no noise, no KL."""

    headline = Headline("reconstruction", "log p(x|z=E_q[z])", bounds_log_likelihood=False)

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config = size_model(config)[0]  # unset sizes chosen from data_shape
        self.encoder, self.decoder = build_networks(config)
        self.likelihood = make_likelihood(config.likelihood, config.data_shape, gaussian_variance=config.gaussian_variance)
        # An autoencoder has no prior; N(0, I) only draws codes for `sample`, and its codes
        # follow no such law: that is what the VAE's KL term adds.
        self.prior = build_prior("standard", config.latent_dim)

    def _code(self, x: Tensor) -> Tensor:
        return self.encoder.loc_head(self.encoder.trunk(x))

    def encode(self, batch: Batch | Tensor) -> DiagonalNormal:
        return _point_mass(self._code(as_batch(batch)["x"]))

    def elbo(self, batch: Batch | Tensor, n_samples: int = 1) -> AETerms:
        """Not an ELBO: ``log p(x | z = loc(x))``, the autoencoder's objective (no bound)."""
        x = as_batch(batch)["x"]
        return AETerms(self.decode(self._code(x)).log_prob(x))

    def training_loss(self, batch: Batch | Tensor, **_) -> tuple[Tensor, AETerms]:
        """``-log p(x | z = loc(x))`` per example; the KL options do not apply."""
        terms = self.elbo(batch)
        return -terms.reconstruction, terms

    def log_weights(self, batch: Batch | Tensor, k: int) -> Tensor:
        raise VaekitError("an 'ae' model has no q(z|x) and no p(z) to weigh samples by; importance sampling "
                          "and the log-likelihood apply to a vae (or to pca, exactly)")


@register_model("pca")
class PCA(ModelBase):
    """PCA with ``latent_dim`` components, fitted in closed form by :meth:`fit_closed_form`.

    Codes are the principal-component scores ``U^T (x - mean)``; reconstructions are
    ``U U^T (x - mean) + mean``. As probabilistic PCA, ``W = U (Lambda - c I)^{1/2}`` and
    ``c`` the mean of the discarded eigenvalues give the exact ``log p(x) = log N(x | mean, W W^T + c I)``.
    """

    headline = Headline("log_likelihood", "log-likelihood", bounds_log_likelihood=True, exact=True)
    trains_by_gradient = False

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config = size_model(config)[0]  # unset sizes chosen from data_shape
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

    def marginal(self) -> LowRankMultivariateNormal:
        """``p(x) = N(mean, W W^T + c I)`` with ``W = U^T (Lambda - c I)^{1/2}``, in float64."""
        c = self.noise_variance.double()
        scale = (self.explained_variance.double() - c).clamp_min(0).sqrt()
        W = self.components.double().T * scale  # (D, L)
        return LowRankMultivariateNormal(self.mean.double(), W, c.expand(len(self.mean)))

    def prior(self) -> DiagonalNormal:
        """The law of the scores: ``N(0, diag(explained_variance))``."""
        return diag_normal(torch.zeros_like(self.explained_variance), self.explained_variance.sqrt())

    @torch.inference_mode()
    def sample_latent(self, n: int, generator: torch.Generator | None = None, *, temperature: float = 1.0) -> Tensor:
        """Scores ``z ~ N(0, T^2 diag(explained_variance))`` at temperature ``T``."""
        eps = gaussian_noise((n, self.latent_dim), generator, like=self.mean)
        return eps * (temperature * self.explained_variance.sqrt())

    def encode(self, batch: Batch | Tensor) -> DiagonalNormal:
        """A point mass at the scores ``U^T (x - mean)``."""
        x = as_batch(batch)["x"]
        return _point_mass((x.reshape(len(x), -1) - self.mean) @ self.components.T)

    def decode(self, z: Tensor, batch: Batch | None = None) -> Independent:
        """``N(U z + mean, c I)``: the projection back, with the discarded variance as noise."""
        loc = (z @ self.components + self.mean).reshape(*z.shape[:-1], *self.config.data_shape)
        return Independent(Normal(loc, self.noise_variance.sqrt().expand_as(loc)), len(self.config.data_shape))

    def elbo(self, batch: Batch | Tensor, n_samples: int = 1) -> PCATerms:
        """The exact ``log p(x)`` (no bound: PPCA's marginal is Gaussian)."""
        x = as_batch(batch)["x"]
        return PCATerms(self.marginal().log_prob(x.reshape(len(x), -1).double()).to(x.dtype))

    def training_loss(self, batch: Batch | Tensor, **_) -> tuple[Tensor, PCATerms]:
        raise VaekitError("a 'pca' model is fitted in closed form (fit_closed_form), not by gradient steps")

    def log_weights(self, batch: Batch | Tensor, k: int) -> Tensor:
        """``(k, B)``: with PPCA's exact posterior as the proposal every weight is ``p(x)`` itself."""
        ll = self.elbo(batch).log_likelihood
        return ll.expand(k, len(ll))
