"""Users' own data: ``.npy``, ``.npz``, ``.csv``, ``.tsv`` files and folders of images.

This module holds the readers of users' files, registered by suffix in :data:`SOURCES`
(:func:`register_source`; :func:`file_suffixes` lists the suffixes), :func:`load_file`, which
dispatches to them, :func:`read_npy` and :class:`MemmapArray` for ``.npy`` arrays, and
:func:`load_array`, a ``.npy`` checked against the per-example shape a trained model needs.
It imports nothing from :mod:`vaekit.data.builtin`; the built-in datasets' loader
(:func:`vaekit.data.builtin.load_dataset`) calls :func:`load_file` for a path.

:func:`load_file` picks a reader from :data:`SOURCES` by the path's suffix (a folder is read as
images) and returns a :class:`~vaekit.data.types.Dataset` whose ``train`` holds every row of the
file, in the file's order, and whose ``test`` is None: how to hold data out is the caller's
choice, not the file's.

Every problem with the input (a missing file, a text cell in a numeric column, a corrupt
image, a NaN) raises :class:`~vaekit.errors.VaekitError` with one line that names the file,
the row and column where they apply, and the problem; no traceback from numpy, csv or PIL
reaches the user.

A ``.npy`` too large for memory is opened with ``mmap_mode="r"`` and returned as a
:class:`MemmapArray`, which reads the rows asked for, a batch at a time.

Example
-------
>>> ds = load_file("people.csv", label_column="kind")  # doctest: +SKIP
>>> ds.kind, ds.columns, ds.classes, ds.shape  # doctest: +SKIP
('table', ['height', 'weight'], ['short', 'tall'], (2,))
"""

from __future__ import annotations

import csv
import inspect
import io
import pathlib
import struct
import tokenize
import warnings
import zipfile
import zlib
from typing import Callable, Iterator, Sequence

import numpy as np
import numpy.lib.format as npy_format
import torch

from ..errors import VaekitError, VaekitWarning
from .types import Dataset, PathLike, cannot_read, one_line, read_bytes

#: A ``.npy`` larger than this is memory-mapped when ``memmap`` is None (auto).
MEMMAP_AUTO_BYTES = 1 << 30

#: Readers by suffix (lower case, with the dot), and ``"images"`` for a folder.
SOURCES: dict[str, Callable[..., Dataset]] = {}
# How an error message names what each reader reads ("--image-size applies to folders of images").
_SOURCE_NOUNS: dict[str, str] = {}

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Cells read as missing values in a table (compared lower-case, after stripping blanks).
MISSING_CELLS = frozenset({"", "na", "n/a", "nan", "null"})

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"  # np.savez with no arrays
_SCAN_BYTES = 64 << 20  # the NaN scan of a memory-mapped file reads this much at a time


