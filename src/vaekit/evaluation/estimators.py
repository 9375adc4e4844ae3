"""Estimators of log p(x): what the ELBO bounds, made measurable.

``log p(x) = ELBO(x) + KL(q(z|x) || p(z|x))`` (the seeds' identity). Both estimators below are
consistent for log p(x) as the number of samples grows and, by Jensen's inequality, biased low
for a finite number; their difference from the ELBO estimates the KL gap.

- :func:`log_likelihood`: importance sampling with q(z|x) as proposal (Burda et al. 2015,
  https://arxiv.org/abs/1509.00519, eq. 8): ``log 1/K sum_k p(x|z_k) p(z_k) / q(z_k|x)``. With
  K = 1 its expectation is the ELBO; it does not decrease in expectation as K grows.
- :func:`naive_log_likelihood`: the seeds' estimator ``log 1/K sum_k p(x|z_k)``, ``z_k ~ p(z)``:
  unbiased for p(x) but needing far more samples, since most z explain x poorly.

Both run over examples in batches and over the K samples in chunks, accumulating a running
log-sum-exp, so memory is bounded by ``batch_size * chunk_size`` decoder outputs whatever K is.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from ..seeding import seeded


def _chunked_logmeanexp(draw: Callable[[int], Tensor], n: int, chunk_size: int, batch: int, device) -> Tensor:
    """``log 1/n sum_k exp(w_k)`` for one batch, drawing the ``w`` in chunks of at most ``chunk_size``.

    ``draw(k)`` returns ``(k, B)`` log-weights for ``k`` fresh samples. A running log-sum-exp in
    float64 keeps memory at one chunk and loses no precision over many chunks.
    """
    acc = torch.full((batch,), -math.inf, dtype=torch.float64, device=device)
    done = 0
    while done < n:
        k = min(chunk_size, n - done)
        acc = torch.logaddexp(acc, torch.logsumexp(draw(k).double(), 0))
        done += k
    return acc - math.log(n)


def _batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int, device: torch.device) -> Tensor:
    return torch.cat([fn(x[i : i + batch_size].to(device, non_blocking=True)).cpu() for i in range(0, len(x), batch_size)])


def _auto_chunk(model, batch_size: int, budget: int = 2**22) -> int:
    """Samples per chunk so that one chunk's decoder output stays near ``budget`` numbers.

    On this project's 2-core machine, K = 1000 took 1.4x as long with chunks of 16M numbers
    as with 4M, and 1M was no faster (``benchmarks/speed_choices.py``, benchmarks/RESULTS.md).
    """
    per_sample = batch_size * math.prod(model.config.data_shape)
    return max(1, budget // per_sample)


@torch.inference_mode()
def log_likelihood(
    model,
    x: Tensor,
    n_importance: int = 1000,
    *,
    batch_size: int = 100,
    chunk_size: int | None = None,
    generator_seed: int | None = 0,
) -> Tensor:
    """Importance-weighted estimate of ``log p(x)`` per example, in nats (float64, CPU).

    Parameters
    ----------
    model : VAE
    x : Tensor, shape (N, *data_shape)
    n_importance : K, the number of importance samples per example
    batch_size : examples per batch
    chunk_size : samples per chunk (default: chosen so a chunk holds about 4M numbers)
    generator_seed : seed for the noise (``None``: the global random state)

    Returns
    -------
    Tensor, shape (N,)

    Examples
    --------
    >>> ll = log_likelihood(model, x_test, n_importance=5000)  # doctest: +SKIP
    """
    device = model.device
    chunk = chunk_size or _auto_chunk(model, batch_size)
    model.eval()

    def estimate(xb: Tensor) -> Tensor:
        qz = model.encode(xb)  # once per batch; each chunk draws from it
        pz = model.prior()

        def draw(k: int) -> Tensor:
            z = qz.rsample((k,))  # (k, B, L): the same noise draws as VAE.elbo
            return model.decode(z).log_prob(xb) + pz.log_prob(z) - qz.log_prob(z)

        return _chunked_logmeanexp(draw, n_importance, chunk, len(xb), xb.device)

    with seeded(generator_seed, device):
        return _batched(estimate, x, batch_size, device)


@torch.inference_mode()
def naive_log_likelihood(
    model,
    x: Tensor,
    n_samples: int = 1000,
    *,
    batch_size: int = 100,
    chunk_size: int | None = None,
    generator_seed: int | None = 0,
) -> Tensor:
    """The prior-sampling estimate ``log 1/K sum_k p(x|z_k)``, ``z_k ~ p(z)``, per example.

    Same interface as :func:`log_likelihood`, so the two can be compared sample for sample.
    """
    device = model.device
    chunk = chunk_size or _auto_chunk(model, batch_size)
    model.eval()

    def estimate(xb: Tensor) -> Tensor:
        pz = model.prior()

        def draw(k: int) -> Tensor:
            z = pz.sample((k, len(xb)))  # (k, B, L)
            return model.decode(z).log_prob(xb)

        return _chunked_logmeanexp(draw, n_samples, chunk, len(xb), xb.device)

    with seeded(generator_seed, device):
        return _batched(estimate, x, batch_size, device)


@torch.inference_mode()
def active_units(model, x: Tensor, *, threshold: float = 0.01, batch_size: int = 1000) -> int:
    """Latent units whose ``Cov_x(E_q[z_u])`` exceeds ``threshold`` (Burda et al. 2015, sec. 5.2)."""
    from .embed import encode_means

    means = encode_means(model, x, batch_size=batch_size).double()
    return int((means.var(0, unbiased=True) > threshold).sum())
