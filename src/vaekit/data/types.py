"""The leaf of the data layer: what built-in datasets and users' files both return and use.

This module holds :class:`Dataset` (what every loader returns), :data:`PathLike`,
:class:`LazyArray` (what a dataset's ``train`` is when it is not a tensor) and the helpers that
turn an exception into the one line a :class:`~vaekit.errors.VaekitError` carries
(:func:`one_line`, :func:`cannot_read`, :func:`read_bytes`).

It imports nothing from vaekit but :mod:`vaekit.errors`, so that :mod:`vaekit.data.files`
(users' files) and :mod:`vaekit.data.builtin` (built-in datasets, which also dispatches to
users' files) can both import it without importing each other in a circle.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np
import torch

from ..errors import VaekitError

#: A path as a user gives it: a string or anything ``os.fspath`` takes.
PathLike = str | os.PathLike


class LazyArray(Protocol):
    """Rows read a batch at a time, indexed like a tensor (e.g. :class:`vaekit.data.files.MemmapArray`).

    ``x[idx]`` returns a float32 tensor of the rows ``idx`` (a tensor or sequence of row
    numbers, a slice or one int); ``subset`` returns a view of some rows without reading them.
    """

    @property
    def shape(self) -> tuple[int, ...]:
        """``(N, *example_shape)``."""
        ...

    def __len__(self) -> int:
        ...

    def __getitem__(self, idx: torch.Tensor | np.ndarray | Sequence[int] | slice | int) -> torch.Tensor:
        ...

    def subset(self, indices: torch.Tensor | np.ndarray | Sequence[int]) -> LazyArray:
        """A view of the rows ``indices``, in that order; nothing is read."""
        ...


@dataclass
class Dataset:
    """A dataset: training examples, test examples when it has its own split, and what they are.

    Attributes
    ----------
    name : str
        The registry name (``"digits"``, ``"mnist"``) or the path of a user's file.
    train : torch.Tensor or LazyArray
        float32, ``(N, *shape)``; images are ``(N, C, H, W)`` with values in [0, 1]. A large
        ``.npy`` comes as a :class:`~vaekit.data.files.MemmapArray`, read a batch at a time.
    test : torch.Tensor or None
        Like ``train``; None for a user's file, which is all training data.
    train_labels, test_labels : torch.Tensor or None
        int64 ``(N,)`` class labels, or None for unlabelled data.
    kind : str
        ``"image"``, ``"table"`` (a CSV/TSV file) or ``"array"`` (``N x D`` from ``.npy``).
    columns : list of str or None
        A table's feature column names, in order (the label column excluded).
    classes : list of str or None
        Label names (class folders, or a label column's distinct values); labels index it.
    ids : list of str or None
        A table's ``id_column``: each training example's name, as written in the file.
    skipped : list of str
        Files of a folder that were not read as images (their paths relative to the folder).
    """

    name: str
    train: torch.Tensor | LazyArray
    test: torch.Tensor | None
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    kind: str = "image"
    columns: list[str] | None = None
    classes: list[str] | None = None
    ids: list[str] | None = None
    skipped: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one example, e.g. ``(1, 28, 28)``."""
        return tuple(self.train.shape[1:])


def one_line(e: BaseException) -> str:
    """An exception's message on one line (runs of blanks and newlines become one space).

    Parameters
    ----------
    e : BaseException
        Any exception, typically one raised by numpy, gzip, csv, urllib or PIL.

    Returns
    -------
    str
        The message, or the exception's class name when the message is empty.

    Example
    -------
    >>> one_line(ValueError("bad\\n  header"))
    'bad header'
    >>> one_line(EOFError())
    'EOFError'
    """
    return " ".join(str(e).split()) or type(e).__name__


def cannot_read(path: PathLike, e: OSError) -> VaekitError:
    """The error for a file the operating system would not read: ``PATH: cannot read (REASON)``.

    Parameters
    ----------
    path : path
        The file, as the message names it.
    e : OSError
        What ``open`` or a read raised; its ``strerror`` (e.g. "Permission denied") is the reason.

    Returns
    -------
    VaekitError
        To be raised by the caller, ``from None`` so that no traceback of the OSError shows.

    Example
    -------
    >>> str(cannot_read("x.csv", PermissionError(13, "Permission denied")))
    'x.csv: cannot read (Permission denied)'
    """
    return VaekitError(f"{path}: cannot read ({e.strerror or e})")


def read_bytes(path: pathlib.Path) -> bytes:
    """The whole file's bytes; an OS failure is raised as :func:`cannot_read`'s one line.

    Parameters
    ----------
    path : pathlib.Path
        The file.

    Returns
    -------
    bytes
        Its content.

    Raises
    ------
    VaekitError
        ``PATH: cannot read (REASON)`` when the file cannot be opened or read.
    """
    try:
        return path.read_bytes()
    except OSError as e:
        raise cannot_read(path, e) from None
