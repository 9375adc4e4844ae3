"""Held-out figures: the ELBO and its parts in nats per example, and bits per dimension."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .seeding import seeded


def bits_per_dim(log_likelihood_nats: float, n_dims: int) -> float:
    """``-log p(x) / (D ln 2)``: a log-likelihood in nats per example as bits per dimension."""
    return -log_likelihood_nats / (n_dims * math.log(2))


@torch.inference_mode()
def evaluate(model, x: Tensor, *, batch_size: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Mean held-out objective terms, reconstruction error, and bits per dimension.

    The sampling noise is drawn with the random state seeded by ``seed``, so the same model and
    data give the same figures every time (this is how ``vaekit evaluate`` reproduces the
    figure that training logged).

    Parameters
    ----------
    model : VAE, Autoencoder or PCA (anything with ``objective`` and ``reconstruct``)
    x : Tensor, shape (N, *data_shape)
    batch_size : int
    seed : int

    Returns
    -------
    dict with the mean of every term of ``model.objective`` in nats per example (for a VAE:
    ``elbo``, ``reconstruction`` = E_q[log p(x|z)] and ``kl``; the ELBO is higher-is-better and
    equals reconstruction - kl), ``bits_per_dim`` (of the ELBO, or of an exact log-likelihood),
    ``reconstruction_error`` (squared error per example at z = E_q[z], summed over dimensions)
    and ``n_examples``.
    """
    device = model.device
    was_training = model.training
    model.eval()
    sums, names = None, ()
    with seeded(seed, device):
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(device, non_blocking=True)
            terms = model.objective(xb)
            sq_err = (model.reconstruct(xb) - xb).square().flatten(1).sum(1)
            batch = torch.stack([t.sum(dtype=torch.float64) for t in (*terms, sq_err)])
            sums, names = (batch if sums is None else sums + batch), terms._fields
    model.train(was_training)
    n = len(x)
    means = dict(zip((*names, "reconstruction_error"), (sums / n).tolist()))
    bound = means.get("elbo", means.get("log_likelihood"))
    n_dims = math.prod(x.shape[1:])
    result = {k: means[k] for k in names}
    if bound is not None:
        result["bits_per_dim"] = bits_per_dim(bound, n_dims)
    result["reconstruction_error"] = means["reconstruction_error"]
    result["n_examples"] = n
    return result
