"""Estimators of log p(x): what the ELBO bounds, made measurable.

``log p(x) = ELBO(x) + KL(q(z|x) || p(z|x))`` (the seeds' identity). Both estimators below are
consistent for log p(x) as the number of samples grows and, by Jensen's inequality, biased low
for a finite number; their difference from the ELBO estimates the KL gap.

- :func:`log_likelihood`: importance sampling with q(z|x) as proposal (Burda et al. 2015,
  https://arxiv.org/abs/1509.00519, eq. 8): ``log 1/K sum_k p(x|z_k) p(z_k) / q(z_k|x)``. With
  K = 1 its expectation is the ELBO; it does not decrease in expectation as K grows.
- :func:`naive_log_likelihood`: the seeds' estimator ``log 1/K sum_k p(x|z_k)``, ``z_k ~ p(z)``:
  unbiased for p(x) but needing far more samples, since most z explain x poorly.

Both are written against the model protocol alone: :func:`log_likelihood` needs only
``model.log_weights(batch, k)``, the naive estimator only ``prior()`` and ``decode(z, batch)``,
so they run unchanged on every model that implements :class:`vaekit.models.Model`. They run
over examples in batches and over the K samples in chunks, accumulating a running
log-sum-exp, so memory is bounded by about 1M decoder outputs whatever K is.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from ..batch import Batch
from ..data.examples import as_examples
from ..seeding import seeded

#: numbers one chunk of decoder outputs may hold. K = 1000 for 100 MNIST-sized images under a
#: 784-400-20 VAE took 0.39-0.47 s with chunks of 0.5M-2M numbers and 0.61-0.65 s with 4M on this
#: project's 2-core machine (2026-11-30, after the examples were batched so that one chunk
#: holds all K samples of an example); 16M had been 1.4x slower than 4M (benchmarks/RESULTS.md)
CHUNK_NUMBERS = 2**20


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


def _sizes(model, n: int, batch_size: int | None, chunk_size: int | None) -> tuple[int, int]:
    """Examples per batch and samples per chunk, so that a chunk's decoder output stays near
    :data:`CHUNK_NUMBERS` numbers. By default a batch takes as many examples as let all its K
    samples fit in one chunk (one encoder pass per example), and at least one."""
    dim = math.prod(model.config.data_shape)
    if batch_size is None:
        batch_size = max(1, min(100, CHUNK_NUMBERS // (n * dim)))
    chunk = chunk_size or max(1, CHUNK_NUMBERS // (batch_size * dim))
    return batch_size, chunk


def _estimate(model, data: Any, per_batch: Callable[[Batch], Tensor], batch_size: int, seed: int | None) -> Tensor:
    examples = as_examples(data)
    device = model.device
    model.eval()
    with seeded(seed, device):
        return torch.cat([per_batch(b).cpu() for b in examples.batches(batch_size, device)])


@torch.inference_mode()
def log_likelihood(
    model,
    data: Any,
    n_importance: int = 1000,
    *,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    generator_seed: int | None = 0,
) -> Tensor:
    """Importance-weighted estimate of ``log p(x)`` per example, in nats (float64, CPU).

    ``log 1/K sum_k w_k`` with ``log w_k = model.log_weights(batch, k)``: any model of the
    protocol, any prior, labels and all.

    Parameters
    ----------
    model : a :class:`vaekit.models.Model`
    data : :class:`vaekit.data.Examples`, or a tensor ``(N, *data_shape)`` of examples
    n_importance : K, the number of importance samples per example
    batch_size : examples per batch (default: as many as let their K samples fit one chunk)
    chunk_size : samples per chunk (default: chosen so a chunk holds about 1M numbers)
    generator_seed : seed for the noise (``None``: the global random state)

    Returns
    -------
    Tensor, shape (N,)

    Examples
    --------
    >>> ll = log_likelihood(model, x_test, n_importance=5000)  # doctest: +SKIP
    """
    batch_size, chunk = _sizes(model, n_importance, batch_size, chunk_size)

    def per_batch(batch: Batch) -> Tensor:
        draw = lambda k: model.log_weights(batch, k)  # noqa: E731  (k, B)
        return _chunked_logmeanexp(draw, n_importance, chunk, len(batch["x"]), batch["x"].device)

    return _estimate(model, data, per_batch, batch_size, generator_seed)


@torch.inference_mode()
def naive_log_likelihood(
    model,
    data: Any,
    n_samples: int = 1000,
    *,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    generator_seed: int | None = 0,
) -> Tensor:
    """The prior-sampling estimate ``log 1/K sum_k p(x|z_k)``, ``z_k ~ p(z)``, per example.

    Same interface as :func:`log_likelihood`, so the two can be compared sample for sample.
    """
    batch_size, chunk = _sizes(model, n_samples, batch_size, chunk_size)

    def per_batch(batch: Batch) -> Tensor:
        pz = model.prior()
        B = len(batch["x"])
        draw = lambda k: model.decode(pz.sample((k, B)), batch).log_prob(batch["x"])  # noqa: E731  (k, B)
        return _chunked_logmeanexp(draw, n_samples, chunk, B, batch["x"].device)

    return _estimate(model, data, per_batch, batch_size, generator_seed)


@torch.inference_mode()
def active_units(model, data: Any, *, threshold: float = 0.01, batch_size: int = 1000) -> int:
    """Latent units whose ``Cov_x(E_q[z_u])`` exceeds ``threshold`` (Burda et al. 2015, sec. 5.2)."""
    from .embed import encode_means

    means = encode_means(model, data, batch_size=batch_size).double()
    return int((means.var(0, unbiased=True) > threshold).sum())
