"""Data as a model sees it: splits, the transforms a run remembers, the likelihood the data call for.

``prepare_data`` turns a dataset (built-in or the user's file) into training, validation and
test sets and describes what it did in a JSON-ready ``info`` dict that the run directory keeps:
kind, per-example shape, table columns, class names, the transform with its fitted numbers,
the split. ``load_labelled_split`` reads new data for a trained model and applies exactly that
transform, refusing data of another shape or column set.

Arrays too large for memory arrive as a lazy array (``vaekit.sources.MemmapArray``); every
function here then works a batch at a time and never reads the whole file at once.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor

from ..config import BINARIZE_MODES, TrainConfig
from .builtin import DATASETS, Dataset, binarize, load_dataset
from ..errors import VaekitError

# Fixed seed of the one-off binarization of held-out data: the same test set for every run.
HELDOUT_BINARIZE_SEED = 0
CHUNK_ROWS = 4096


# -- lazy arrays ---------------------------------------------------------------------------------

def chunks(x, rows: int = CHUNK_ROWS) -> Iterator[Tensor]:
    """All rows of a tensor or a lazy array, ``rows`` at a time."""
    for i in range(0, len(x), rows):
        yield x[i : i + rows]


def value_range(x) -> tuple[float, float]:
    """``(min, max)`` over all values, streamed for lazy arrays."""
    if isinstance(x, Tensor):
        return float(x.min()), float(x.max())
    lo, hi = float("inf"), float("-inf")
    for c in chunks(x):
        lo, hi = min(lo, float(c.min())), max(hi, float(c.max()))
    return lo, hi


def column_moments(x) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and standard deviation over the rows, in float64, streamed.

    Chunks of about 256K numbers (2 MiB in float64), whatever the row length: with chunks of
    4096 MNIST rows the float64 copies raised a process's peak memory by up to 113 MiB
    (``benchmarks/speed_choices.py``).
    """
    n, total, total_sq = 0, None, None
    for c in chunks(x, rows=max(1, 2**18 // max(1, math.prod(x.shape[1:])))):
        c = c.double()
        s, s2 = c.sum(0), c.square().sum(0)
        total = s if total is None else total + s
        total_sq = s2 if total_sq is None else total_sq + s2
        n += len(c)
    mean = total / n
    var = (total_sq / n - mean.square()).clamp_min(0)
    return mean, var.sqrt()


class Transformed:
    """A lazy array whose rows pass through ``fn`` when read: a batch at a time."""

    def __init__(self, source, fn):
        self.source, self.fn = source, fn

    def __len__(self) -> int:
        return len(self.source)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.source.shape)

    def __getitem__(self, idx) -> Tensor:
        return self.fn(self.source[idx])

    def subset(self, indices: Tensor) -> "Transformed":
        return Transformed(self.source.subset(indices), self.fn)


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
        return self.data[idx].float().div_(255.0)

    def subset(self, indices: Tensor) -> "ByteImages":
        return ByteImages(self.data[indices])

    def to(self, device: torch.device | str) -> "ByteImages":
        """The same images on ``device``, still as bytes (a quarter of the copy's traffic)."""
        return ByteImages(self.data.to(device))


# -- the transform a run remembers ---------------------------------------------------------------

@dataclass
class Standardize:
    """``(x - mean) / std`` per column, with the training split's numbers (std 0 -> 1)."""

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, x) -> "Standardize":
        mean, std = column_moments(x)
        return cls(mean.float(), torch.where(std > 1e-12, std, torch.ones_like(std)).float())

    def __call__(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "standardize", "mean": self.mean.tolist(), "std": self.std.tolist()}


def transform_from_dict(d: dict[str, Any] | None):
    """The transform recorded in a run's config, or ``None`` for none."""
    if not d or d.get("kind") in (None, "none"):
        return None
    if d["kind"] == "standardize":
        return Standardize(torch.tensor(d["mean"], dtype=torch.float32), torch.tensor(d["std"], dtype=torch.float32))
    raise VaekitError(f"unknown transform {d['kind']!r} in the run's config")


def _apply(transform, x):
    if transform is None:
        return x
    return transform(x) if isinstance(x, Tensor) else Transformed(x, transform)


# -- the likelihood the data call for -------------------------------------------------------------