def register_source(key: str, noun: str) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Decorator adding ``reader(path, **options) -> Dataset`` to :data:`SOURCES`.

    ``key`` is a suffix such as ``".npy"`` or ``"images"`` for folders; ``noun`` names what
    the reader reads in messages (``"folders of images"``). The reader's keyword-only
    parameters are the options it accepts; :func:`load_file` refuses the others.
    """

    def wrap(reader: Callable[..., Dataset]) -> Callable[..., Dataset]:
        SOURCES[key] = reader
        _SOURCE_NOUNS[key] = noun
        return reader

    return wrap


def file_suffixes() -> list[str]:
    """The file suffixes a reader in :data:`SOURCES` handles, in registration order.

    Returns
    -------
    list of str
        Lower case, with the dot: ``[".npy", ".npz", ".csv", ".tsv"]`` unless more readers are
        registered. Folders of images (the key ``"images"``) are not a suffix and not listed.

    Example
    -------
    >>> file_suffixes()
    ['.npy', '.npz', '.csv', '.tsv']
    """
    return [k for k in SOURCES if k.startswith(".")]


def load_file(
    path: PathLike,
    *,
    label_column: str | None = None,
    id_column: str | None = None,
    image_size: tuple[int, int] | None = None,
    grayscale: bool = False,
    memmap: bool | None = None,
    strict: bool = True,
    id_optional: bool = False,
) -> Dataset:
    """Read a user's file (or folder of images) as a :class:`~vaekit.data.types.Dataset`.

    Parameters
    ----------
    path : path
        A ``.npy``, ``.npz``, ``.csv`` or ``.tsv`` file, or a folder of PNG/JPEG images.
    label_column : str, optional
        Tables only: the column holding labels (its header name, or its 0-based index when the
        file has no header). It is removed from the features.
    id_column : str, optional
        Tables only: a column naming the rows (header name, or 0-based index without a
        header), kept as strings in ``ids`` and removed from the features.
    image_size : (int, int), optional
        Folders only: resize every image to ``(H, W)`` (bilinear). Needed when sizes differ.
    grayscale : bool
        Folders only: read the images as one channel.
    memmap : bool or None
        ``.npy`` only: True reads rows lazily (:class:`MemmapArray`), False reads the file
        whole, None does the first for files above :data:`MEMMAP_AUTO_BYTES`.
    strict : bool
        True refuses an option that does not apply to this kind of file. False (new data for a
        trained model, read with the run's options) drops such options, and a table without
        the label column is read without labels.
    id_optional : bool
        A table without ``id_column`` is read without ids instead of refused (new data for a
        run trained with an id column).

    Returns
    -------
    Dataset
        ``name`` the path, ``train`` all rows as float32 (a tensor or a :class:`MemmapArray`),
        ``test`` None, ``train_labels`` int64 or None, and ``kind``, ``columns``, ``classes``.

    Raises
    ------
    VaekitError
        One line naming the file (with row and column for tables) and the problem; also for
        an option that does not apply to this kind of file.

    Example
    -------
    >>> np.save("/tmp/x.npy", np.zeros((5, 8, 8), dtype=np.uint8))  # doctest: +SKIP
    >>> load_file("/tmp/x.npy").shape  # doctest: +SKIP
    (1, 8, 8)
    """
    path = pathlib.Path(path)
    if path.is_dir():
        key = "images"
    elif not path.exists():
        raise VaekitError(f"{path}: no such file or folder")
    else:
        key = path.suffix.lower()
    if key not in SOURCES:
        hint = "; for images, give the folder that holds them" if key in IMAGE_SUFFIXES else ""
        raise VaekitError(
            f"{path}: cannot read {key or 'files without a suffix'}; give a "
            f"{', '.join(file_suffixes())} file or a folder of images{hint}"
        )
    reader = SOURCES[key]
    given = {"label_column": label_column, "id_column": id_column, "image_size": image_size, "grayscale": grayscale,
             "memmap": memmap}
    # An option at its default (None; False for grayscale) was not given. memmap=False was:
    # its default is None (auto).
    given = {k: v for k, v in given.items() if v is not None and not (k == "grayscale" and v is False)}
    accepted = inspect.signature(reader).parameters
    for option in list(given):
        if option not in accepted:
            if not strict:
                del given[option]
                continue
            takers = [_SOURCE_NOUNS[k] for k, r in SOURCES.items() if option in inspect.signature(r).parameters]
            raise VaekitError(f"{path}: --{option.replace('_', '-')} applies to {' and '.join(takers)}")
    if not strict and "label_optional" in accepted:
        given["label_optional"] = True
    if id_optional and "id_optional" in accepted:
        given["id_optional"] = True
    return reader(path, **given)


# ---------------------------------------------------------------------------------------------
# .npy and .npz
# ---------------------------------------------------------------------------------------------


class MemmapArray:
    """Rows of a ``.npy`` read lazily, a batch at a time (a :class:`~vaekit.data.types.LazyArray`).

    Indexing returns float32 tensors, like indexing a tensor: ``x[idx]`` for a tensor of row
    indices (in that order), ``x[a:b]`` for a range, ``x[i]`` for one row. Only the rows asked
    for are read (sorted and unique, which suits the disk, then put back in the order asked).
    uint8 files are scaled to [0, 1] on read, as :func:`load_file` does in memory.

    Attributes
    ----------
    shape : tuple of int
        ``(N, *example_shape)``; an ``N x H x W`` file reads as ``N x 1 x H x W``.
    dtype : torch.dtype
        Always ``torch.float32``: what reads return.
    file_dtype : numpy.dtype
        The dtype stored in the file.
    scale : float
        The divisor applied on read: 255 for uint8, else 1.
    rows_read, largest_read : int
        Rows read so far, and the most read by one call (tests use them to prove batch reads).

    Example
    -------
    >>> x = load_file("big.npy", memmap=True).train  # doctest: +SKIP
    >>> x[torch.tensor([5, 2])].shape  # doctest: +SKIP
    torch.Size([2, 784])
    """

    dtype = torch.float32

    def __init__(self, array: np.ndarray, rows: np.ndarray | None = None) -> None:
        self._array = array  # the memory map, (N_file, *example_shape); never read whole
        self._rows = rows  # int64 file rows of this view, or None for all of them in order
        self.file_dtype = array.dtype
        self.scale = 255.0 if array.dtype == np.uint8 else 1.0
        n = len(rows) if rows is not None else array.shape[0]
        self.shape: tuple[int, ...] = (n, *array.shape[1:])
        self.rows_read = 0
        self.largest_read = 0

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"MemmapArray(shape={self.shape}, file_dtype={self.file_dtype})"

    def __getitem__(self, idx: torch.Tensor | np.ndarray | Sequence[int] | slice | int) -> torch.Tensor:
        if isinstance(idx, (int, np.integer)):
            return self[[int(idx)]][0]
        if isinstance(idx, slice):
            start, stop, step = idx.indices(len(self))
            if self._rows is None and step == 1:
                return self._read(self._array[start:stop])  # one contiguous block
            idx = np.arange(start, stop, step)
        file_rows = self._file_rows(idx)
        # Read each row once, in file order, then reorder: (len(unique), ...) -> (len(idx), ...)
        unique, inverse = np.unique(file_rows, return_inverse=True)
        return self._read(self._array[unique])[torch.from_numpy(inverse.reshape(-1))]

    def subset(self, indices: torch.Tensor | np.ndarray | Sequence[int]) -> "MemmapArray":
        """A view of the rows ``indices`` (in that order); nothing is read."""
        return MemmapArray(self._array, self._file_rows(indices))

    def chunks(self, rows: int = 4096) -> Iterator[torch.Tensor]:
        """All rows in order, ``rows`` at a time."""
        for start in range(0, len(self), rows):
            yield self[start : start + rows]

    def _file_rows(self, idx: torch.Tensor | np.ndarray | Sequence[int]) -> np.ndarray:
        if isinstance(idx, torch.Tensor):
            idx = idx.detach().cpu().numpy()
        idx = np.asarray(idx)
        if idx.dtype == bool:
            raise TypeError("MemmapArray: index with row numbers, not a mask")
        idx = idx.astype(np.int64, copy=False).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"MemmapArray: row index out of range for {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        return idx if self._rows is None else self._rows[idx]

    def _read(self, block: np.ndarray) -> torch.Tensor:
        rows = block.shape[0]
        self.rows_read += rows
        self.largest_read = max(self.largest_read, rows)
        return torch.from_numpy(_as_float32(block))


def _as_float32(arr: np.ndarray) -> np.ndarray:
    """float32 copy (never a view of a memory map); uint8 scaled to [0, 1]."""
    with np.errstate(over="ignore"):  # float64 beyond float32's range: reported as inf
        x = np.array(arr, dtype=np.float32, order="C", copy=True)
    if arr.dtype == np.uint8:
        x /= 255.0
    return x


def read_npy(path: PathLike, memmap: bool | None = False) -> torch.Tensor | MemmapArray:
    """The examples of a ``.npy`` file: ``(N, D)``, ``(N, 1, H, W)`` or ``(N, C, H, W)`` float32.

    The header is read and checked before any data: dtype, dimensions, rows and the file's
    length. The file is opened with ``allow_pickle=False``, so it can never run code. uint8 is
    scaled by 1/255; other numeric dtypes are converted as they are.

    Parameters
    ----------
    path : path
        The file, as written by ``np.save``.
    memmap : bool or None
        True: a :class:`MemmapArray`; False: a tensor; None: a :class:`MemmapArray` when the
        file is larger than :data:`MEMMAP_AUTO_BYTES`.

    Raises
    ------
    VaekitError
        Missing, empty, not ``.npy``, truncated, a non-numeric dtype, NaN or infinite values
        (their count and the first index), fewer than 2 or more than 4 dimensions, no rows.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise VaekitError(f"{path}: no such file")
    if path.is_dir():
        raise VaekitError(f"{path}: is a directory, not a .npy file")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
            # Sniff the magic ourselves: np.load's own complaint about a text file is that it
            # "contains pickled data", which would send the user the wrong way.
            if not head:
                raise VaekitError(f"{path}: empty file, expected a .npy array (np.save)")
            if head.startswith(_ZIP_MAGIC):
                raise VaekitError(f"{path}: is a .npz archive; save a single array with np.save")
            if head != _NPY_MAGIC:
                raise VaekitError(f"{path}: not a .npy file (no NumPy header); save the array with np.save")
            f.seek(0)
            shape, dtype, offset = _npy_header(f, path)
        size = path.stat().st_size
    except OSError as e:
        raise cannot_read(path, e) from None

    _check_layout(str(path), shape, dtype)
    needed = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < needed:
        raise VaekitError(f"{path}: corrupt .npy file (truncated: its header says {needed} bytes, found {size})")

    lazy = size > MEMMAP_AUTO_BYTES if memmap is None else memmap
    try:
        arr = np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise VaekitError(f"{path}: corrupt .npy file ({one_line(e)})") from None
    if lazy:
        _check_finite_chunked(str(path), arr)
        return MemmapArray(arr[:, None] if arr.ndim == 3 else arr)  # (N, H, W) -> (N, 1, H, W)
    return torch.from_numpy(_examples(str(path), arr))


def _npy_header(f, path: pathlib.Path) -> tuple[tuple[int, ...], np.dtype, int]:
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):  # 3.0 differs only in allowing utf-8 field names
            shape, fortran, dtype = npy_format.read_array_header_2_0(f)
        else:
            raise VaekitError(f"{path}: .npy format version {version} is not supported; save it with np.save")
    except (ValueError, EOFError, SyntaxError, UnicodeDecodeError, tokenize.TokenError) as e:
        raise VaekitError(f"{path}: corrupt .npy file ({one_line(e)})") from None
    return tuple(shape), dtype, f.tell()


