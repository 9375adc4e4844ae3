"""Examples and their labels, kept together from the data layer to the model.

:class:`Examples` holds the examples ``x`` (a tensor, :class:`ByteImages`
or a lazy array read a batch at a time) and, where the data have them, the labels ``y``.
Indexing it gives a :class:`vaekit.batch.Batch`, the mapping every model takes, so the labels
of a labelled dataset reach ``fit``, ``evaluate``, the estimators, ``encode`` and ``score``
without any of them asking for labels by name.

Example
-------
>>> import torch
>>> ex = Examples(torch.zeros(5, 3), torch.arange(5))
>>> len(ex), ex.shape, ex[torch.tensor([0, 4])]["y"].tolist()
(5, (5, 3), [0, 4])
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import Tensor

from ..batch import Batch, make_batch
from ..errors import VaekitError

__all__ = ["ByteImages", "Examples", "as_examples"]


class ByteImages:
    """8-bit images held as they are stored, read as float32 grey levels ``k / 255`` a batch
    at a time: a quarter of the memory of the float32 array (MNIST's training set: 47 MB
    instead of 188 MB), the same values. Indexing returns what indexing the float32 array
    would (``benchmarks/RESULTS.md`` measures the memory it saves in training).

    Example
    -------
    >>> x = ByteImages(torch.tensor([[0, 255]], dtype=torch.uint8))
    >>> x[0].tolist()
    [0.0, 1.0]
    """

    dtype = torch.float32

    def __init__(self, data: Tensor):
        if data.dtype != torch.uint8:
            raise VaekitError(f"ByteImages holds uint8 images, got {data.dtype}")
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"ByteImages(shape={self.shape})"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def __getitem__(self, idx) -> Tensor:
        if _is_row_index(idx):  # a batch of whole rows: one index_select, then k / 255 in one pass
            return torch.index_select(self.data, 0, idx).div(255.0)
        return self.data[idx].float().div_(255.0)

    def subset(self, indices: Tensor) -> "ByteImages":
        return ByteImages(self.data[indices])

    def to(self, device: torch.device | str) -> "ByteImages":
        """The same images on ``device``, still as bytes (a quarter of the copy's traffic)."""
        return ByteImages(self.data.to(device))


class Examples:
    """``x`` (``(N, *shape)``) and optional int64 labels ``y`` (``(N,)``), indexed together.

    ``ids``, where the data have them (a table's ``id_column``), are the examples' names as
    strings, one per example; they ride along with ``subset`` and ``head`` but never reach a model.
    """

    def __init__(self, x: Any, y: Tensor | None = None, ids: Sequence[str] | None = None):
        if y is not None and len(y) != len(x):
            raise VaekitError(f"{len(x)} examples but {len(y)} labels")
        if ids is not None and len(ids) != len(x):
            raise VaekitError(f"{len(x)} examples but {len(ids)} ids")
        self.x, self.y = x, y
        self.ids = None if ids is None else list(ids)

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        return f"Examples(shape={self.shape}, labels={'yes' if self.y is not None else 'no'})"

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of ``x``, ``(N, *data_shape)``."""
        return tuple(self.x.shape)

    @property
    def in_memory(self) -> bool:
        """Whether ``x`` is held in memory (a tensor or bytes), not read lazily from a file."""
        return isinstance(self.x, (Tensor, ByteImages))

    def __getitem__(self, idx: Any) -> Batch:
        """The batch of examples ``idx`` (an index tensor or a slice)."""
        x = torch.index_select(self.x, 0, idx) if isinstance(self.x, Tensor) and _is_row_index(idx) else self.x[idx]
        return make_batch(x, None if self.y is None else self.y[idx])

    def batches(self, batch_size: int, device: torch.device | str | None = None) -> Iterator[Batch]:
        """Consecutive batches in order, each moved to ``device``."""
        for i in range(0, len(self), batch_size):
            batch = self[i : i + batch_size]
            yield batch if device is None else {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    def subset(self, indices: Tensor) -> "Examples":
        """The examples ``indices``, with their labels."""
        x = self.x[indices] if isinstance(self.x, Tensor) else self.x.subset(indices)
        ids = None if self.ids is None else [self.ids[int(i)] for i in indices]
        return Examples(x, None if self.y is None else self.y[indices], ids)

    def with_x(self, x: Any) -> "Examples":
        """The same labels and ids with other examples ``x`` (transformed or binarized)."""
        return Examples(x, self.y, self.ids)

    def head(self, n: int) -> "Examples":
        """The first ``n`` examples."""
        return self.subset(torch.arange(min(n, len(self))))

    def to(self, device: torch.device | str) -> "Examples":
        """In-memory examples on ``device`` (lazy arrays stay where they are)."""
        x = self.x.to(device) if self.in_memory else self.x
        return Examples(x, None if self.y is None else self.y.to(device), self.ids)


def _is_row_index(idx: Any) -> bool:
    """A 1-D integer tensor of row numbers: ``index_select`` copies whole rows, 3x faster than
    advanced indexing for a batch of 128 MNIST images here (55 against 19 us), same values."""
    return isinstance(idx, Tensor) and idx.dim() == 1 and idx.dtype in (torch.int64, torch.int32)


def as_examples(data: Any, labels: Tensor | None = None) -> Examples:
    """``data`` as :class:`Examples`: examples as they are, a mapping ``{"x": ..., "y": ...}``,
    or a tensor, :class:`ByteImages` or lazy array of examples (with
    ``labels`` when given)."""
    if isinstance(data, Examples):
        return data
    if isinstance(data, Mapping):
        return Examples(data["x"], data.get("y"))
    return Examples(data, labels)
