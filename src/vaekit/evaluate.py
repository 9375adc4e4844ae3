"""Held-out figures: the ELBO and its parts in nats per example, and bits per dimension."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def bits_per_dim(log_likelihood_nats: float, n_dims: int) -> float:
    """``-log p(x) / (D ln 2)``: a log-likelihood in nats per example as bits per dimension."""
    return -log_likelihood_nats / (n_dims * math.log(2))


@torch.inference_mode()
def evaluate(model, x: Tensor, *, batch_size: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Mean test ELBO, its parts, and bits per dimension.

    The reparameterized noise is drawn from a generator seeded with ``seed``, so the same
    model and data give the same figures every time (this is how ``vaekit evaluate`` reproduces
    the figure that training logged).

    Parameters
    ----------
    model : VAE
    x : Tensor, shape (N, *data_shape)
    batch_size : int
    seed : int

    Returns
    -------
    dict with ``elbo``, ``reconstruction`` (E_q[log p(x|z)]), ``kl`` (nats per example; the ELBO
    is higher-is-better and equals reconstruction - kl), ``bits_per_dim`` and ``n_examples``.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for i in range(0, len(x), batch_size):
            terms = model.elbo(x[i : i + batch_size].to(device, non_blocking=True))
            totals += torch.stack([t.sum(dtype=torch.float64) for t in terms])
    model.train(was_training)
    n = len(x)
    elbo, rec, kl = (totals / n).tolist()
    n_dims = math.prod(x.shape[1:])
    return {"elbo": elbo, "reconstruction": rec, "kl": kl, "bits_per_dim": bits_per_dim(elbo, n_dims), "n_examples": n}