def _check_layout(where: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise VaekitError(f"{where}: holds Python objects (dtype object), not numbers; save a numeric array")
    # b(ool), i(nt), u(nsigned), f(loat); not complex, strings, datetimes or records.
    if dtype.kind not in "biuf":
        raise VaekitError(f"{where}: dtype {dtype} is not numeric; save an array of numbers")
    if not 2 <= len(shape) <= 4:
        raise VaekitError(f"{where}: array has shape {shape}; expected N x D, N x H x W or N x C x H x W")
    if shape[0] == 0:
        raise VaekitError(f"{where}: holds no examples (shape {shape})")
    if 0 in shape[1:]:
        raise VaekitError(f"{where}: examples hold no values (shape {shape})")


def _examples(where: str, arr: np.ndarray) -> np.ndarray:
    """An in-memory array, checked, as float32 ``(N, D)`` or ``(N, C, H, W)``."""
    _check_layout(where, arr.shape, arr.dtype)
    # Convert before the finiteness check: float64 values beyond 3.4e38 become inf in float32.
    x = _as_float32(arr)
    if arr.dtype.kind == "f":  # integers and bools are always finite
        bad = ~np.isfinite(x)
        n_bad = int(bad.sum())
        if n_bad:
            first = tuple(int(i) for i in np.argwhere(bad)[0])  # an index into the file's own layout
            _raise_not_finite(where, arr.dtype, n_bad, first)
    return x[:, None] if x.ndim == 3 else x  # grey images: (N, H, W) -> (N, 1, H, W)


def _check_finite_chunked(where: str, arr: np.ndarray) -> None:
    """The NaN/inf check of :func:`_examples` for a memory map: about 64 MiB at a time."""
    if arr.dtype.kind != "f":
        return
    step = max(1, _SCAN_BYTES // max(1, arr[0].nbytes))
    n_bad, first = 0, None
    for start in range(0, len(arr), step):
        with np.errstate(over="ignore"):
            bad = ~np.isfinite(np.asarray(arr[start : start + step], dtype=np.float32))
        count = int(bad.sum())
        if count and first is None:
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            first = (first[0] + start, *first[1:])
        n_bad += count
    if n_bad:
        _raise_not_finite(where, arr.dtype, n_bad, first)


def _raise_not_finite(where: str, dtype: np.dtype, n_bad: int, first: tuple[int, ...]) -> None:
    wide = " as float32" if dtype.itemsize > 4 else ""
    raise VaekitError(
        f"{where}: {n_bad} value{'s are' if n_bad > 1 else ' is'} NaN or infinite{wide} (first at index {first})"
    )


def _npy_kind(x: torch.Tensor | MemmapArray) -> str:
    return "array" if len(x.shape) == 2 else "image"


@register_source(".npy", ".npy files")
def load_npy(path: PathLike, *, memmap: bool | None = None) -> Dataset:
    """A ``.npy`` of examples (see :func:`read_npy`) as an unlabelled dataset.

    ``N x D`` is kind ``"array"``; ``N x H x W`` and ``N x C x H x W`` are kind ``"image"``.
    """
    x = read_npy(path, memmap=memmap)
    return Dataset(name=str(path), train=x, test=None, kind=_npy_kind(x))


def load_array(path: PathLike, expected_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """A user's ``.npy`` of examples in memory (:func:`read_npy`), checked against a model's shape.

    Also importable as ``vaekit.data.builtin.load_array``, where it lived before.

    Parameters
    ----------
    path : path
        The ``.npy`` file (as written by ``np.save``): ``N x D``, ``N x H x W`` (grey images,
        returned as ``N x 1 x H x W``) or ``N x C x H x W``; uint8 is scaled to [0, 1], as
        :func:`load_file` reads it, so a model sees the same values at training and evaluation.
    expected_shape : tuple of int, optional
        The per-example shape a trained model needs, e.g. ``(1, 8, 8)``; a different one is
        refused rather than reshaped.

    Returns
    -------
    torch.Tensor
        float32, ``(N, *shape)``.

    Raises
    ------
    VaekitError
        One line naming the file: whatever :func:`read_npy` refuses, or a per-example shape
        other than ``expected_shape`` (with the reshape to use when the sizes agree).

    Example
    -------
    >>> np.save("/tmp/x.npy", np.zeros((5, 8, 8)))  # doctest: +SKIP
    >>> load_array("/tmp/x.npy", expected_shape=(1, 8, 8)).shape  # doctest: +SKIP
    torch.Size([5, 1, 8, 8])
    """
    x = read_npy(path, memmap=False)
    shape = tuple(x.shape[1:])
    if expected_shape is not None and shape != tuple(expected_shape):
        expected_shape = tuple(expected_shape)
        hint = ""
        if int(np.prod(shape)) == int(np.prod(expected_shape)):
            hint = f"; reshape it to {(x.shape[0], *expected_shape)}"
        raise VaekitError(
            f"{path}: examples have shape {shape} but the model was trained on {expected_shape}{hint}"
        )
    return x


@register_source(".npz", ".npz files")
def load_npz(path: PathLike) -> Dataset:
    """A ``.npz`` holding exactly one array, or arrays ``x`` and optionally ``y`` (labels).

    Read with ``allow_pickle=False``. Integer labels are kept as they are; string labels
    become indices into ``classes``, their sorted distinct values.
    """
    path = pathlib.Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(_ZIP_MAGIC))
    except OSError as e:
        raise cannot_read(path, e) from None
    if not head:
        raise VaekitError(f"{path}: empty file, expected a .npz archive (np.savez)")
    if head not in (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC):
        raise VaekitError(f"{path}: not a .npz file (not a zip archive); save the arrays with np.savez")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            if len(names) == 1:
                x_name, y_name = names[0], None
            elif "x" in names and set(names) <= {"x", "y"}:
                x_name, y_name = "x", ("y" if "y" in names else None)
            else:
                found = f"arrays {', '.join(names)}" if names else "no arrays"
                raise VaekitError(f"{path}: holds {found}; expected one array, or one named x (and y for labels)")
            arrays = {name: _npz_member(npz, name, path) for name in (x_name, y_name) if name}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise VaekitError(f"{path}: corrupt .npz file ({one_line(e)})") from None
    x = torch.from_numpy(_examples(f"{path}[{x_name}]", arrays[x_name]))
    labels, classes = (None, None) if y_name is None else _npz_labels(f"{path}[{y_name}]", arrays[y_name], len(x))
    return Dataset(name=str(path), train=x, test=None, train_labels=labels, kind=_npy_kind(x), classes=classes)


def _npz_member(npz, name: str, path: pathlib.Path) -> np.ndarray:
    try:
        member = npz[name]
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise VaekitError(f"{path}[{name}]: holds Python objects (dtype object), not numbers; save a numeric array") from None
        raise
    if not isinstance(member, np.ndarray):  # a zip member that is not a .npy comes back as bytes
        raise VaekitError(f"{path}[{name}]: not a .npy array inside the archive")
    return member


def _npz_labels(where: str, y: np.ndarray, n: int) -> tuple[torch.Tensor, list[str] | None]:
    if y.ndim != 1 or len(y) != n:
        raise VaekitError(f"{where}: labels have shape {y.shape}; expected one per example, shape ({n},)")
    if y.dtype.kind in "US":  # strings: index into their sorted distinct values
        classes, codes = np.unique(y.astype(str), return_inverse=True)
        return torch.from_numpy(codes.reshape(-1).astype(np.int64)), [str(c) for c in classes]
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)  # integers saved as floats
    if y.dtype.kind not in "biu":
        raise VaekitError(f"{where}: labels of dtype {y.dtype} are not integers or strings")
    if y.size and y.min() < 0:
        raise VaekitError(f"{where}: labels must not be negative (found {int(y.min())})")
    return torch.from_numpy(y.astype(np.int64)), None


# ---------------------------------------------------------------------------------------------
# .csv and .tsv
# ---------------------------------------------------------------------------------------------


class _TextRows:
    """The data rows of a delimited text file, with the line number of each.

    Files without quotes (nearly all numeric files) keep their raw lines and are parsed by
    numpy's C reader (``np.loadtxt``); files with quotes go through the ``csv`` module.
    """

    def __init__(self, lines: list[str] | None, rows: list[list[str]] | None, linenos: list[int], delimiter: str):
        self.lines, self.rows, self.linenos, self.delimiter = lines, rows, linenos, delimiter

    def __len__(self) -> int:
        return len(self.linenos)

    def field_counts(self) -> np.ndarray:
        if self.lines is not None:
            return np.fromiter((line.count(self.delimiter) + 1 for line in self.lines), np.int64, len(self.lines))
        return np.fromiter((len(r) for r in self.rows), np.int64, len(self.rows))

    def column(self, j: int, n_fields: int) -> list[str]:
        """The cells of column ``j`` (stripped), rows known to hold ``n_fields`` fields."""
        if self.rows is not None:
            return [r[j].strip() for r in self.rows]
        d = self.delimiter
        if 2 * j < n_fields:  # split no further than needed, from the nearer end
            return [line.split(d, j + 1)[j].strip() for line in self.lines]
        return [line.rsplit(d, n_fields - j)[1].strip() for line in self.lines]

    def numbers(self, cols: list[int]) -> np.ndarray:
        """float64 ``(N, len(cols))``; raises ValueError on a cell that is not a number."""
        if self.lines is not None:
            return np.loadtxt(
                self.lines, delimiter=self.delimiter, dtype=np.float64, usecols=cols, comments=None, ndmin=2
            )
        return np.array([[r[j] for j in cols] for r in self.rows], dtype=np.float64).reshape(len(self.rows), len(cols))


def _read_text_rows(path: pathlib.Path, delimiter: str) -> tuple[list[str], _TextRows, int]:
    """The first non-blank row's cells, the remaining rows and the first row's line number.

    Blank lines are skipped; line numbers count them, as an editor does.
    """
    raw = read_bytes(path)
    if b"\0" in raw:
        raise VaekitError(f"{path}: not a text file (it holds NUL bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise VaekitError(
            f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); save it as UTF-8"
        ) from None

    if '"' not in text:
        lines, linenos = [], []
        # split("\n") rather than splitlines(), which also breaks at form feeds and the like
        # and would make the row numbers differ from an editor's.
        for i, line in enumerate(text.split("\n")):
            line = line.rstrip("\r")
            if line and not line.isspace():
                lines.append(line)
                linenos.append(i + 1)
        if not lines:
            raise VaekitError(f"{path}: empty file")
        first = [c.strip() for c in lines[0].split(delimiter)]
        return first, _TextRows(lines[1:], None, linenos[1:], delimiter), linenos[0]

    rows, linenos = [], []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    start = 1
    try:
        for row in reader:
            if any(c.strip() for c in row):
                rows.append(row)
                linenos.append(start)
            start = reader.line_num + 1
    except csv.Error as e:
        raise VaekitError(f"{path}: row {reader.line_num}: malformed {path.suffix.lower()[1:].upper() or 'CSV'} ({one_line(e)})") from None
    if not rows:
        raise VaekitError(f"{path}: empty file")
    first = [c.strip() for c in rows[0]]
    return first, _TextRows(None, rows[1:], linenos[1:], delimiter), linenos[0]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING_CELLS


