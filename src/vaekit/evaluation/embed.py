"""The encoder as a dimensionality reduction: latent means (and scales) of the user's data, and
straight lines between them."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..data.examples import as_examples
from ..errors import VaekitError


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


def random_pairs(n_examples: int, pairs: int, seed: int = 0) -> Tensor:
    """``(P, 2)`` indices of ``P = min(pairs, n_examples // 2)`` pairs of distinct examples, no
    example in two pairs, chosen at random by ``seed`` (the same seed, the same pairs)."""
    order = torch.randperm(n_examples, generator=torch.Generator().manual_seed(seed))
    return order[: 2 * min(pairs, n_examples // 2)].reshape(-1, 2)


def interpolate_pairs(model, data: Any, *, pairs: int, steps: int, seed: int = 0,
                      what: str = "the data") -> tuple[Tensor, Tensor]:
    """Decoded straight lines between the latent means of random pairs of examples of ``data``
    (see :func:`random_pairs`): ``(P * steps, *data_shape)``, one line after another, each from
    its first example to its second, and the pairs' indices ``(P, 2)``. ``what`` names the data
    in the one-line refusal of fewer than two examples."""
    examples = as_examples(data)
    if len(examples) < 2:
        raise VaekitError(f"{what}: {len(examples)} example(s); a straight line needs two")
    chosen = random_pairs(len(examples), pairs, seed)
    x = examples[chosen.flatten()]["x"].to(model.device)
    lines = [model.interpolate(x[i], x[i + 1], steps) for i in range(0, len(x), 2)]
    return torch.cat(lines), chosen
