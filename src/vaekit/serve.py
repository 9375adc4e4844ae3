"""The live explorer, ``vaekit serve RUN``: one page whose sliders decode latent values as they move.

A Starlette app (:func:`make_app`) served by uvicorn (:func:`serve`), listening on 127.0.0.1
unless told otherwise. The page is one self-contained HTML document (inline CSS and JS, no
external URL) that talks to the app's own endpoints:

``GET /``
    the page
``GET /info``
    what the page needs: the latent units (most active first), the data's kind and shape, the
    map's axes, the conditional model's classes, a table run's columns and an example row
``POST /decode``
    ``{"z": [latent_dim numbers], "y": class}`` (``y`` only for a conditional model) as
    ``application/json`` -> the decoded mean as a PNG: the image scaled up, or a bar chart of
    a table's columns; ``?format=json`` gives ``{"columns", "values"}`` in the data's units
``GET /map.png``
    held-out latent means on the two most active units, axes ``[-3, 3]`` (``/info`` says where
    the axes lie in the picture)
``POST /encode``
    an image (multipart field ``file``, or an ``image/png`` or ``image/jpeg`` body; resized
    and converted to the run's shape) or a table row (multipart field ``row``, or a
    ``text/csv`` body; with or without the header line); a conditional model's class as the
    field or query parameter ``y`` -> ``{"z", "scale", "input", "reconstruction", ...}``: the latent means and
    scales, and pictures as ``data:`` URLs

Every request is checked (body size, content type, count and shape of values, finite numbers,
a decodable image, a table row's columns); a bad one gets a 4xx answer ``{"error": "..."}``
and the server keeps serving. The model runs under ``torch.inference_mode()`` and one lock.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import math
import re
import socket
import struct
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from .data.types import one_line
from .errors import VaekitError
from .runs import Run

log = logging.getLogger("vaekit")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: the largest request body accepted (an uploaded image), in bytes
MAX_BODY = 8 * 2**20
#: sliders on the page, for the most active units; the other units stay at 0
MAX_SLIDERS = 16
#: the sliders' and the map's range of each latent unit
Z_RANGE = 3.0
#: held-out examples encoded for the map and the units' activity
MAP_EXAMPLES = 2000
#: decoded images are scaled up (nearest neighbour) to about this many pixels on their longer side
IMAGE_PIXELS = 256
#: table charts show at most this many columns
MAX_BARS = 40
#: an upload larger than this (width x height) is refused before it is decoded
MAX_UPLOAD_PIXELS = 40_000_000

# the map picture, in pixels: a square plot area, room for axis labels and a legend at the right
_MAP_W, _MAP_H, _MAP_LEFT, _MAP_TOP, _MAP_SIDE = 560, 470, 62, 34, 380
# what Pillow raises on a damaged file
_PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error)


def _bad(status: int, message: str) -> HTTPException:
    return HTTPException(status, message)


# -- the model's side ----------------------------------------------------------------------------

class Explorer:
    """A run's model with what the page shows of it: units by activity, the map, the renderers.

    Every method that touches the model or draws takes :attr:`lock`; call them from worker
    threads (the app does, through ``run_in_threadpool``).
    """

    def __init__(self, run: Run, *, map_examples: int = MAP_EXAMPLES):
        from .data.prepare import transform_from_dict
        from .plots import is_image_shape

        self.run, self.model = run, run.model
        self.data_info: dict[str, Any] = run.info.get("data") or {}
        self.shape = tuple(run.model_config.data_shape)
        self.is_image = is_image_shape(self.shape)
        self.transform = transform_from_dict(self.data_info.get("transform"))
        self.latent_dim = int(self.model.config.latent_dim)
        self.conditional = "y" in self.model.conditions
        self.n_classes = int(run.model_config.n_classes or 0)
        names = self.data_info.get("classes") or []
        self.classes = [str(c) for c in names] if len(names) == self.n_classes else [str(k) for k in range(self.n_classes)]
        columns = self.data_info.get("columns")
        self.columns = list(columns) if columns else [f"x{k}" for k in range(math.prod(self.shape))]
        self.lock = threading.Lock()

        self.note = ""
        means, labels, heldout = self._heldout(map_examples)
        if len(means) > 1:
            self.activity = means.var(0)
        else:
            self.activity = torch.zeros(self.latent_dim)
        order = sorted(range(self.latent_dim), key=lambda k: (-float(self.activity[k]), k))
        self.units = order[:MAX_SLIDERS]
        self.map_units = (self.units[0], self.units[1] if self.latent_dim > 1 else None)
        self.value_range = self._value_range(heldout)
        self.example_row = self._example_row(heldout)
        with self.lock:
            self.map_png = self._map(means, labels)
        self.output_size = _png_size(self.decode_png([0.0] * self.latent_dim, 0 if self.conditional else None))

    # held-out data: the map, the activity of the units, a table's example row
    def _heldout(self, n: int):
        from .data.prepare import load_examples

        empty = torch.zeros(0, self.latent_dim)
        try:
            examples = load_examples(self.run.train_config, "test", data_shape=self.shape, data_info=self.data_info)
        except VaekitError as e:
            self.note = f"no held-out data to map ({e})"
            log.warning("serve: %s", self.note)
            return empty, None, None
        examples = examples.head(n)
        if self.conditional and examples.y is None:
            self.note = "no held-out labels for the conditional model; the map is empty"
            return empty, None, examples
        locs = []
        with self.lock, torch.inference_mode():
            for batch in examples.batches(500, self.model.device):
                locs.append(self.model.encode(batch).mean.float().cpu())
        means = torch.cat(locs) if locs else empty
        means = torch.nan_to_num(means)
        return means, examples.y, examples

    def _value_range(self, heldout) -> tuple[float, float] | None:
        """The data's range in their own units, to show images whose values are not in [0, 1]."""
        if self.transform is None or heldout is None or not len(heldout):
            return None
        from .data.prepare import undo_transform

        x = undo_transform(self.data_info, heldout.x if isinstance(heldout.x, torch.Tensor) else heldout.x[:])
        lo, hi = float(x.min()), float(x.max())
        return (lo, hi) if hi > lo else None

    def _example_row(self, heldout) -> str:
        """A table run's first held-out row in the data's units, with the header line."""
        if self.is_image:
            return ""
        from .data.prepare import undo_transform

        values = [0.0] * len(self.columns)
        if heldout is not None and len(heldout):
            values = undo_transform(self.data_info, heldout.x[:1].float())[0].reshape(-1).tolist()
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        w.writerow([f"{v:.6g}" for v in values])
        return buf.getvalue()

    # -- checks of what a request asks ---------------------------------------------------------
    def check_z(self, z: Any) -> list[float]:
        if not isinstance(z, list):
            raise _bad(422, f"'z' must be a list of {self.latent_dim} numbers, got {type(z).__name__}")
        if len(z) != self.latent_dim:
            raise _bad(422, f"'z' holds {len(z)} values; the model has {self.latent_dim} latent units")
        values = []
        for k, v in enumerate(z):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise _bad(422, f"z[{k}] is {json.dumps(v)[:40]}, not a number")
            try:
                v = float(v)
            except OverflowError:  # an integer beyond any float
                v = math.inf
            if not math.isfinite(v):
                raise _bad(422, f"z[{k}] is {v}, not a finite number")
            values.append(v)
        return values

    def check_y(self, y: Any) -> int | None:
        """A conditional model's class: its index (a number or a numeric string) or its name."""
        if not self.conditional:
            if y is not None:
                raise _bad(422, "'y': the run's model is not conditional; send no class")
            return None
        if y is None:
            raise _bad(422, f"'y': the conditional model needs a class, one of {', '.join(self.classes)}")
        if isinstance(y, str) and y in self.classes:
            return self.classes.index(y)
        try:
            index = int(y) if isinstance(y, (int, str)) and not isinstance(y, bool) else None
        except ValueError:
            index = None
        if index is None or not 0 <= index < self.n_classes:
            raise _bad(422, f"'y': {str(y)[:40]!r} is not a class of the run (0-{self.n_classes - 1} or a class name)")
        return index

    # -- the model ------------------------------------------------------------------------------
    def _conditions(self, y: int | None, n: int = 1) -> dict[str, torch.Tensor]:
        return {} if y is None else {"y": torch.full((n,), y, dtype=torch.int64, device=self.model.device)}

    def decode(self, z: list[float], y: int | None) -> torch.Tensor:
        """The decoded mean at ``z`` in the data's units, shaped as one example."""
        from .data.prepare import undo_transform

        with self.lock, torch.inference_mode():
            zt = torch.tensor([z], dtype=torch.float32, device=self.model.device)
            out = self.model.decode(zt, self._conditions(y)).mean.float()
            return torch.nan_to_num(undo_transform(self.data_info, out).cpu()[0])

    def decode_png(self, z: list[float], y: int | None) -> bytes:
        x = self.decode(z, y)
        with self.lock:
            return self._image_png(x) if self.is_image else self._chart_png(x.reshape(-1), None)

    def decode_values(self, z: list[float], y: int | None) -> dict[str, Any]:
        return {"columns": self.columns, "values": self.decode(z, y).reshape(-1).tolist()}

    def _encode(self, x: torch.Tensor, y: int | None, what: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loc, scale, reconstruction in the data's units)`` of one example ``x`` as the model sees it."""
        from .data.prepare import undo_transform

        if not bool(torch.isfinite(x).all()):
            raise _bad(422, f"{what}: holds values that are not finite numbers")
        try:
            self.model.check_values(float(x.min()), float(x.max()), what)
        except VaekitError as e:
            raise _bad(422, str(e)) from None
        with self.lock, torch.inference_mode():
            batch = {"x": x.unsqueeze(0).to(self.model.device), **self._conditions(y)}
            qz = self.model.encode(batch)
            loc, scale = qz.mean.float(), qz.stddev.float()
            recon = self.model.decode(qz.mean, batch).mean.float()
            return loc.cpu()[0], scale.cpu()[0], torch.nan_to_num(undo_transform(self.data_info, recon).cpu()[0])

    def encode_image(self, data: bytes, y: int | None) -> dict[str, Any]:
        """An uploaded PNG or JPEG: resized and converted to the run's shape, transformed and
        binarized as the model's held-out data were, then encoded and reconstructed."""
        from PIL import Image, ImageOps

        from .data.prepare import binarize_heldout, undo_transform

        c, h, w = self.shape
        try:
            with Image.open(io.BytesIO(data)) as img:
                if img.format not in ("PNG", "JPEG"):
                    raise _bad(415, f"the upload is a {img.format} image; send a PNG or JPEG")
                if img.size[0] * img.size[1] > MAX_UPLOAD_PIXELS:
                    raise _bad(413, f"the upload is {img.size[0]}x{img.size[1]} pixels; at most "
                                    f"{MAX_UPLOAD_PIXELS:,} pixels are read")
                img = ImageOps.exif_transpose(img)
                if img.mode.startswith("I"):  # 16-bit grey: to 8 bits first (convert("L") would clip)
                    img = Image.fromarray((np.asarray(img, dtype=np.float64) / 257).round().clip(0, 255).astype(np.uint8))
                img = img.convert("L" if c == 1 else "RGB")
                if img.size != (w, h):
                    img = img.resize((w, h), Image.Resampling.BILINEAR)
                pixels = np.asarray(img, dtype=np.uint8).reshape(h, w, c)
        except HTTPException:
            raise
        except Image.UnidentifiedImageError:
            raise _bad(415, "the upload is not a PNG or JPEG image (or it is corrupt)") from None
        except _PIL_ERRORS + (Image.DecompressionBombError,) as e:
            raise _bad(422, f"the upload cannot be read as an image ({one_line(e)})") from None
        x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div_(255.0)
        if self.transform is not None:  # pixels in [0, 1] mean the data's range
            lo, hi = self.value_range or (0.0, 1.0)
            x = self.transform(lo + x * (hi - lo))
        if self.run.train_config.binarize != "none":
            x = binarize_heldout(x.unsqueeze(0))[0]
        loc, scale, recon = self._encode(x, y, "the uploaded image")
        with self.lock:
            shown = self._image_png(undo_transform(self.data_info, x.unsqueeze(0))[0])
            rebuilt = self._image_png(recon)
        return {"z": loc.tolist(), "scale": scale.tolist(), "input": _data_url(shown), "reconstruction": _data_url(rebuilt)}

    def encode_row(self, text: str, y: int | None) -> dict[str, Any]:
        """One table row as CSV text (with or without the header line), read as the run's own
        file is (columns matched by name, the run's transform applied), encoded and reconstructed.
        Commas separate the values, or tabs when the first line holds tabs and no comma."""
        from .data.prepare import load_examples, undo_transform

        lines = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
        if not lines:
            raise _bad(422, f"the row is empty; send one line of {len(self.columns)} numbers, the run's columns "
                            f"{_names(self.columns)}")
        delimiter = "\t" if "\t" in lines[0] and "," not in lines[0] else ","
        first = next(csv.reader([lines[0]], delimiter=delimiter), [])
        header = not all(_number_or_missing(c) for c in first)
        if not header:
            if len(first) != len(self.columns):
                raise _bad(422, f"the row has {len(first)} values; the run's table has {len(self.columns)} columns "
                                f"({_names(self.columns)})")
            if self.data_info.get("columns"):
                buf = io.StringIO()
                csv.writer(buf, delimiter=delimiter, lineterminator="\n").writerow(self.columns)
                lines.insert(0, buf.getvalue().rstrip("\n"))
            header = bool(self.data_info.get("columns"))
        rows = len(lines) - (1 if header else 0)
        if rows == 0:
            text_cell = next(c.strip() for c in first if not _number_or_missing(c))
            raise _bad(422, f"no row of values: {lines[0][:60]!r} holds text ({text_cell[:20]!r}), so it reads as a "
                            f"header line; send one row of {len(self.columns)} numbers, the columns "
                            f"{_names(self.columns)}, with or without the header line")
        if rows != 1:
            raise _bad(422, f"send one row of values (after the header line, if any); got {rows}")
        with tempfile.TemporaryDirectory(prefix="vaekit-serve-") as tmp:
            path = Path(tmp) / ("row.tsv" if delimiter == "\t" else "row.csv")
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            try:
                examples = load_examples(self.run.train_config, None, data=str(path), data_shape=self.shape,
                                         data_info=self.data_info)
            except VaekitError as e:
                # one row: its number in the file (which may have gained a header line) says nothing
                raise _bad(422, re.sub(r"row \d+, ", "", str(e).replace(str(path), "the uploaded row"))) from None
        x = examples.x[:1].float()[0]
        loc, scale, recon = self._encode(x, y, "the uploaded row")
        given = undo_transform(self.data_info, x.unsqueeze(0))[0].reshape(-1)
        with self.lock:
            chart = self._chart_png(recon.reshape(-1), given)
        return {"z": loc.tolist(), "scale": scale.tolist(), "reconstruction": _data_url(chart),
                "columns": self.columns, "values": recon.reshape(-1).tolist(), "input_values": given.tolist()}

    # -- pictures (the caller holds the lock) ---------------------------------------------------
    def _image_png(self, x: torch.Tensor) -> bytes:
        """One ``(C, H, W)`` example in the data's units as a PNG, scaled up to about
        :data:`IMAGE_PIXELS` on its longer side."""
        from PIL import Image

        c, h, w = self.shape
        x = x.reshape(c, h, w).float()
        if self.value_range is not None:
            lo, hi = self.value_range
            x = (x - lo) / (hi - lo)
        pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        img = Image.fromarray(pixels[0] if c == 1 else pixels.transpose(1, 2, 0), "L" if c == 1 else "RGB")
        s = max(1, IMAGE_PIXELS // max(h, w))
        img = img.resize((w * s, h * s), Image.Resampling.NEAREST)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()

    def _chart_png(self, values: torch.Tensor, given: torch.Tensor | None) -> bytes:
        """A table's values (and the row given, beside them) as horizontal bars, one per column,
        labelled with the values in the data's units. Bars are in standard deviations from the
        training mean when the run standardized its table, so columns of any scale compare."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        n = min(len(values), MAX_BARS)
        std = self.transform is not None

        def height(v: torch.Tensor) -> np.ndarray:
            v = v[:n].float()
            if std:
                v = (v - self.transform.mean[:n]) / self.transform.std[:n]
            return v.numpy()

        # 410 pixels wide: the page's narrower column holds it at its size
        row = (0.64 if given is not None else 0.32) if n <= 10 else 0.22  # inches a column; long tables closer
        fig = Figure(figsize=(4.1, 1.0 + row * n), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        rows = np.arange(n)[::-1].astype(float)
        series = [("decoded", values, "#3465a4")] if given is None else \
            [("given", given, "#babdb6"), ("reconstructed", values, "#3465a4")]
        thick = 0.8 / len(series)
        for i, (label, v, colour) in enumerate(series):
            offset = (len(series) - 1) / 2 * thick - i * thick
            bars = ax.barh(rows + offset, height(v), height=thick, color=colour, label=label)
            if given is None or n <= 10:  # two labels a row crowd a long table
                ax.bar_label(bars, labels=[f"{float(t):.4g}" for t in v[:n]], padding=3, fontsize=7)
        ax.set_yticks(rows, [str(c)[:18] for c in self.columns[:n]], fontsize=8)
        ax.axvline(0, color="#555753", linewidth=0.8)
        lim = max(Z_RANGE, *(float(np.abs(height(v)).max()) * 1.35 for _, v, _ in series))
        ax.set_xlim(-lim, lim)
        labelled = given is None or n <= 10
        ax.set_xlabel(("standard deviations from the training mean" if std else "value")
                      + ("\n(bar labels: values in the data's units)" if std and labelled else ""), fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        if given is not None:
            ax.legend(fontsize=7, loc="lower right")
        if n < len(values):
            ax.set_title(f"the first {n} of {len(values)} columns", fontsize=8)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        return buf.getvalue()

    def _map(self, means: torch.Tensor, labels: torch.Tensor | None) -> bytes:
        """Held-out latent means on the two most active units, both axes ``[-Z_RANGE, Z_RANGE]``."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        dpi = 100
        fig = Figure(figsize=(_MAP_W / dpi, _MAP_H / dpi), dpi=dpi)
        FigureCanvasAgg(fig)
        ax = fig.add_axes([_MAP_LEFT / _MAP_W, 1 - (_MAP_TOP + _MAP_SIDE) / _MAP_H, _MAP_SIDE / _MAP_W, _MAP_SIDE / _MAP_H])
        a, b = self.map_units
        xs = means[:, a].numpy() if len(means) else np.zeros(0)
        ys = means[:, b].numpy() if len(means) and b is not None else np.zeros(len(xs))
        if labels is not None and len(xs) and len(set(labels.tolist())) <= 20:
            cmap = _colours()
            for k in sorted(set(labels.tolist())):
                sel = (labels == k).numpy()
                name = self.data_info.get("classes") or []
                ax.scatter(xs[sel], ys[sel], s=7, alpha=0.7, color=cmap[k % len(cmap)], linewidths=0,
                           label=str(name[k]) if k < len(name) else str(k))
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, markerscale=2, frameon=False,
                      title="class", title_fontsize=8)
        elif len(xs):
            ax.scatter(xs, ys, s=7, alpha=0.6, color="#3465a4", linewidths=0)
        else:
            ax.text(0, 0, "no held-out data to show", ha="center", va="center", fontsize=9, color="#555753")
        ax.set_xlim(-Z_RANGE, Z_RANGE)
        ax.set_ylim(-Z_RANGE, Z_RANGE)
        ax.grid(True, color="#eeeeec", linewidth=0.8)
        ax.set_axisbelow(True)
        ax.set_xlabel(f"z{a}", fontsize=9)
        ax.set_ylabel(f"z{b}" if b is not None else "(one latent unit)", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_title(f"held-out latent means ({len(xs)}); click to set z{a}" + (f", z{b}" if b is not None else ""),
                     fontsize=9)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
        return buf.getvalue()

    def page_info(self, max_body: int) -> dict[str, Any]:
        return {
            "run": self.run.path.name,
            "model": self.run.model_config.model,
            "data": str(self.run.train_config.data),
            "kind": "image" if self.is_image else "table",
            "shape": list(self.shape),
            "latent_dim": self.latent_dim,
            "units": self.units,
            "activity": [round(float(self.activity[k]), 4) for k in self.units],
            "range": [-Z_RANGE, Z_RANGE],
            "output_size": list(self.output_size),
            "map": {"x_unit": self.map_units[0], "y_unit": self.map_units[1], "range": [-Z_RANGE, Z_RANGE],
                    "size": [_MAP_W, _MAP_H], "box": [_MAP_LEFT, _MAP_TOP, _MAP_SIDE, _MAP_SIDE], "note": self.note},
            "conditional": self.conditional,
            "classes": self.classes if self.conditional else None,
            "columns": None if self.is_image else self.columns,
            "example_row": self.example_row,
            "binarized": self.run.train_config.binarize != "none",
            "max_body": max_body,
        }


def _colours() -> list[str]:
    return ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354",
            "#756bb1", "#636363"]


def _names(columns: list[str], show: int = 8) -> str:
    return ", ".join(columns[:show]) + (", ..." if len(columns) > show else "")


def _number_or_missing(cell: str) -> bool:
    from .data.files import MISSING_CELLS

    cell = cell.strip()
    if cell.lower() in MISSING_CELLS:
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _png_size(png: bytes) -> tuple[int, int]:
    """``(height, width)`` of a PNG, from its header."""
    width, height = struct.unpack(">II", png[16:24])
    return height, width


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# -- the web side ----------------------------------------------------------------------------------

class _BodyLimit:
    """Refuse a request body over ``limit`` bytes with 413: at once when its Content-Length says
    so, else as soon as the bytes received pass the limit (a chunked upload)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await _error(400, "Content-Length is not a number")(scope, receive, send)
            if declared > self.limit:
                return await _error(413, f"the request body has {declared:,} bytes; at most {self.limit:,} are "
                                         "accepted")(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, f"the request body passes {self.limit:,} bytes, the most accepted")
            return message

        await self.app(scope, limited, send)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _input_error(request: Request, exc: Exception) -> Response:
    return _error(422, str(exc))


async def _server_error(request: Request, exc: Exception) -> Response:
    return _error(500, f"internal error ({type(exc).__name__}: {one_line(exc)}); the server keeps serving")


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a finite number")


def make_app(run: Run, *, max_body: int = MAX_BODY, map_examples: int = MAP_EXAMPLES) -> Starlette:
    """The explorer of a loaded run (:func:`vaekit.runs.load_run`) as a Starlette app."""
    explorer = Explorer(run, map_examples=map_examples)
    info = explorer.page_info(max_body)

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE)

    async def page_info(request: Request) -> Response:
        return JSONResponse(info)

    async def map_png(request: Request) -> Response:
        return Response(explorer.map_png, media_type="image/png", headers={"Cache-Control": "no-cache"})

    async def decode(request: Request) -> Response:
        fmt = request.query_params.get("format", "png")
        if fmt not in ("png", "json"):
            raise _bad(400, f"format={fmt[:20]!r}: choose png or json")
        if _media_type(request) != "application/json":
            raise _bad(415, "send the latent values as application/json: {\"z\": [numbers]}")
        body = await request.body()
        try:
            payload = json.loads(body, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as e:
            raise _bad(400, f"malformed JSON ({one_line(e)})") from None
        if not isinstance(payload, dict):
            raise _bad(422, "send a JSON object: {\"z\": [numbers]}")
        unknown = sorted(set(payload) - {"z", "y"})
        if unknown:
            raise _bad(422, f"unknown field {unknown[0][:40]!r}; send 'z' (and 'y' for a conditional model)")
        if "z" not in payload:
            raise _bad(422, f"no 'z': send the {explorer.latent_dim} latent values")
        z, y = explorer.check_z(payload["z"]), explorer.check_y(payload.get("y"))
        if fmt == "json":
            return JSONResponse(await run_in_threadpool(explorer.decode_values, z, y))
        return Response(await run_in_threadpool(explorer.decode_png, z, y), media_type="image/png")

    async def encode(request: Request) -> Response:
        media = _media_type(request)
        if media in ("multipart/form-data", "application/x-www-form-urlencoded"):
            form = await request.form(max_files=1, max_fields=4)
            y = explorer.check_y(form.get("y"))
            upload = form.get("file")
            if explorer.is_image:
                if not isinstance(upload, UploadFile):
                    raise _bad(422, "send the image as the multipart field 'file'")
                data = await upload.read()
                return JSONResponse(await run_in_threadpool(explorer.encode_image, data, y))
            row = form.get("row")
            if isinstance(upload, UploadFile):
                row = _text(await upload.read())
            if not isinstance(row, str):
                raise _bad(422, "send the table row as the multipart field 'row' (CSV text)")
            return JSONResponse(await run_in_threadpool(explorer.encode_row, row, y))
        if media in (("image/png", "image/jpeg") if explorer.is_image else ("text/csv", "text/plain")):
            y = explorer.check_y(request.query_params.get("y"))
            body = await request.body()
            if explorer.is_image:
                return JSONResponse(await run_in_threadpool(explorer.encode_image, body, y))
            return JSONResponse(await run_in_threadpool(explorer.encode_row, _text(body), y))
        what = "a PNG or JPEG image (image/png, image/jpeg, or the multipart field 'file')" if explorer.is_image else \
            "a table row as text/csv, or as the multipart field 'row'"
        raise _bad(415, f"send {what} (got {media or 'no content type'})")

    routes = [
        Route("/", page),
        Route("/info", page_info),
        Route("/map.png", map_png),
        Route("/decode", decode, methods=["POST"]),
        Route("/encode", encode, methods=["POST"]),
    ]
    app = Starlette(debug=False, routes=routes, middleware=[Middleware(_BodyLimit, limit=max_body)],
                    exception_handlers={HTTPException: _http_error, VaekitError: _input_error,
                                        Exception: _server_error})
    app.state.explorer = explorer
    return app


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _bad(422, f"the row is not UTF-8 text (byte 0x{body[e.start]:02x} at offset {e.start})") from None


# -- serving ---------------------------------------------------------------------------------------

def listen(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (port 0: a free one), or one line saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError, OverflowError) as e:
        raise VaekitError(f"--host {host}: not an address to listen on ({one_line(e)})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise VaekitError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from None
    sock.set_inheritable(True)
    return sock


def make_server(app: Starlette, *, log_level: str = "warning"):
    """A uvicorn server of ``app``; run it with ``server.run(sockets=[listen(...)])``."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off"))