def _looks_like_header(first: list[str], second: list[str] | None) -> bool:
    """A header has a text cell where the data below it are numbers.

    Comparing with the second row keeps a file without a header whose label column holds
    text (``1.5,2.0,cat``) from being read as having one. With one row only, any text cell
    makes it a header. Missing-value cells (``NA``, empty) are evidence of nothing.
    """
    text = [k for k, c in enumerate(first) if not _is_number(c) and not _is_missing(c)]
    if second is None or len(second) != len(first):
        return bool(text)
    return any(_is_number(second[k]) for k in text)


def _load_table(path: PathLike, delimiter: str, label_column: str | None, label_optional: bool = False,
                id_column: str | None = None, id_optional: bool = False) -> Dataset:
    path = pathlib.Path(path)
    first, rows, first_lineno = _read_text_rows(path, delimiter)
    second = None
    if len(rows):
        second = rows.rows[0] if rows.rows is not None else rows.lines[0].split(delimiter)
        second = [c.strip() for c in second]
    has_header = _looks_like_header(first, second)
    n_fields = len(first)
    if has_header:
        names = [c or f"col{k}" for k, c in enumerate(first)]
        seen: dict[str, int] = {}
        for k, name in enumerate(names):
            if name in seen:
                raise VaekitError(f"{path}: the header names column {name!r} twice (columns {seen[name] + 1} and {k + 1})")
            seen[name] = k
        if not len(rows):
            raise VaekitError(f"{path}: header only, no data rows")
    else:
        names = [f"col{k}" for k in range(n_fields)]
        # The first line is data: put it back in front of the rest.
        if rows.lines is not None:
            rows.lines.insert(0, delimiter.join(first))
        else:
            rows.rows.insert(0, first)
        rows.linenos.insert(0, first_lineno)

    counts = rows.field_counts()
    ragged = np.flatnonzero(counts != n_fields)
    if ragged.size:
        i = int(ragged[0])
        raise VaekitError(f"{path}: row {rows.linenos[i]} has {int(counts[i])} fields, expected {n_fields}")

    # new data for a trained model may come without labels or ids
    label_idx = _optional_column(path, label_column, label_optional, names, has_header)
    id_idx = _optional_column(path, id_column, id_optional, names, has_header)
    if id_idx is not None and id_idx == label_idx:
        raise VaekitError(f"{path}: column {names[id_idx]!r} cannot be both the --label-column and the --id-column")
    features = [k for k in range(n_fields) if k not in (label_idx, id_idx)]
    if not features:
        taken = [repr(names[k]) for k in (label_idx, id_idx) if k is not None]
        what = (f"column {taken[0]} is the only column" if len(taken) == 1
                else f"columns {' and '.join(taken)} are the only columns")
        raise VaekitError(f"{path}: {what}; no features are left")

    x = _table_numbers(path, rows, features, names, n_fields)
    labels = classes = None
    if label_idx is not None:
        labels, classes = _table_labels(path, rows.column(label_idx, n_fields), names[label_idx], rows.linenos)
    return Dataset(
        name=str(path),
        train=torch.from_numpy(x),
        test=None,
        train_labels=labels,
        kind="table",
        columns=[names[k] for k in features],
        classes=classes,
        ids=None if id_idx is None else rows.column(id_idx, n_fields),
    )


