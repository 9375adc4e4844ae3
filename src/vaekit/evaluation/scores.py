"""Anomaly scores: how poorly the model explains each example (higher is more unusual)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..data.examples import as_examples
from ..errors import VaekitError
from ..seeding import seeded
from .estimators import log_likelihood


@torch.inference_mode()
def anomaly_scores(model, data: Any, *, method: str = "elbo", n_samples: int = 10, batch_size: int = 100,
                   seed: int = 0) -> Tensor:
    """One score per example of ``data``, in order (float64, CPU), in nats.

    ``method="elbo"``: minus the model's headline figure (for a VAE the ELBO, with
    ``E_q[log p(x|z)]`` averaged over ``n_samples`` draws; for PCA the exact log-likelihood).
    ``method="iw"``: the negative importance-weighted log-likelihood with ``K = n_samples``
    (tighter, costlier). For a VAE both are upper bounds on ``-log p(x)`` in expectation.
    """
    headline = model.headline
    if not headline.bounds_log_likelihood:
        raise VaekitError(f"score: a {model.config.model!r} model has no bound on log p(x); anomaly scores need "
                          "a vae (or pca)")
    if method == "iw":
        return -log_likelihood(model, data, n_samples, generator_seed=seed)
    if method != "elbo":
        raise VaekitError(f"--method {method}: choose elbo or iw")
    model.eval()
    out = []
    with seeded(seed, model.device):
        for batch in as_examples(data).batches(batch_size, model.device):
            terms = model.elbo(batch, n_samples=n_samples)
            out.append(-getattr(terms, headline.key).double().cpu())
    return torch.cat(out)
