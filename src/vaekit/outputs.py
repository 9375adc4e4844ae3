"""Writing what users asked for: arrays (.npy) and image grids (.png), never half-written."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from torch import Tensor

from .errors import VaekitError
from .plots import save_image_grid
from .runs import atomic_write_bytes

SUFFIXES = (".png", ".npy")


def check_output_path(path: str | os.PathLike, suffixes: tuple[str, ...] = SUFFIXES) -> Path:
    """Refuse an output path with an unknown suffix or in a folder that does not exist."""
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise VaekitError(f"{out}: unknown output type {out.suffix or '(none)'!r}; use one of: {', '.join(suffixes)}")
    if not out.parent.is_dir():
        raise VaekitError(f"{out}: folder {out.parent} does not exist")
    return out


def save_npy(array: np.ndarray, path: str | os.PathLike) -> None:
    """``np.save`` written atomically."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(Path(path), buf.getvalue())


def save_tensor(x: Tensor, path: str | os.PathLike, *, title: str | None = None, nrow: int | None = None) -> Path:
    """Write ``x`` as ``.npy`` (any shape) or ``.png`` (an image grid; images only)."""
    out = check_output_path(path)
    if out.suffix.lower() == ".npy":
        save_npy(x.detach().cpu().numpy(), out)
    else:
        save_image_grid(x, out, nrow=nrow, title=title)
    return out


def save_table(values: Tensor, columns: list[str], path: str | os.PathLike, *, index: bool = False,
               ids: tuple[str, Sequence[str]] | None = None) -> Path:
    """Write ``values`` (N, len(columns)) as ``.npy`` or as a ``.csv`` with a header (and an
    ``index`` column of row numbers when asked), atomically.

    ``ids``, ``(name, one string per row)``, become the first column of a ``.csv``, as they
    are (quoted where a cell needs it); a ``.npy`` holds numbers only and refuses them.
    """
    out = check_output_path(path, (".npy", ".csv"))
    array = values.detach().cpu().numpy()
    if out.suffix.lower() == ".npy":
        if ids is not None:
            raise VaekitError(f"{out}: a .npy holds numbers only; write the ids ({ids[0]}) to a .csv")
        save_npy(array, out)
        return out
    buf = io.StringIO()
    header = (["index"] if index else []) + list(columns)
    buf.write(",".join(header) + "\n")
    rows = np.column_stack([np.arange(len(array)), array]) if index else array
    fmt = (["%d"] if index else []) + ["%.9g"] * array.shape[1]
    np.savetxt(buf, rows, fmt=fmt, delimiter=",")
    text = buf.getvalue() if ids is None else _with_ids(buf.getvalue(), *ids)
    atomic_write_bytes(out, text.encode())
    return out


def _with_ids(table: str, name: str, ids: Sequence[str]) -> str:
    """A CSV ``table`` (header, then rows of numbers) with the column ``name`` of ``ids`` in front."""
    lines = table.splitlines()
    if len(ids) != len(lines) - 1:
        raise VaekitError(f"{len(lines) - 1} rows but {len(ids)} ids")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for first, line in zip([name, *ids], lines):
        writer.writerow([first, *line.split(",")])  # numbers and plain names hold no commas
    return buf.getvalue()