def _optional_column(path: pathlib.Path, column: str | None, optional: bool, names: list[str],
                     has_header: bool) -> int | None:
    """The index of ``column`` (None when not asked for, or ``optional`` and absent)."""
    if column is None:
        return None
    try:
        return _label_index(path, str(column), names, has_header)
    except VaekitError:
        if not optional:
            raise
        return None


def _label_index(path: pathlib.Path, label_column: str, names: list[str], has_header: bool) -> int:
    if label_column in names:
        return names.index(label_column)
    if not has_header:
        try:
            k = int(label_column)
        except ValueError:
            k = None
        if k is not None and -len(names) <= k < len(names):
            return k % len(names)
        raise VaekitError(
            f"{path}: no column {label_column!r}; the file has no header, so give a 0-based column "
            f"index 0..{len(names) - 1} (or its name col0..col{len(names) - 1})"
        )
    raise VaekitError(f"{path}: no column {label_column!r}; columns are: {', '.join(names)}")


def _table_numbers(path: pathlib.Path, rows: _TextRows, cols: list[int], names: list[str], n_fields: int) -> np.ndarray:
    """The feature columns as float32 ``(N, len(cols))``, every cell a finite number."""
    try:
        x = rows.numbers(cols)
    except ValueError:
        # Something did not parse: convert column by column to find the first bad cell, in
        # reading order (top row first, then leftmost column).
        parts, worst = [], None
        for k in cols:
            cells = rows.column(k, n_fields)
            try:
                parts.append(np.array(cells, dtype=np.float64))
            except ValueError:
                i = next((i for i, c in enumerate(cells) if not _is_number(c)), None)
                if i is not None and (worst is None or (i, k) < worst[:2]):
                    worst = (i, k, cells[i])
        if worst is not None:
            i, k, cell = worst
            where = f"{path}: row {rows.linenos[i]}, column {names[k]!r}"
            if _is_missing(cell):
                raise VaekitError(f"{where}: missing value{_quoted(cell)}") from None
            raise VaekitError(f"{where}: {cell!r} is not a number{_delimiter_hint(cell, rows.delimiter)}") from None
        x = np.stack(parts, axis=1)  # numpy's two parsers disagreed; the strict one passed

    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    bad = ~np.isfinite(x32)
    if bad.any():
        i, c = (int(v) for v in np.argwhere(bad)[0])
        cell = rows.column(cols[c], n_fields)[i]
        where = f"{path}: row {rows.linenos[i]}, column {names[cols[c]]!r}"
        if np.isnan(x[i, c]):
            raise VaekitError(f"{where}: missing value{_quoted(cell)}")
        if np.isinf(x[i, c]):
            raise VaekitError(f"{where}: {cell!r} is infinite")
        raise VaekitError(f"{where}: {cell!r} is too large for float32")
    return x32


