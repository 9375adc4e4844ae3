"""The encoder as a dimensionality reduction: latent means (and scales) of the user's data."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..data.examples import as_examples


@torch.inference_mode()
def encode(model, data: Any, *, batch_size: int = 1000) -> tuple[Tensor, Tensor]:
    """``(loc, scale)`` of ``q(z|x)`` for every example, in order, each ``(N, latent_dim)`` on
    the CPU. ``data``: :class:`vaekit.data.Examples` (a conditional encoder reads their labels),
    or a tensor or lazy array of examples (read a batch at a time)."""
    model.eval()
    locs, scales = [], []
    for batch in as_examples(data).batches(batch_size, model.device):
        qz = model.encode(batch)
        locs.append(qz.mean.cpu())
        scales.append(qz.stddev.cpu())
    return torch.cat(locs), torch.cat(scales)


def encode_means(model, data: Any, *, batch_size: int = 1000) -> Tensor:
    """``E_q[z|x]`` for every example, in order: ``(N, latent_dim)`` on the CPU."""
    return encode(model, data, batch_size=batch_size)[0]
