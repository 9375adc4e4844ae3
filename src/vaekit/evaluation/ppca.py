"""The exactly solvable case: a linear-Gaussian VAE is probabilistic PCA.

With ``p(z) = N(0, I)`` and ``p(x|z) = N(W z + b, c I)`` (``--arch linear --likelihood
gaussian``), everything the estimators approximate is known in closed form
(Tipping and Bishop 1999, https://doi.org/10.1111/1467-9868.00196):

- ``p(x) = N(x | b, W W^T + c I)``;
- ``p(z|x) = N(M^-1 W^T (x - b), c M^-1)`` with ``M = W^T W + c I``;
- the maximum-likelihood ``W`` for fixed ``c`` is ``U_L (Lambda_L - c I)^{1/2} R`` (``U_L``, ``Lambda_L``
  the leading eigenvectors and eigenvalues of the sample covariance, ``R`` any rotation, and
  eigenvalues below ``c`` giving zero columns), ``b`` the sample mean, and for free ``c`` the
  ML variance is the mean of the discarded eigenvalues.

These are the references against which vaekit's estimators are tested.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from ..errors import VaekitError


class LinearGaussian(NamedTuple):
    """``W`` (D, L), ``b`` (D,), ``c`` (a float): ``x = W z + b + sqrt(c) eps``."""

    W: Tensor
    b: Tensor
    c: float


def marginal(params: LinearGaussian) -> MultivariateNormal:
    """``p(x) = N(b, W W^T + c I)``."""
    W, b, c = params
    cov = W @ W.T + c * torch.eye(len(b), dtype=W.dtype, device=W.device)
    return MultivariateNormal(b, covariance_matrix=cov)


def exact_log_likelihood(params: LinearGaussian, x: Tensor) -> Tensor:
    """``log p(x)`` per row of ``x`` (N, D), exactly."""
    return marginal(params).log_prob(x.reshape(len(x), -1).to(params.W.dtype))


def posterior(params: LinearGaussian, x: Tensor) -> tuple[Tensor, Tensor]:
    """The exact ``p(z|x)``: means ``(N, L)`` and the shared covariance ``(L, L)``."""
    W, b, c = params
    M = W.T @ W + c * torch.eye(W.shape[1], dtype=W.dtype, device=W.device)
    loc = torch.linalg.solve(M, W.T @ (x.reshape(len(x), -1).to(W.dtype) - b).T).T
    return loc, c * torch.linalg.inv(M)


def ml_solution(x: Tensor, latent_dim: int, c: float | None = None) -> LinearGaussian:
    """The closed-form maximum-likelihood PPCA for data ``x`` (N, D).

    With ``c=None`` the noise variance is fitted too (the mean of the discarded eigenvalues).
    """
    x = x.reshape(len(x), -1).double()
    b = x.mean(0)
    cov = (x - b).T @ (x - b) / len(x)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    evals, evecs = evals.flip(0), evecs.flip(1)
    if c is None:
        if latent_dim >= x.shape[1]:
            raise VaekitError("ml_solution: latent_dim must be below the data dimension to fit c")
        c = float(evals[latent_dim:].mean())
    scale = (evals[:latent_dim] - c).clamp_min(0).sqrt()
    return LinearGaussian(evecs[:, :latent_dim] * scale, b, float(c))


def from_model(model) -> LinearGaussian:
    """``(W, b, c)`` of a VAE built with ``arch='linear'`` and ``likelihood='gaussian'``."""
    cfg = model.config
    if cfg.arch != "linear" or cfg.likelihood != "gaussian":
        raise VaekitError("a linear-Gaussian model needs arch 'linear' and likelihood 'gaussian'")
    (layer,) = [m for m in model.decoder.net.modules() if isinstance(m, torch.nn.Linear)]
    return LinearGaussian(layer.weight.detach().double(), layer.bias.detach().double(), cfg.gaussian_variance)


@torch.no_grad()
def set_decoder(model, params: LinearGaussian) -> None:
    """Load ``W`` and ``b`` into the linear decoder of ``model`` (``c`` lives in its config)."""
    (layer,) = [m for m in model.decoder.net.modules() if isinstance(m, torch.nn.Linear)]
    layer.weight.copy_(params.W)
    layer.bias.copy_(params.b)


@torch.no_grad()
def set_exact_posterior(model, params: LinearGaussian) -> None:
    """Set the encoder heads of a linear VAE to the exact posterior ``p(z|x)``.

    Exact only when ``W^T W`` is diagonal, since ``q(z|x)`` has a diagonal covariance; that is
    the case at the ML solution and for ``W`` with orthogonal columns.
    """
    W, b, c = params
    M = W.T @ W + c * torch.eye(W.shape[1], dtype=W.dtype)
    off = M - torch.diag(M.diagonal())
    if off.abs().max() > 1e-8 * M.abs().max():
        raise VaekitError("set_exact_posterior: W^T W is not diagonal, so no diagonal q(z|x) is exact")
    A = torch.linalg.solve(M, W.T)  # (L, D): loc = A (x - b)
    enc = model.encoder
    enc.loc_head.weight.copy_(A)
    enc.loc_head.bias.copy_(-A @ b)
    enc.logvar_head.weight.zero_()
    enc.logvar_head.bias.copy_(torch.log(c / M.diagonal()))


def principal_angles(A: Tensor, B: Tensor) -> Tensor:
    """Principal angles (radians, ascending) between the column spaces of ``A`` and ``B`` (D x k)."""
    qa, _ = torch.linalg.qr(A.double())
    qb, _ = torch.linalg.qr(B.double())
    s = torch.linalg.svdvals(qa.T @ qb).clamp(-1, 1)
    return torch.arccos(s).flip(0)