def _quoted(cell: str) -> str:
    return " (empty cell)" if not cell.strip() else f" ({cell.strip()!r})"


def _delimiter_hint(cell: str, delimiter: str) -> str:
    for other in (";", "\t", ","):
        if other != delimiter and other in cell:
            return f" (is the file separated by {other!r}? .csv files are read with ',' and .tsv files with tabs)"
    return ""


def _table_labels(
    path: pathlib.Path, cells: list[str], name: str, linenos: list[int]
) -> tuple[torch.Tensor, list[str]]:
    """Labels as indices into ``classes``, the sorted distinct values (numerically when all are numbers)."""
    for i, cell in enumerate(cells):
        if _is_missing(cell):
            raise VaekitError(f"{path}: row {linenos[i]}, column {name!r}: missing label{_quoted(cell)}")
    try:
        values = np.array(cells, dtype=np.float64)
    except ValueError:
        values = None
    if values is not None and np.all(np.isfinite(values)):
        distinct, codes = np.unique(values, return_inverse=True)
        classes = [str(int(v)) if v == int(v) else repr(float(v)) for v in distinct]
    else:
        distinct, codes = np.unique(np.array(cells, dtype=str), return_inverse=True)
        classes = [str(v) for v in distinct]
    return torch.from_numpy(codes.reshape(-1).astype(np.int64)), classes


