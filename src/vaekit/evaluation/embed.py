"""The encoder as a dimensionality reduction: latent means (and scales) of the user's data."""

from __future__ import annotations

import torch
from torch import Tensor


@torch.inference_mode()
def encode(model, x, *, batch_size: int = 1000) -> tuple[Tensor, Tensor]:
    """``(loc, scale)`` of ``q(z|x)`` for every row of ``x``, in order, each ``(N, latent_dim)`` on
    the CPU. ``x`` is a tensor or a lazy array (read a batch at a time)."""
    device = model.device
    model.eval()
    locs, scales = [], []
    for i in range(0, len(x), batch_size):
        qz = model.encode(x[i : i + batch_size].to(device))
        locs.append(qz.mean.cpu())
        scales.append(qz.stddev.cpu())
    return torch.cat(locs), torch.cat(scales)


def encode_means(model, x, *, batch_size: int = 1000) -> Tensor:
    """``E_q[z|x]`` for every row of ``x``, in order: ``(N, latent_dim)`` on the CPU."""
    return encode(model, x, batch_size=batch_size)[0]
