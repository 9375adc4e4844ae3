"""Observation models p(x|z): the one place where the likelihood choice lives.

A decoder network maps ``z`` to a tensor shaped like the data (logits or means); a
``Likelihood`` turns that tensor into a ``torch.distributions`` object whose ``log_prob``
sums over all data dimensions. Every metric (ELBO, importance sampling, anomaly scores) is
then written once, against ``log_prob``.

Register a new likelihood with :func:`register_likelihood`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import (Bernoulli, ContinuousBernoulli, Distribution, Independent, LowRankMultivariateNormal,
                                 Normal, constraints)

from ..errors import VaekitError

LIKELIHOODS: dict[str, Callable[..., "Likelihood"]] = {}


def register_likelihood(name: str):
    """Class decorator adding a likelihood to the registry under ``name``."""

    def wrap(cls):
        LIKELIHOODS[name] = cls
        cls.name = name
        return cls

    return wrap


def make_likelihood(name: str, data_shape: tuple[int, ...], *, gaussian_variance: float = 0.1) -> "Likelihood":
    """Build the likelihood registered as ``name`` for data of shape ``data_shape``."""
    if name == "auto":
        raise VaekitError("likelihood 'auto' is chosen from the data by vaekit.train; to build a model "
                          f"directly name one of: {', '.join(sorted(LIKELIHOODS))}")
    if name not in LIKELIHOODS:
        raise VaekitError(f"unknown likelihood {name!r}; choose one of: {', '.join(sorted(LIKELIHOODS))}")
    return LIKELIHOODS[name](data_shape, gaussian_variance=gaussian_variance)


class Likelihood(nn.Module):
    """Base class: ``forward(out)`` returns ``p(x|z)`` with the data axes as its event."""

    name: str = ""
    #: values the data must lie in, or None when any real number is allowed
    support: tuple[float, float] | None = None

    def __init__(self, data_shape: tuple[int, ...], **_: float):
        super().__init__()
        self.data_shape = tuple(data_shape)

    def forward(self, out: Tensor) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def _independent(self, dist: Distribution) -> Independent:
        return Independent(dist, len(self.data_shape), validate_args=False)

    def output_for_mean(self, mean: Tensor) -> Tensor:
        """The decoder output whose ``p(x|z)`` has mean ``mean``: the identity for Gaussians."""
        return mean

    def check_range(self, lo: float, hi: float, what: str) -> None:
        """Refuse data whose values ``[lo, hi]`` this likelihood gives no density to (one line)."""
        if self.support is None:
            return
        s_lo, s_hi = self.support
        if lo < s_lo or hi > s_hi:
            raise VaekitError(
                f"{what}: values lie in [{lo:g}, {hi:g}], outside [{s_lo:g}, {s_hi:g}] that the "
                f"{self.name!r} likelihood needs; use --likelihood gaussian or gaussian-learned, "
                "or rescale the data"
            )


@register_likelihood("bernoulli")
class BernoulliLikelihood(Likelihood):
    """``p(x|z) = prod_d Bernoulli(x_d | sigmoid(f(z)_d))``: the cross-entropy loss.

    Exact for binary data. On grey levels in [0, 1] it is the usual cross-entropy objective,
    which is not a normalized density (see ``continuous-bernoulli`` for one that is).
    """

    support = (0.0, 1.0)

    def output_for_mean(self, mean: Tensor) -> Tensor:
        """Logits of the mean, clamped away from 0 and 1 (all-black pixels give no -inf)."""
        return torch.logit(mean.clamp(1e-3, 1 - 1e-3))

    def forward(self, out: Tensor) -> Distribution:
        # validate_args=False lets grey-level targets through, as the cross-entropy does.
        return _BernoulliLogits(Bernoulli(logits=out, validate_args=False), len(self.data_shape), validate_args=False)


class _BernoulliLogits(Independent):
    """Independent Bernoullis whose ``log_prob`` is ``-binary_cross_entropy_with_logits`` summed.

    With one draw per example (training) that is PyTorch's fused kernel, whose gradient is one
    fused ``sigmoid(l) - x``: the batched product below would run one tiny product per example
    and cost about 12 % of a step for the 784-400-20 VAE at batch 128 (benchmarks/RESULTS.md).
    With K importance samples the logits are ``(K, B, D)`` and ``x`` is ``(B, D)``: then ``x . logits - sum softplus(logits)``, the same
    number, without broadcasting ``x`` to a ``(K, B, D)`` copy (K = 1000 on 100 MNIST images:
    3.12 s against 3.49 s, benchmarks/RESULTS.md).
    """

    def log_prob(self, value: Tensor) -> Tensor:
        n = self.reinterpreted_batch_ndims
        logits = self.base_dist.logits
        x = value.to(logits.dtype)
        if x.numel() == logits.numel():  # one draw per example (training): one fused kernel and a
            # fused gradient, sigmoid(l) - x; x broadcast over a sample axis of size 1 is a view
            return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").flatten(-n).sum(-1)
        logits, x = logits.flatten(-n), x.flatten(-n)  # (..., B, D), (B, D): x shared by the sample axes
        return torch.einsum("...bd,bd->...b", logits, x) - F.softplus(logits).sum(-1)


@register_likelihood("continuous-bernoulli")
class ContinuousBernoulliLikelihood(Likelihood):
    """The continuous Bernoulli of Loaiza-Ganem and Cunningham (2019), a true density on [0, 1]."""

    support = (0.0, 1.0)

    def output_for_mean(self, mean: Tensor) -> Tensor:
        # The continuous Bernoulli's mean is not sigmoid(logit); the log-odds are a fair start.
        return torch.logit(mean.clamp(1e-3, 1 - 1e-3))

    def forward(self, out: Tensor) -> Distribution:
        return self._independent(ContinuousBernoulli(logits=out, validate_args=False))


@register_likelihood("gaussian")
class GaussianLikelihood(Likelihood):
    """``p(x|z) = N(x | f(z), c I)`` with fixed variance ``c`` (``gaussian_variance``).

    ``-log p(x|z) = ||x - f(z)||^2 / (2c) + D/2 log(2 pi c)``: the weighted L2 loss of the seeds
    plus the constant that makes the ELBO a bound in nats.
    """

    def __init__(self, data_shape: tuple[int, ...], *, gaussian_variance: float = 0.1, **_: float):
        super().__init__(data_shape)
        if not gaussian_variance > 0:
            raise VaekitError(f"gaussian_variance must be positive, got {gaussian_variance}")
        # float64 so that c is exact whatever the model's dtype; cast where used
        self.register_buffer("scale", torch.tensor(math.sqrt(gaussian_variance), dtype=torch.float64), persistent=False)

    def forward(self, out: Tensor) -> Distribution:
        return self._independent(Normal(out, self.scale.to(out.dtype).expand_as(out), validate_args=False))


@register_likelihood("gaussian-learned")
class LearnedGaussianLikelihood(Likelihood):
    """``p(x|z) = N(x | f(z), diag s^2)`` with one learned scale ``s_d`` per data dimension.

    ``s = min_scale + softplus(raw)`` keeps the density bounded (no variance collapse onto
    constant pixels). It starts at ``sqrt(gaussian_variance)``.
    """

    min_scale = 1e-3

    def __init__(self, data_shape: tuple[int, ...], *, gaussian_variance: float = 0.1, **_: float):
        super().__init__(data_shape)
        floor = self.min_scale**2
        if not gaussian_variance > floor or not math.isfinite(gaussian_variance):
            raise VaekitError(f"--gaussian-variance {gaussian_variance:g}: gaussian-learned starts its variance there, "
                              f"which must be finite and above its floor {floor:g} (scale {self.min_scale:g})")
        start = math.sqrt(gaussian_variance) - self.min_scale
        raw = start + math.log(-math.expm1(-start))  # softplus^-1(start), stable for large and small start
        self.raw_scale = nn.Parameter(torch.full(self.data_shape, raw))

    @property
    def scale(self) -> Tensor:
        return self.min_scale + F.softplus(self.raw_scale)

    def forward(self, out: Tensor) -> Distribution:
        return self._independent(Normal(out, self.scale.to(out.dtype).expand_as(out), validate_args=False))


@register_likelihood("gaussian-lowrank")
class LowRankGaussianLikelihood(LearnedGaussianLikelihood):
    """``p(x|z) = N(x | f(z), W W^T + diag s^2)``: the learned scales of ``gaussian-learned``
    plus a learned ``D x r`` factor ``W`` (``r = min(D, max_rank)``), the same for every ``z``.

    The noise around the decoder's mean may then be correlated across dimensions: the columns of
    a table that measure one thing several ways (a radius, a perimeter, an area) no longer have
    to be explained through ``z`` alone, which a diagonal ``p(x|z)`` must do. With ``z`` ignored
    it is probabilistic PCA with ``r`` components, and a full-covariance Gaussian when
    ``r = D``. ``log_prob`` is ``torch.distributions.LowRankMultivariateNormal``'s (Woodbury:
    ``O(D r)`` an example once the ``r x r`` capacitance is factored, once per batch).

    ``W`` starts small and random (``W = 0`` is a stationary point of the likelihood, which the
    gradient would never leave).
    """

    max_rank = 32
    init_scale = 1e-2

    def __init__(self, data_shape: tuple[int, ...], *, gaussian_variance: float = 0.1, **_: float):
        super().__init__(data_shape, gaussian_variance=gaussian_variance)
        d = math.prod(self.data_shape)
        start = self.init_scale * math.sqrt(gaussian_variance)
        self.cov_factor = nn.Parameter(torch.randn(d, min(d, self.max_rank)) * start)

    def forward(self, out: Tensor) -> Distribution:
        n = len(self.data_shape)
        if out.dtype in (torch.float16, torch.bfloat16):  # --precision bf16: the Cholesky of the capacitance in float32
            out = out.float()
        factor = self.cov_factor.to(out.dtype)
        flat = LowRankMultivariateNormal(out.flatten(-n), factor, self.scale.to(out.dtype).flatten().square(),
                                         validate_args=False)
        return _Unflattened(flat, self.data_shape)


class _Unflattened(Distribution):
    """A distribution over flat vectors ``(..., D)`` seen over ``data_shape`` (``D`` = its size).

    Not ``TransformedDistribution(flat, ReshapeTransform(...))``: that one has no ``mean``, which
    ``reconstruct`` and ``sample(draw=False)`` read."""

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = True

    def __init__(self, flat: Distribution, data_shape: tuple[int, ...]):
        self.flat, self.shape_ = flat, tuple(data_shape)
        super().__init__(flat.batch_shape, torch.Size(data_shape), validate_args=False)

    def _view(self, v: Tensor) -> Tensor:
        return v.reshape(*v.shape[:-1], *self.shape_)

    @property
    def mean(self) -> Tensor:
        return self._view(self.flat.mean)

    @property
    def variance(self) -> Tensor:
        return self._view(self.flat.variance)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        return self._view(self.flat.rsample(sample_shape))

    def log_prob(self, value: Tensor) -> Tensor:
        return self.flat.log_prob(value.flatten(-len(self.shape_)))

    def entropy(self) -> Tensor:
        return self.flat.entropy()
