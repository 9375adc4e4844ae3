"""Run directories: a folder alone rebuilds the model.

Layout::

    RUN/
      config.json         model and training configs, data description, versions, date
      model.safetensors   the weights (never pickle)
      metrics.csv         one row an epoch
      summary.json        the final test figures (what ``vaekit evaluate RUN`` reproduces)
      reconstructions.png, samples.png
"""

from __future__ import annotations

import csv
import io
import datetime as _dt
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .config import ModelConfig, TrainConfig, from_dict, to_dict
from .errors import VaekitError
from .models import build_model

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.csv"
SUMMARY = "summary.json"


def versions() -> dict[str, str]:
    """Versions of what produced a run, recorded in its config."""
    import numpy

    from .version import __version__
    return {
        "vaekit": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def atomic_write_bytes(path: Path, data: bytes, *, crash_after: int | None = None) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half:
    a temporary file, flush, fsync, rename, then fsync of the folder.

    ``crash_after`` (tests only) SIGKILLs the process after that many bytes, as a power cut
    would, to prove that the previous file survives.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        if crash_after is not None:
            import signal

            f.write(data[:crash_after])
            f.flush()
            os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """The model's state as safetensors, written atomically."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    # Through atomic_write_bytes, not save_file: save_file creates its file with mode 0600,
    # which would leave the weights unreadable to whoever can read the rest of the run.
    atomic_write_bytes(path, save(state))


def prepare_run_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` for a new run; refuse one that already holds a run."""
    run_dir = Path(path)
    if (run_dir / CONFIG).exists():
        raise VaekitError(f"{run_dir}: already holds a run (config.json); choose another --run-dir or remove it")
    if run_dir.exists() and not run_dir.is_dir():
        raise VaekitError(f"{run_dir}: exists and is not a directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def write_config(run_dir: Path, model_config: ModelConfig, train_config: TrainConfig, data: dict[str, Any]) -> None:
    write_json(
        run_dir / CONFIG,
        {
            "model": to_dict(model_config),
            "train": to_dict(train_config),
            "data": data,
            "versions": versions(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
    )


class MetricsWriter:
    """Appends one CSV row per epoch, flushed at once so a killed run keeps its history.

    The header is the first row's keys, so models with other objective terms log their own.
    ``keep_until_epoch`` (a resumed run) keeps the rows up to that epoch and appends after them.
    """

    def __init__(self, path: Path, keep_until_epoch: int | None = None):
        self.path = path
        self.fields: list[str] | None = None
        if keep_until_epoch is not None and path.exists():
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            kept = [r for r in rows if int(r["epoch"]) <= keep_until_epoch]
            if rows:
                self.fields = list(rows[0])
                buf = io.StringIO()
                w = csv.DictWriter(buf, self.fields)
                w.writeheader()
                w.writerows(kept)
                atomic_write_bytes(path, buf.getvalue().encode())

    def write(self, row: dict[str, Any]) -> None:
        new = self.fields is None
        if new:
            self.fields = list(row)
        with open(self.path, "w" if new else "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(self.fields)
            w.writerow([_fmt(row.get(k, "")) for k in self.fields])


def _fmt(v: Any) -> Any:
    return f"{v:.9g}" if isinstance(v, float) else v


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, str]]:
    with open(Path(run_dir) / METRICS, newline="") as f:
        return list(csv.DictReader(f))


@dataclass
class Run:
    """A loaded run directory."""

    path: Path
    model: torch.nn.Module
    model_config: ModelConfig
    train_config: TrainConfig
    info: dict[str, Any]


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> Run:
    """Rebuild the model of a run directory, with its configs.

    Raises
    ------
    VaekitError
        When the directory, its config or its weights are missing or unreadable, or the weights
        belong to another model.
    """
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise VaekitError(f"{run_dir}: no such run directory")
    cfg_path, weights_path = run_dir / CONFIG, run_dir / WEIGHTS
    if not cfg_path.exists():
        raise VaekitError(f"{run_dir}: not a run directory (no {CONFIG})")
    try:
        info = json.loads(cfg_path.read_text())
        model_config = from_dict(ModelConfig, info["model"])
        train_config = from_dict(TrainConfig, info.get("train", {}))
    # ValueError covers bad JSON, bad UTF-8 and a non-number where a number belongs;
    # AttributeError a section that is not an object.
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise VaekitError(f"{cfg_path}: unreadable run config ({type(e).__name__}: {e})") from None
    if not weights_path.exists():
        raise VaekitError(f"{run_dir}: has no weights ({WEIGHTS}); was training interrupted before the first epoch ended?")
    try:
        model = build_model(model_config)
    except VaekitError as e:  # e.g. an unknown likelihood: say which file asked for it
        raise VaekitError(f"{cfg_path}: {e}") from None
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise VaekitError(f"{weights_path}: unreadable weights ({e})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise VaekitError(f"{weights_path}: weights do not fit the model in {CONFIG} ({first})") from None
    model.to(device).eval()
    return Run(run_dir, model, model_config, train_config, info)


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The trained model of a run directory, ready to use.

    Examples
    --------
    >>> model = vaekit.load("runs/digits")  # doctest: +SKIP
    >>> x = model.sample(16)                # doctest: +SKIP
    """
    return load_run(path, device).model
