"""Data as a model sees it: splits, the transforms a run remembers, the likelihood the data call for.

``prepare_data`` turns a dataset (built-in or the user's file) into training, validation and
test :class:`~vaekit.data.examples.Examples` (examples with their labels) and describes what
it did in a JSON-ready ``info`` dict that the run directory keeps: kind, per-example shape,
table columns, class names, the transform with its fitted numbers, the split.
``load_examples`` reads data for a trained model and applies exactly that transform, refusing
data of another shape and putting a table's columns in the training order by name (a missing or
an unknown column is refused). One split (:func:`holdout_split`) and one held-out
binarization (:func:`binarize_heldout`) serve both.

Arrays too large for memory arrive as a lazy array (``vaekit.data.files.MemmapArray``, a
``vaekit.data.types.LazyArray``); every
function here then works a batch at a time and never reads the whole file at once.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor

from ..config import BINARIZE_MODES, TrainConfig
from .builtin import Dataset, binarize, is_path, load_dataset
from .examples import ByteImages, Examples  # noqa: F401  (ByteImages: re-exported)
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

    def inverse(self, x: Tensor) -> Tensor:
        """Back to the data's own units."""
        return x * self.std.to(x.device) + self.mean.to(x.device)

    @property
    def log_jacobian(self) -> float:
        """``log |det d(transform)/dx| = -sum log std``: what turns a density of the standardized
        values into one of the data as given, in nats per example."""
        return float(-self.std.double().log().sum())

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "standardize", "mean": self.mean.tolist(), "std": self.std.tolist()}


def transform_from_dict(d: dict[str, Any] | None):
    """The transform recorded in a run's config, or ``None`` for none."""
    if not d or d.get("kind") in (None, "none"):
        return None
    if d["kind"] == "standardize":
        return Standardize(torch.tensor(d["mean"], dtype=torch.float32), torch.tensor(d["std"], dtype=torch.float32))
    raise VaekitError(f"unknown transform {d['kind']!r} in the run's config")


def log_jacobian(data_info: dict[str, Any] | None) -> float:
    """The log-Jacobian of a run's recorded transform (0 for none): added to the model's
    log-densities, it gives them in the units of the data as given."""
    transform = transform_from_dict((data_info or {}).get("transform"))
    return 0.0 if transform is None else transform.log_jacobian


def undo_transform(data_info: dict[str, Any] | None, x: Tensor) -> Tensor:
    """Model outputs (samples, reconstructions) back in the units of the data as given."""
    transform = transform_from_dict((data_info or {}).get("transform"))
    return x if transform is None else transform.inverse(x)


def _standardized(kind: str, x) -> bool:
    """Tables, and arrays of real values (not in [0, 1]), are standardized per column."""
    if kind == "table":
        return True
    if kind != "array":
        return False
    lo, hi = value_range(x)
    return lo < 0 or hi > 1


def _apply(transform, x):
    if transform is None:
        return x
    return transform(x) if isinstance(x, Tensor) else Transformed(x, transform)


# -- the likelihood the data call for -------------------------------------------------------------

def choose_likelihood(kind: str, lo: float, hi: float) -> tuple[str, str]:
    """``(name, reason)``: Bernoulli for data in [0, 1] that are not a table, else a Gaussian
    with a learned low-rank-plus-diagonal covariance (standardized tables, real-valued arrays):
    columns that measure one thing several ways are correlated beyond what ``z`` explains, which a
    diagonal ``p(x|z)`` cannot hold (benchmarks/RESULTS.md, "the likelihood for tables")."""
    if kind != "table" and lo >= 0 and hi <= 1:
        what = "binary data" if kind != "image" else "images in [0, 1]"
        return "bernoulli", what
    return "gaussian-lowrank", "a table" if kind == "table" else f"real values in [{lo:g}, {hi:g}]"


# -- splits ---------------------------------------------------------------------------------------

@dataclass
class Splits:
    """Training, validation and test examples as the model sees them (binarized if asked), each
    with its labels where the data have them.

    Each ``x`` is a float tensor ``(N, *shape)`` or a lazy array read a batch at a time.
    """

    train: Examples
    val: Examples | None
    test: Examples
    info: dict[str, Any]


def source_options(cfg: TrainConfig) -> dict[str, Any]:
    """The options that say how a user's file is read (recorded, so new data is read alike)."""
    opts: dict[str, Any] = {}
    if cfg.label_column is not None:
        opts["label_column"] = cfg.label_column
    if cfg.id_column is not None:
        opts["id_column"] = cfg.id_column
    if cfg.image_size is not None:
        opts["image_size"] = tuple(cfg.image_size)
    if cfg.grayscale:
        opts["grayscale"] = True
    if cfg.memmap is not None:
        opts["memmap"] = cfg.memmap
    return opts