def serve(run_dir: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, device: str = "cpu") -> None:
    """Serve the explorer of the run in ``run_dir`` on ``host``:``port`` until Ctrl-C."""
    from .runs import load_run

    run = load_run(run_dir, device)
    sock = listen(host, port)  # before the model work, so that a taken port fails at once
    try:
        app = make_app(run)
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        log.info("exploring %s at http://%s:%d/ (Ctrl-C stops)", run_dir, shown, bound_port)
        try:
            make_server(app).run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn stops gracefully on Ctrl-C, then raises it again
            pass
        log.info("stopped serving %s", run_dir)
    finally:
        sock.close()


PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>vaekit explorer</title>
<style>
  body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 16px 20px; color: #2e3436; }
  h1 { font-size: 20px; margin: 0 0 2px; }
  h2 { font-size: 15px; margin: 0 0 8px; }
  .sub { color: #555753; margin-bottom: 14px; }
  .grid { display: grid; grid-template-columns: minmax(360px, 440px) minmax(420px, 580px); gap: 16px; align-items: start; }
  .panel { border: 1px solid #d3d7cf; border-radius: 6px; padding: 12px 14px; margin-bottom: 16px; background: #fff; }
  .slider { display: grid; grid-template-columns: 44px 1fr 52px; gap: 8px; align-items: center; margin: 2px 0; }
  .slider label { font-family: ui-monospace, monospace; }
  .slider.inactive label, .slider.inactive output { color: #888a85; }
  .slider output { font-family: ui-monospace, monospace; text-align: right; }
  .slider input { width: 100%; }
  .hint { color: #555753; font-size: 12px; }
  .pixelated { image-rendering: pixelated; }
  #decoded { display: block; margin: 0 auto 10px; max-width: 100%; border: 1px solid #eeeeec; }
  .mapwrap { position: relative; display: inline-block; line-height: 0; }
  #map { cursor: crosshair; max-width: 100%; }
  #marker { position: absolute; width: 12px; height: 12px; margin: -7px 0 0 -7px; border: 2px solid #cc0000;
            border-radius: 50%; pointer-events: none; }
  .pair { display: flex; gap: 14px; flex-wrap: wrap; margin-top: 8px; }
  .pair figure { margin: 0; }
  .pair figcaption { font-size: 12px; color: #555753; }
  .pair img.small { width: 128px; border: 1px solid #eeeeec; }
  #error { color: #a40000; min-height: 1.4em; }
  #codes { font-family: ui-monospace, monospace; font-size: 12px; }
  textarea { width: 100%; font-family: ui-monospace, monospace; font-size: 12px; }
  button { font: inherit; padding: 2px 10px; margin-right: 6px; }
</style>
</head>
<body>
<h1>vaekit explorer</h1>
<div class="sub" id="about">loading...</div>
<div id="error" role="alert"></div>
<div class="grid">
  <div>
    <div class="panel">
      <h2>Decoded from the sliders</h2>
      <img id="decoded" alt="decoded output">
      <div id="classrow" hidden>class <select id="label"></select></div>
      <div id="sliders"></div>
      <div style="margin-top: 8px">
        <button id="zero" type="button">All to 0</button>
        <button id="random" type="button">Random z ~ N(0, I)</button>
      </div>
      <div class="hint" id="slidernote"></div>
    </div>
  </div>
  <div>
    <div class="panel">
      <h2>Latent map</h2>
      <div class="mapwrap"><img id="map" alt="latent map" src="map.png"><div id="marker"></div></div>
      <div class="hint" id="mapnote"></div>
    </div>
    <div class="panel">
      <h2 id="uptitle">Encode your own</h2>
      <div id="imageup" hidden>
        <input id="file" type="file" accept="image/png,image/jpeg">
        <div class="hint" id="imagehint"></div>
      </div>
      <div id="rowup" hidden>
        <textarea id="row" rows="3" spellcheck="false"></textarea>
        <button id="encoderow" type="button">Encode the row</button>
        <span class="hint">one row, with or without the header line</span>
      </div>
      <div class="pair" id="result" hidden>
        <figure id="inputfig"><img id="input" class="small pixelated" alt="input"><figcaption>as the model reads it</figcaption></figure>
        <figure><img id="recon" alt="reconstruction"><figcaption>reconstruction</figcaption></figure>
      </div>
      <div id="codes"></div>
    </div>
  </div>
</div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let INFO = null, z = [], busy = false, again = false;

function fmt(v) { return (v >= 0 ? "+" : "") + v.toFixed(2); }
function showError(text) { $("error").textContent = text || ""; }

async function answer(response) {
  if (response.ok) return response;
  let text = response.status + " " + response.statusText;
  try { text = (await response.json()).error || text; } catch (e) { /* not JSON */ }
  throw new Error(text);
}

function asDataURL(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

function request() {
  const body = {z: z};
  if (INFO.conditional) body.y = Number($("label").value);
  return body;
}

async function redraw() {
  if (busy) { again = true; return; }
  busy = true;
  try {
    do {
      again = false;
      const r = await answer(await fetch("decode", {method: "POST", headers: {"Content-Type": "application/json"},
                                                    body: JSON.stringify(request())}));
      $("decoded").src = await asDataURL(await r.blob());
      showError("");
    } while (again);
  } catch (e) {
    showError(e.message);
  } finally {
    busy = false;
  }
}

function setUnit(unit, value) {
  const [lo, hi] = INFO.range;
  value = Math.min(hi, Math.max(lo, value));
  z[unit] = value;
  const slider = $("s" + unit);
  if (slider) { slider.value = value; $("o" + unit).textContent = fmt(value); }
}

function placeMarker() {
  const m = INFO.map, [lo, hi] = m.range, [left, top, w, h] = m.box;
  const x = left + (z[m.x_unit] - lo) / (hi - lo) * w;
  const y = top + (m.y_unit === null ? 0.5 : (hi - z[m.y_unit]) / (hi - lo)) * h;
  $("marker").style.left = (100 * x / m.size[0]) + "%";
  $("marker").style.top = (100 * y / m.size[1]) + "%";
}

function buildSliders() {
  const box = $("sliders");
  INFO.units.forEach((unit, k) => {
    const row = document.createElement("div");
    row.className = INFO.activity[k] < 0.01 ? "slider inactive" : "slider";
    row.title = "unit " + unit + ": variance of its held-out means " + INFO.activity[k];
    const label = document.createElement("label");
    label.textContent = "z" + unit;
    label.htmlFor = "s" + unit;
    const input = document.createElement("input");
    Object.assign(input, {type: "range", id: "s" + unit, min: INFO.range[0], max: INFO.range[1], step: 0.01, value: 0});
    const out = document.createElement("output");
    out.id = "o" + unit;
    out.textContent = fmt(0);
    const moved = () => { setUnit(unit, parseFloat(input.value)); placeMarker(); redraw(); };
    input.addEventListener("input", moved);
    input.addEventListener("change", moved);
    row.append(label, input, out);
    box.append(row);
  });
  const hidden = INFO.latent_dim - INFO.units.length;
  $("slidernote").textContent = "units ordered by activity (variance of held-out latent means), most active first" +
    (INFO.activity.some((a) => a < 0.01) ? "; grey: inactive units (variance below 0.01), which change little" : "") +
    (hidden > 0 ? "; the other " + hidden + " units are held at 0" : "");
}

function onMapClick(event) {
  const m = INFO.map, [lo, hi] = m.range, [left, top, w, h] = m.box;
  const rect = event.currentTarget.getBoundingClientRect();
  const px = (event.clientX - rect.left) * m.size[0] / rect.width;
  const py = (event.clientY - rect.top) * m.size[1] / rect.height;
  const fx = (px - left) / w, fy = (py - top) / h;
  if (fx < 0 || fx > 1 || fy < 0 || fy > 1) return;
  setUnit(m.x_unit, lo + fx * (hi - lo));
  if (m.y_unit !== null) setUnit(m.y_unit, hi - fy * (hi - lo));
  placeMarker();
  redraw();
}

function showEncoding(result) {
  $("result").hidden = false;
  $("inputfig").hidden = !result.input;
  if (result.input) $("input").src = result.input;
  $("recon").src = result.reconstruction;
  $("recon").className = INFO.kind === "image" ? "small pixelated" : "";
  const shown = INFO.units.map((u) => "z" + u + " " + fmt(result.z[u]) + " (sd " + result.scale[u].toFixed(2) + ")");
  $("codes").textContent = "latent means: " + shown.join(", ") +
    (INFO.latent_dim > INFO.units.length ? " and " + (INFO.latent_dim - INFO.units.length) + " more" : "") +
    "; the sliders were set to this encoding";
  result.z.forEach((v, unit) => setUnit(unit, v));
  placeMarker();
  redraw();
}

async function encode(form) {
  if (INFO.conditional) form.append("y", $("label").value);
  try {
    const r = await answer(await fetch("encode", {method: "POST", body: form}));
    showEncoding(await r.json());
    showError("");
  } catch (e) {
    showError(e.message);
  }
}

async function main() {
  INFO = await (await answer(await fetch("info"))).json();
  z = new Array(INFO.latent_dim).fill(0);
  const shape = INFO.shape.join(" x ");
  $("about").textContent = INFO.run + ": " + INFO.model + " on " + INFO.data + " (" + INFO.kind + ", " + shape +
    "), " + INFO.latent_dim + " latent units" + (INFO.binarized ? "; inputs binarized as the model's data were" : "");
  if (INFO.kind === "image") {
    $("decoded").classList.add("pixelated");
    $("imageup").hidden = false;
    $("imagehint").textContent = "a PNG or JPEG, resized to " + INFO.shape[2] + " x " + INFO.shape[1] +
      (INFO.shape[0] === 1 ? " and made grey" : "") + "; encoding it sets the sliders";
    $("file").addEventListener("change", () => {
      const file = $("file").files[0];
      if (!file) return;
      const form = new FormData();
      form.append("file", file);
      encode(form);
    });
  } else {
    $("rowup").hidden = false;
    $("row").value = INFO.example_row;
    $("encoderow").addEventListener("click", () => { const f = new FormData(); f.append("row", $("row").value); encode(f); });
  }
  if (INFO.conditional) {
    $("classrow").hidden = false;
    INFO.classes.forEach((c, k) => { const o = document.createElement("option"); o.value = k; o.textContent = c; $("label").append(o); });
    $("label").addEventListener("change", redraw);
  }
  $("mapnote").textContent = INFO.map.note || ("each dot is a held-out example's latent mean on the two most active units; " +
    "the red ring is where the sliders are");
  buildSliders();
  $("map").addEventListener("click", onMapClick);
  $("zero").addEventListener("click", () => { z.forEach((_, u) => setUnit(u, 0)); placeMarker(); redraw(); });
  $("random").addEventListener("click", () => {
    INFO.units.forEach((u) => { const a = Math.random() || 1e-9, b = Math.random();
      setUnit(u, Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * b)); });
    placeMarker(); redraw();
  });
  placeMarker();
  await redraw();
}

main().catch((e) => showError("the explorer could not start: " + e.message));
</script>
</body>
</html>
"""
