"""Closed-form divergences between Gaussians.

The ELBO's KL term is computed here in closed form; the tests check both functions against
``torch.distributions.kl_divergence`` and against Monte Carlo estimates.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from ..errors import VaekitError
from ..seeding import seeded

LOG_2PI = math.log(2 * math.pi)


class DiagonalNormal(Independent):
    """``N(loc, diag exp(logvar))`` over the last axis, remembering its log-variance.

    An encoder that computes ``log sigma^2`` hands it on, so the closed-form KL and
    ``log q(z|x)`` use it directly instead of taking the log of ``scale ** 2`` again (one
    ``exp``, no round trip). Arguments are not validated (a per-step cost); the training loop
    checks the loss instead.
    """

    def __init__(self, loc: Tensor, scale: Tensor, logvar: Tensor | None = None):
        super().__init__(Normal(loc, scale, validate_args=False), 1, validate_args=False)
        self.logvar = 2 * scale.log() if logvar is None else logvar

    @property
    def loc(self) -> Tensor:
        return self.base_dist.loc

    @property
    def scale(self) -> Tensor:
        return self.base_dist.scale

    def log_prob_of_noise(self, eps: Tensor) -> Tensor:
        """``log q(z)`` at ``z = loc + scale * eps``, summed over the last axis, from ``eps``.

        ``-1/2 (eps^2 + log sigma^2 + log 2 pi)``: the same number as ``log_prob(z)`` without
        recomputing ``(z - loc) / scale``.
        """
        return -0.5 * (eps.square() + self.logvar + LOG_2PI).sum(-1)


def diag_normal(loc: Tensor, scale: Tensor, logvar: Tensor | None = None) -> DiagonalNormal:
    """A Gaussian with diagonal covariance over the last axis: ``N(loc, diag(scale**2))``."""
    return DiagonalNormal(loc, scale, logvar)


def standard_normal(latent_dim: int, *, device=None, dtype=None) -> DiagonalNormal:
    """``N(0, I)`` of dimension ``latent_dim``."""
    zeros = torch.zeros(latent_dim, device=device, dtype=dtype)
    return DiagonalNormal(zeros, torch.ones_like(zeros), zeros)


def kl_diag_normal_standard(loc: Tensor, scale: Tensor | None = None, *, logvar: Tensor | None = None) -> Tensor:
    """``KL(N(loc, diag scale^2) || N(0, I))``, summed over the last axis.

    The closed form of Kingma and Welling (2013), appendix B, and of the seeds:
    ``1/2 (tr Sigma + mu^T mu - k - log det Sigma)``. Give ``scale`` or, cheaper and exact,
    ``logvar = log scale^2``.

    Parameters
    ----------
    loc, scale, logvar : Tensor, shape (..., k)

    Returns
    -------
    Tensor, shape (...)
    """
    return kl_diag_normal_standard_per_unit(loc, scale, logvar=logvar).sum(-1)


def kl_diag_normal_standard_per_unit(loc: Tensor, scale: Tensor | None = None, *,
                                     logvar: Tensor | None = None) -> Tensor:
    """The terms of :func:`kl_diag_normal_standard`, one per unit: shape ``(..., k)``."""
    if logvar is None:
        if scale is None:
            raise TypeError("give scale or logvar")
        logvar = 2 * scale.log()
    return 0.5 * (logvar.exp() + loc.square() - 1.0 - logvar)


def kl_gaussian(loc1: Tensor, cov1: Tensor, loc2: Tensor, cov2: Tensor) -> Tensor:
    """``KL(N(loc1, cov1) || N(loc2, cov2))`` for full covariance matrices.

    The formula of the seed tutorial (001):
    ``1/2 { tr(S2^-1 S1) + (m2 - m1)^T S2^-1 (m2 - m1) - k + log(det S2 / det S1) }``,
    evaluated through Cholesky factors for numerical stability.

    Parameters
    ----------
    loc1, loc2 : Tensor, shape (..., k)
    cov1, cov2 : Tensor, shape (..., k, k), symmetric positive definite

    Returns
    -------
    Tensor, shape (...)

    Examples
    --------
    >>> import torch
    >>> eye = torch.eye(2)
    >>> float(kl_gaussian(torch.zeros(2), eye, torch.zeros(2), eye))
    0.0
    """
    k = loc1.shape[-1]
    chol1 = torch.linalg.cholesky(cov1)
    chol2 = torch.linalg.cholesky(cov2)
    # tr(S2^-1 S1) = ||L2^-1 L1||_F^2
    m = torch.linalg.solve_triangular(chol2, chol1, upper=False)
    trace = m.square().sum((-2, -1))
    diff = (loc2 - loc1).unsqueeze(-1)
    mahalanobis = torch.linalg.solve_triangular(chol2, diff, upper=False).square().sum((-2, -1))
    logdet1 = 2 * chol1.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    logdet2 = 2 * chol2.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (trace + mahalanobis - k + logdet2 - logdet1)


# -- draws fixed by a generator -------------------------------------------------------------------

def gaussian_noise(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None, like: Tensor) -> Tensor:
    """``N(0, 1)`` noise of ``shape`` from ``generator`` (drawn on its device, so a CPU generator
    gives the same numbers for a model on any device), in ``like``'s dtype and on its device."""
    device = like.device if generator is None else generator.device
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=like.dtype).to(like.device)


def sample_with(dist: Distribution, shape: tuple[int, ...] | torch.Size = (), *,
                generator: torch.Generator | None = None, device: torch.device | None = None) -> Tensor:
    """``dist.sample(shape)``, fixed by ``generator`` when one is given.

    ``torch.distributions`` takes no generator, so the global random state is forked and seeded
    from it: the draw is fixed by the generator and leaves the caller's random state as it was.
    ``device``: where ``dist`` lives (its random state is forked too when it is a GPU).
    """
    if generator is None:
        return dist.sample(shape)
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    with seeded(seed, device if device is not None else generator.device):
        return dist.sample(shape)


def check_temperature(temperature: float) -> float:
    """Refuse a sampling temperature that is not a finite number at least 0 (one line)."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise VaekitError(f"temperature {temperature}: must be a finite number, at least 0")
    return float(temperature)