@register_source(".csv", ".csv files")
def load_csv(path: PathLike, *, label_column: str | None = None, label_optional: bool = False,
             id_column: str | None = None, id_optional: bool = False) -> Dataset:
    """A comma-separated table of numbers; see :func:`load_tsv` for the rules."""
    return _load_table(path, ",", label_column, label_optional, id_column, id_optional)


@register_source(".tsv", ".tsv files")
def load_tsv(path: PathLike, *, label_column: str | None = None, label_optional: bool = False,
             id_column: str | None = None, id_optional: bool = False) -> Dataset:
    """A tab-separated table of numbers, kind ``"table"``, one example per row.

    The first row is a header when it has a text cell over a number in the row below (or,
    alone, any text cell); otherwise the columns are named ``col0 .. colD-1``. Blank lines are
    skipped. ``label_column`` (a header name, or a 0-based index when there is no header) is
    taken out of the features and becomes labels indexing ``classes``, the sorted distinct
    values of the column. ``id_column`` (named alike) is taken out of the features too and
    kept, as written, in ``ids``. Every other cell must be a finite number: text, missing values
    (empty, ``NA``, ``NaN``) and infinities are refused with their row (the file's line
    number) and column.
    """
    return _load_table(path, "\t", label_column, label_optional, id_column, id_optional)


# ---------------------------------------------------------------------------------------------
# Folders of images
# ---------------------------------------------------------------------------------------------

# Modes that hold one channel: read as "L" unless another image in the folder has colour.
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
# What Pillow raises on a damaged file (a truncated PNG, bad JPEG markers, a broken header).
_PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error)
_EXIF_ORIENTATION = 0x0112  # values 5..8 rotate by 90 degrees, swapping width and height