def holdout_split(n: int, n_val: int, seed: int) -> tuple[Tensor, Tensor]:
    """``(train_indices, val_indices)``: ``n_val`` of ``n`` examples held out, chosen by ``seed``.

    The one split of a training set: training takes it, and a trained run's ``encode``,
    ``evaluate`` and ``score`` find the same rows again from the recorded seed and size.
    """
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:], perm[:n_val]


def binarize_heldout(x) -> Tensor:
    """Held-out examples drawn once as 0/1 with a fixed seed, so that every run, model and
    evaluation of the same data sees the same binary test set."""
    dense = x if isinstance(x, Tensor) else torch.cat(list(chunks(x)))
    return binarize(dense, torch.Generator().manual_seed(HELDOUT_BINARIZE_SEED))


def _n_val(cfg: TrainConfig, n: int, has_test: bool) -> int:
    if not 0 <= cfg.val_fraction < 1:
        raise VaekitError(f"--val-fraction {cfg.val_fraction}: must lie in [0, 1)")
    n_val = int(round(cfg.val_fraction * n))
    if cfg.val_fraction > 0 and n_val == 0:
        n_val = 1  # asked for a held-out part: at least one example
    if n_val >= n:
        raise VaekitError(f"--val-fraction {cfg.val_fraction}: leaves no training examples of {n}")
    if not has_test and n_val == 0:
        raise VaekitError(f"{cfg.data}: a file of your own needs a held-out part for the figures; use --val-fraction above 0")
    return n_val


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
    ds = load_dataset(cfg.data, cfg.data_dir, **source_options(cfg))
    whole = Examples(ds.train, ds.train_labels)
    n_val = _n_val(cfg, len(whole), ds.test is not None)
    train_idx, val_idx = holdout_split(len(whole), n_val, cfg.seed)
    train, val = whole.subset(train_idx), (whole.subset(val_idx) if n_val else None)
    if ds.test is not None:
        test, test_split = Examples(ds.test, ds.test_labels), "test"
    else:
        test, test_split = val, "val"

    # binarized data are not standardized: --binarize refuses values outside [0, 1] below
    transform = Standardize.fit(train.x) if cfg.binarize == "none" and _standardized(ds.kind, train.x) else None
    if transform is not None:
        train, val, test = (_transformed(transform, e) for e in (train, val, test))

    if cfg.binarize != "none":
        if not isinstance(ds.train, Tensor) and cfg.binarize == "static":
            raise VaekitError(f"{cfg.data}: --binarize static needs the data in memory; use --binarize dynamic")
        lo, hi = value_range(train.x)
        if lo < 0 or hi > 1:
            raise VaekitError(f"{cfg.data}: values lie in [{lo:g}, {hi:g}]; --binarize needs values in [0, 1]")
        test = Examples(binarize_heldout(test.x), test.y)
        if test_split == "val":
            val = test
        elif val is not None:
            val = Examples(binarize_heldout(val.x), val.y)
        if cfg.binarize == "static":
            train = Examples(binarize(train.x, torch.Generator().manual_seed(cfg.seed)), train.y)
    info = {
        "name": ds.name,
        "kind": ds.kind,
        "shape": list(ds.shape),
        "columns": ds.columns,
        "classes": ds.classes,
        "labelled": ds.train_labels is not None,
        "transform": transform.to_dict() if transform is not None else {"kind": "none"},
        "n_train": len(train),
        "n_val": 0 if val is None else len(val),
        "n_test": len(test),
        "test_split": test_split,
        "split_seed": cfg.seed,
        "val_fraction": cfg.val_fraction,
        "in_memory": isinstance(ds.train, Tensor),
        "skipped_files": len(ds.skipped),
    }
    return Splits(train, val, test, info)


def _transformed(transform, examples: Examples | None) -> Examples | None:
    return None if examples is None else examples.with_x(_apply(transform, examples.x))


def _read_options(train_config: TrainConfig, data: str | None, id_column: str | None) -> dict[str, Any]:
    """How :func:`load_examples` reads a file: with the run's options, strictly for the run's
    own file; new files may lack what does not apply to them, the run's id column included.
    An ``id_column`` asked for replaces the run's and must be there."""
    options = {**source_options(train_config), "strict": data is None}
    if id_column is not None:
        options["id_column"] = id_column
    elif data is not None and "id_column" in options:
        options["id_optional"] = True
    return options


def _match_columns(name: str, ds: Dataset, columns: list[str] | None, id_column: str | None = None) -> Dataset:
    """``ds`` with its table columns in the training order ``columns`` (matched by name).

    A missing or an unknown column is refused in one line naming them; data that are not a
    table, or a run that recorded no columns, pass as they are.
    """
    if not columns or ds.columns is None or list(ds.columns) == list(columns):
        return ds
    missing = [c for c in columns if c not in ds.columns]
    extra = [c for c in ds.columns if c not in columns]
    if id_column is not None and id_column in missing:
        raise VaekitError(f"--id-column {id_column}: the run was trained with column {id_column!r} as a feature; "
                          f"train with --id-column {id_column} to keep it out")
    if missing or extra:
        parts = [f"{what} {', '.join(map(repr, cols))}"
                 for what, cols in (("missing", missing), ("extra", extra)) if cols]
        shape = (f" (examples have shape ({len(ds.columns)},) but the model was trained on ({len(columns)},))"
                 if len(ds.columns) != len(columns) else "")
        raise VaekitError(f"{name}: columns differ from the training columns {', '.join(columns)}: "
                          f"{'; '.join(parts)}{shape}")
    order = torch.tensor([ds.columns.index(c) for c in columns])
    return dataclasses.replace(ds, train=ds.train[:, order], columns=list(columns))