def choose_likelihood(kind: str, lo: float, hi: float) -> tuple[str, str]:
    """``(name, reason)``: Bernoulli for data in [0, 1] that are not a table, else a Gaussian
    with learned variance (standardized tables, real-valued arrays)."""
    if kind != "table" and lo >= 0 and hi <= 1:
        what = "binary data" if kind != "image" else "images in [0, 1]"
        return "bernoulli", what
    return "gaussian-learned", "a table" if kind == "table" else f"real values in [{lo:g}, {hi:g}]"


# -- splits ---------------------------------------------------------------------------------------

@dataclass
class Splits:
    """Training, validation and test data as the model sees them (binarized if asked).

    Each is a float tensor ``(N, *shape)`` or a lazy array read a batch at a time.
    """

    train: Any
    val: Any | None
    test: Any
    info: dict[str, Any]
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None


def source_options(cfg: TrainConfig) -> dict[str, Any]:
    """The options that say how a user's file is read (recorded, so new data is read alike)."""
    opts: dict[str, Any] = {}
    if cfg.label_column is not None:
        opts["label_column"] = cfg.label_column
    if cfg.image_size is not None:
        opts["image_size"] = tuple(cfg.image_size)
    if cfg.grayscale:
        opts["grayscale"] = True
    if cfg.memmap is not None:
        opts["memmap"] = cfg.memmap
    return opts


def _take(x, idx: Tensor):
    return x[idx] if isinstance(x, Tensor) else x.subset(idx)


def prepare_data(cfg: TrainConfig) -> Splits:
    """Load ``cfg.data``, hold out ``cfg.val_fraction`` of the training set (split by
    ``cfg.seed``), fit and apply the transform, and binarize as ``cfg.binarize`` says.

    A built-in dataset has its own test set. A user's file is all training data: its held-out
    validation split serves as the test set of the run's summary (``info["test_split"]``).

    ``static`` binarization draws every split once; ``dynamic`` leaves the training set grey
    for :func:`vaekit.fit` to draw afresh in every batch; held-out sets are drawn once with a
    fixed seed so that figures are comparable across runs.
    """
    if cfg.binarize not in BINARIZE_MODES:
        raise VaekitError(f"--binarize {cfg.binarize}: unknown mode; choose one of: {', '.join(BINARIZE_MODES)}")
    if not 0 <= cfg.val_fraction < 1:
        raise VaekitError(f"--val-fraction {cfg.val_fraction}: must lie in [0, 1)")
    ds = load_dataset(cfg.data, cfg.data_dir, **source_options(cfg))
    n = len(ds.train)
    gen = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(n, generator=gen)
    n_val = int(round(cfg.val_fraction * n))
    if cfg.val_fraction > 0 and n_val == 0:
        n_val = 1  # asked for a held-out part: at least one example
    if n_val >= n:
        raise VaekitError(f"--val-fraction {cfg.val_fraction}: leaves no training examples of {n}")
    if ds.test is None and n_val == 0:
        raise VaekitError(f"{cfg.data}: a file of your own needs a held-out part for the figures; use --val-fraction above 0")
    train_idx, val_idx = perm[n_val:], perm[:n_val]
    train, val = _take(ds.train, train_idx), (_take(ds.train, val_idx) if n_val else None)
    labels = ds.train_labels
    train_labels = labels[train_idx] if labels is not None else None
    if ds.test is not None:
        test, test_labels, test_split = ds.test, ds.test_labels, "test"
    else:
        test, test_labels, test_split = val, (labels[val_idx] if labels is not None else None), "val"

    transform = Standardize.fit(train) if ds.kind == "table" else None
    train, val, test = (_apply(transform, x) if x is not None else None for x in (train, val, test))

    if cfg.binarize != "none":
        if not isinstance(ds.train, Tensor) and cfg.binarize == "static":
            raise VaekitError(f"{cfg.data}: --binarize static needs the data in memory; use --binarize dynamic")
        lo, hi = value_range(train)
        if lo < 0 or hi > 1:
            raise VaekitError(f"{cfg.data}: values lie in [{lo:g}, {hi:g}]; --binarize needs values in [0, 1]")
        fixed = torch.Generator().manual_seed(HELDOUT_BINARIZE_SEED)
        heldout = torch.cat(list(chunks(test))) if not isinstance(test, Tensor) else test
        test = binarize(heldout, fixed)
        if test_split == "val":
            val = test
        elif val is not None:
            val = binarize(val if isinstance(val, Tensor) else torch.cat(list(chunks(val))), fixed)
        if cfg.binarize == "static":
            train = binarize(train, torch.Generator().manual_seed(cfg.seed))
    info = {
        "name": ds.name,
        "kind": ds.kind,
        "shape": list(ds.shape),
        "columns": ds.columns,
        "classes": ds.classes,
        "transform": transform.to_dict() if transform is not None else {"kind": "none"},
        "n_train": len(train),
        "n_val": 0 if val is None else len(val),
        "n_test": len(test),
        "test_split": test_split,
        "split_seed": cfg.seed,
        "val_fraction": cfg.val_fraction,
        "in_memory": isinstance(ds.train, Tensor),
    }
    return Splits(train, val, test, info, train_labels, test_labels)