@register_source("images", "folders of images")
def load_image_folder(
    path: PathLike, *, image_size: tuple[int, int] | None = None, grayscale: bool = False
) -> Dataset:
    """Every PNG and JPEG under a folder, as ``(N, C, H, W)`` float32 in [0, 1], kind ``"image"``.

    Images are found recursively (suffixes in any case; hidden files and folders skipped) and
    ordered by relative path. Other files are skipped with one
    :class:`~vaekit.errors.VaekitWarning` that counts them and names the first three;
    ``skipped`` lists them all. When no image lies directly in the folder, each immediate
    subfolder is a class: labels index ``classes``, the sorted subfolder names. Images are read
    as "L" (one channel) with ``grayscale`` or when every image has one channel, else as "RGB";
    EXIF orientation is applied. Without ``image_size`` all images must share one size; with it
    they are resized to ``(H, W)`` (bilinear).
    """
    from PIL import Image, ImageOps  # Pillow is needed only for folders of images

    folder = pathlib.Path(path)
    if image_size is not None:
        image_size = _check_image_size(folder, image_size)
    files, skipped = _image_files(folder)
    if skipped:
        _warn_skipped(folder, skipped)

    # Pass 1: headers only (mode and size), so a folder of mismatched sizes is refused before
    # anything is decoded.
    modes, sizes = [], []
    for f in files:
        try:
            with _open_image(f, Image) as img:
                w, h = img.size
                if img.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                    w, h = h, w
                modes.append(img.mode)
                sizes.append((h, w))
        except _PIL_ERRORS + (Image.DecompressionBombError,) as e:
            raise VaekitError(f"{f}: cannot read image ({one_line(e)})") from None
    mode = "L" if grayscale or all(m in _GREY_MODES for m in modes) else "RGB"
    if image_size is None:
        odd = next((i for i, s in enumerate(sizes) if s != sizes[0]), None)
        if odd is not None:
            (h0, w0), (h1, w1) = sizes[0], sizes[odd]
            raise VaekitError(
                f"{folder}: images differ in size: {files[0].relative_to(folder)} is {h0}x{w0} and "
                f"{files[odd].relative_to(folder)} is {h1}x{w1} (height x width); pass --image-size H W to resize them"
            )
        image_size = sizes[0]

    h, w = image_size
    channels = 1 if mode == "L" else 3
    pixels = np.empty((len(files), h, w, channels), dtype=np.uint8)  # (N, H, W, C) as PIL gives them
    for i, f in enumerate(files):
        try:
            with _open_image(f, Image) as img:
                img = ImageOps.exif_transpose(img)
                if img.mode.startswith("I"):  # 16-bit grey: to 8 bits first (convert("L") would clip)
                    img = Image.fromarray((np.asarray(img, dtype=np.float64) / 257).round().clip(0, 255).astype(np.uint8))
                img = img.convert(mode)
                if img.size != (w, h):
                    img = img.resize((w, h), Image.Resampling.BILINEAR)
                pixels[i] = np.asarray(img).reshape(h, w, channels)
        except _PIL_ERRORS + (Image.DecompressionBombError,) as e:
            raise VaekitError(f"{f}: cannot read image ({one_line(e)})") from None

    # (N, H, W, C) uint8 -> (N, C, H, W) float32 in [0, 1]
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
    labels = classes = None
    relative = [f.relative_to(folder).parts for f in files]
    if all(len(parts) > 1 for parts in relative):  # one subfolder per class
        classes = sorted({parts[0] for parts in relative})
        index = {c: k for k, c in enumerate(classes)}
        labels = torch.tensor([index[parts[0]] for parts in relative], dtype=torch.int64)
    return Dataset(name=str(folder), train=x, test=None, train_labels=labels, kind="image", classes=classes,
                   skipped=skipped)


def _check_image_size(folder: pathlib.Path, image_size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in image_size)
        ok = (h, w) == tuple(image_size) and h > 0 and w > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise VaekitError(f"{folder}: --image-size takes two positive integers H W, got {image_size!r}")
    return h, w


def _image_files(folder: pathlib.Path) -> tuple[list[pathlib.Path], list[str]]:
    """The images under ``folder`` (sorted by relative path) and the other files it holds
    (relative paths, sorted; hidden files are neither)."""
    found, others = [], []
    try:
        for f in folder.rglob("*"):
            rel = f.relative_to(folder)
            if any(part.startswith(".") for part in rel.parts) or not f.is_file():
                continue  # hidden, e.g. .DS_Store or macOS's ._name.jpg
            (found if f.suffix.lower() in IMAGE_SUFFIXES else others).append(f)
    except OSError as e:
        raise VaekitError(f"{folder}: cannot list the folder ({e.strerror or e})") from None
    if not found:
        extra = f" (it holds {len(others)} other files, e.g. {sorted(others)[0].relative_to(folder)})" if others else ""
        raise VaekitError(f"{folder}: no PNG or JPEG images found{extra}")
    skipped = sorted(f.relative_to(folder).as_posix() for f in others)
    return sorted(found, key=lambda f: f.relative_to(folder).as_posix()), skipped


def _warn_skipped(folder: pathlib.Path, skipped: list[str], show: int = 3) -> None:
    """One warning line: how many files of ``folder`` are not PNG or JPEG images, the first few by name."""
    names = ", ".join(skipped[:show]) + (", ..." if len(skipped) > show else "")
    what = "1 file that is not a PNG or JPEG image" if len(skipped) == 1 else \
        f"{len(skipped)} files that are not PNG or JPEG images"
    warnings.warn(f"{folder}: skipped {what}: {names}", VaekitWarning, stacklevel=2)


def _open_image(f: pathlib.Path, Image):
    """``Image.open``, its failures as one line naming the file (Pillow decodes lazily: the
    caller's ``convert`` or ``load`` can still fail on a truncated file)."""
    try:
        return Image.open(f)
    except Image.UnidentifiedImageError:
        raise VaekitError(f"{f}: cannot read image (not a PNG or JPEG file, or corrupt)") from None
    except _PIL_ERRORS + (Image.DecompressionBombError,) as e:
        raise VaekitError(f"{f}: cannot read image ({one_line(e)})") from None
