"""Anomaly scores: how poorly the model explains each example (higher is more unusual)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import VaekitError
from ..seeding import seeded


@torch.inference_mode()
def anomaly_scores(model, x, *, method: str = "elbo", n_samples: int = 10, batch_size: int = 100,
                   seed: int = 0) -> Tensor:
    """One score per row of ``x``, in order (float64, CPU), in nats.

    ``method="elbo"``: the negative ELBO with ``E_q[log p(x|z)]`` averaged over ``n_samples``
    draws. ``method="iw"``: the negative importance-weighted log-likelihood with
    ``K = n_samples`` (tighter, costlier). Both are upper bounds on ``-log p(x)`` in expectation.
    """
    if not hasattr(model, "elbo"):
        raise VaekitError(f"score: a {model.config.model!r} model has no ELBO; anomaly scores need a vae")
    if method == "iw":
        from .estimators import log_likelihood

        return -log_likelihood(model, x, n_samples, batch_size=batch_size, generator_seed=seed)
    if method != "elbo":
        raise VaekitError(f"--method {method}: choose elbo or iw")
    device = model.device
    model.eval()
    out = []
    with seeded(seed, device):
        for i in range(0, len(x), batch_size):
            out.append(-model.elbo(x[i : i + batch_size].to(device), n_samples=n_samples).elbo.double().cpu())
    return torch.cat(out)