def _is_file(name: str) -> bool:
    return name not in DATASETS and (os.path.exists(name) or name.endswith((".npy", ".npz", ".csv", ".tsv")))


def load_labelled_split(
    train_config: TrainConfig,
    split: str = "test",
    *,
    data: str | None = None,
    data_dir: str | os.PathLike | None = None,
    data_shape: tuple[int, ...] | None = None,
    data_info: dict[str, Any] | None = None,
) -> tuple[Any, Tensor | None]:
    """Examples and labels (``None`` when there are none) for a trained model, the examples
    read and transformed exactly as its held-out data were.

    Parameters
    ----------
    train_config : the run's training config (its dataset, file options and binarization)
    split : ``train``, ``test`` or ``all`` (train then test) of a built-in dataset, in its
        order; a file is always read whole, in its order
    data : a dataset name or a file (.npy, .npz, .csv, .tsv, a folder of images); default the
        run's data
    data_dir : folder of a built-in dataset's files; default the run's
    data_shape : the model's per-example shape; data of another shape are refused
    data_info : the ``data`` section of the run's config (its transform and table columns)
    """
    name = data or train_config.data
    info = data_info or {}
    if data_dir is None and name == train_config.data:
        data_dir = train_config.data_dir
    # a file is read with the run's options; new files may lack what does not apply to them
    options = {**source_options(train_config), "strict": data is None} if _is_file(name) else {}
    ds: Dataset = load_dataset(name, data_dir, **options)
    if data_shape is not None and tuple(ds.shape) != tuple(data_shape):
        raise VaekitError(f"{name}: examples have shape {tuple(ds.shape)} but the model was trained on {tuple(data_shape)}")
    if info.get("columns") and ds.columns is not None and list(ds.columns) != list(info["columns"]):
        raise VaekitError(f"{name}: columns {ds.columns} differ from the training columns {info['columns']}")
    if ds.test is None and data is None and split != "all" and info.get("test_split") == "val":
        # the run's own file: its held-out part ("test") or the rest ("train"), as training split it
        perm = torch.randperm(len(ds.train), generator=torch.Generator().manual_seed(info["split_seed"]))
        idx = perm[: info["n_val"]] if split == "test" else perm[info["n_val"] :]
        x, y = _take(ds.train, idx), (ds.train_labels[idx] if ds.train_labels is not None else None)
    elif ds.test is None:  # a file: all of it, in order
        x, y = ds.train, ds.train_labels
    else:
        parts = {"train": [(ds.train, ds.train_labels)], "test": [(ds.test, ds.test_labels)],
                 "all": [(ds.train, ds.train_labels), (ds.test, ds.test_labels)]}
        if split not in parts:
            raise VaekitError(f"--split {split}: choose train, test or all")
        x = torch.cat([p[0] for p in parts[split]]) if len(parts[split]) > 1 else parts[split][0][0]
        labels = [p[1] for p in parts[split]]
        y = None if any(t is None for t in labels) else torch.cat(labels)
    x = _apply(transform_from_dict(info.get("transform")), x)
    if train_config.binarize != "none":
        lo, hi = value_range(x)
        if lo < 0 or hi > 1:
            raise VaekitError(f"{name}: values outside [0, 1] cannot be binarized as the model's data were")
        dense = x if isinstance(x, Tensor) else torch.cat(list(chunks(x)))
        x = binarize(dense, torch.Generator().manual_seed(HELDOUT_BINARIZE_SEED))
    return x, y


def load_split(train_config: TrainConfig, split: str = "test", **kwargs) -> Any:
    """The examples of :func:`load_labelled_split`, without the labels."""
    return load_labelled_split(train_config, split, **kwargs)[0]