def _default_split(ds: Dataset, split: str | None) -> str:
    """``split``, or when None: every row of a file, the test split of a built-in dataset."""
    if split is None:
        return "test" if ds.test is not None else "all"
    return split


def load_examples(
    train_config: TrainConfig,
    split: str | None = "test",
    *,
    data: str | None = None,
    data_dir: str | os.PathLike | None = None,
    data_shape: tuple[int, ...] | None = None,
    data_info: dict[str, Any] | None = None,
    id_column: str | None = None,
) -> Examples:
    """Examples (with their labels where there are any) for a trained model, read and
    transformed exactly as its held-out data were.

    Parameters
    ----------
    train_config : the run's training config (its dataset, file options and binarization)
    split : ``train``, ``test`` or ``all`` (train then test) of a built-in dataset, in its
        order; for the run's own file, ``test`` is its held-out part, ``train`` the rest and
        ``all`` every row in the file's order; another file is always read whole, in order.
        None: every row of a file, in its order; the test split of a built-in dataset
    data : a dataset name or a file (.npy, .npz, .csv, .tsv, a folder of images); default the
        run's data
    data_dir : folder of a built-in dataset's files; default the run's
    data_shape : the model's per-example shape; data of another shape are refused
    data_info : the ``data`` section of the run's config (its transform and table columns);
        a table's columns are matched to the training columns by name, in any order
    id_column : a table's column naming the rows, kept out of the features and returned as
        the examples' ``ids`` (default: the run's own id column, if the file has it)
    """
    name = data or train_config.data
    info = data_info or {}
    if split not in (None, "train", "test", "all"):
        raise VaekitError(f"--split {split}: choose train, test or all")
    if data_dir is None and name == train_config.data:
        data_dir = train_config.data_dir
    options = _read_options(train_config, data, id_column) if is_path(name) else {}
    ds: Dataset = load_dataset(name, data_dir, **options)
    if id_column is not None and ds.ids is None:  # a file that is no table drops the option when new
        raise VaekitError(f"{name}: --id-column applies to .csv and .tsv files")
    ds = _match_columns(name, ds, info.get("columns"), id_column)
    if data_shape is not None and tuple(ds.shape) != tuple(data_shape):
        raise VaekitError(f"{name}: examples have shape {tuple(ds.shape)} but the model was trained on {tuple(data_shape)}")
    split = _default_split(ds, split)
    whole = Examples(ds.train, ds.train_labels, ds.ids)
    if ds.test is None and data is None and split != "all" and info.get("test_split") == "val":
        # the run's own file: its held-out part ("test") or the rest ("train"), as training split it
        train_idx, val_idx = holdout_split(len(whole), info["n_val"], info["split_seed"])
        examples = whole.subset(val_idx if split == "test" else train_idx)
    elif ds.test is None:  # a file: all of it, in order
        examples = whole
    else:
        parts = {"train": [whole], "test": [Examples(ds.test, ds.test_labels)]}
        parts["all"] = parts["train"] + parts["test"]
        chosen = parts[split]
        x = torch.cat([e.x for e in chosen]) if len(chosen) > 1 else chosen[0].x
        labels = [e.y for e in chosen]
        examples = Examples(x, None if any(t is None for t in labels) else torch.cat(labels))
    examples = _transformed(transform_from_dict(info.get("transform")), examples)
    if train_config.binarize != "none":
        lo, hi = value_range(examples.x)
        if lo < 0 or hi > 1:
            raise VaekitError(f"{name}: values outside [0, 1] cannot be binarized as the model's data were")
        examples = examples.with_x(binarize_heldout(examples.x))
    return examples


def load_labelled_split(train_config: TrainConfig, split: str = "test", **kwargs) -> tuple[Any, Tensor | None]:
    """``(x, labels)`` of :func:`load_examples` (labels ``None`` when there are none)."""
    examples = load_examples(train_config, split, **kwargs)
    return examples.x, examples.y


def load_split(train_config: TrainConfig, split: str = "test", **kwargs) -> Any:
    """The examples of :func:`load_examples`, without the labels."""
    return load_examples(train_config, split, **kwargs).x


def check_model_data(model, x, what: str) -> None:
    """Refuse data that ``model``'s likelihood gives no density to, in one line naming ``what``."""
    model.check_values(*value_range(x), what)
