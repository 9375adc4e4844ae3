"""The encoder as a dimensionality reduction: latent means of the user's data."""

from __future__ import annotations

import torch
from torch import Tensor


@torch.inference_mode()
def encode_means(model, x: Tensor, *, batch_size: int = 1000) -> Tensor:
    """``E_q[z|x]`` for every row of ``x``, in order: ``(N, latent_dim)`` on the CPU."""
    device = model.device
    model.eval()
    return torch.cat([model.encode(x[i : i + batch_size].to(device)).mean.cpu() for i in range(0, len(x), batch_size)])
