"""A batch: the examples and whatever the data say about them, as one small typed mapping.

It flows unchanged from the data layer through ``fit``, the objectives, ``evaluate``, the
estimators, ``encode`` and ``score`` (scvi-tools passes its tensors the same way). ``x`` is
always there; ``y`` (int64 class labels, ``(B,)``) only where the data have labels. A model
reads what it needs: the VAE reads ``x``, a conditional model also ``y``.

A leaf module: it imports nothing from vaekit, so the model core and the data layer can both
use it.

Example
-------
>>> import torch
>>> b = make_batch(torch.zeros(4, 3), torch.arange(4))
>>> sorted(b), batch_len(b)
(['x', 'y'], 4)
>>> sorted(select(b, slice(0, 2)))
['x', 'y']
"""

from __future__ import annotations

from typing import Any, Mapping, TypedDict

import torch
from torch import Tensor

__all__ = ["Batch", "as_batch", "batch_len", "batch_to", "make_batch", "select"]


class _Examples(TypedDict):
    x: Tensor  # (B, *data_shape)


class Batch(_Examples, total=False):
    """``{"x": (B, *data_shape), "y": (B,) int64 labels}``; ``y`` only where the data have labels."""

    y: Tensor


def make_batch(x: Tensor, y: Tensor | None = None, **more: Tensor) -> Batch:
    """A batch of ``x``, with labels ``y`` and other per-example tensors when given."""
    batch: dict[str, Any] = {"x": x}
    if y is not None:
        batch["y"] = y
    batch.update({k: v for k, v in more.items() if v is not None})
    return batch  # type: ignore[return-value]


def as_batch(data: Batch | Mapping[str, Tensor] | Tensor) -> Batch:
    """A bare tensor as the batch ``{"x": data}``; a mapping as it is.

    The Python API takes either, so ``model.elbo(x)`` works as ``model.elbo({"x": x})`` does.
    """
    if isinstance(data, Tensor):
        return {"x": data}
    return data  # type: ignore[return-value]


def batch_len(batch: Mapping[str, Tensor]) -> int:
    """The number of examples in ``batch``."""
    return len(batch["x"])


def select(batch: Mapping[str, Tensor], idx: Any) -> Batch:
    """The examples ``idx`` (an index tensor or a slice) of every field."""
    return {k: v[idx] for k, v in batch.items()}  # type: ignore[return-value]


def batch_to(batch: Mapping[str, Tensor], device: torch.device | str, *, non_blocking: bool = False) -> Batch:
    """Every field moved to ``device``."""
    return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}  # type: ignore[return-value]
