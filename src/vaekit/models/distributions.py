"""Closed-form divergences between Gaussians.

The ELBO's KL term is computed here in closed form; the tests check both functions against
``torch.distributions.kl_divergence`` and against Monte Carlo estimates.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Independent, Normal


def diag_normal(loc: Tensor, scale: Tensor) -> Independent:
    """A Gaussian with diagonal covariance over the last axis: ``N(loc, diag(scale**2))``.

    Arguments are not validated (a per-step cost); the training loop checks the loss instead.
    """
    return Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)


def standard_normal(latent_dim: int, *, device=None, dtype=None) -> Independent:
    """The prior ``p(z) = N(0, I)`` of dimension ``latent_dim``."""
    zeros = torch.zeros(latent_dim, device=device, dtype=dtype)
    return diag_normal(zeros, torch.ones_like(zeros))


def kl_diag_normal_standard(loc: Tensor, scale: Tensor) -> Tensor:
    """``KL(N(loc, diag scale^2) || N(0, I))``, summed over the last axis.

    The closed form of Kingma and Welling (2013), appendix B, and of the seeds:
    ``1/2 (tr Sigma + mu^T mu - k - log det Sigma)``.

    Parameters
    ----------
    loc, scale : Tensor, shape (..., k)

    Returns
    -------
    Tensor, shape (...)
    """
    var = scale.square()
    return 0.5 * (var + loc.square() - 1.0 - var.log()).sum(-1)


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
