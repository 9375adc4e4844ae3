"""Run directories: a folder alone rebuilds the model.

Layout::

    RUN/
      config.json         model and training configs, data description, versions, date
      model.safetensors   the weights (never pickle)
      metrics.csv         one row an epoch
      summary.json        the final test figures (what ``vaekit evaluate RUN`` reproduces)
      reconstructions.png, samples.png
      report.html         one self-contained page of it all (``vaekit.report``)
      checkpoint-last.safetensors   the whole training state at the last epoch's end (resume)
      checkpoint-best.safetensors   the weights at the best validation figure
"""

from __future__ import annotations

import contextlib
import csv
import io
import datetime as _dt
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save, save_file

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


@dataclass(frozen=True)
class Staged:
    """A file written in full under a temporary name beside ``path``, not yet in its place."""

    tmp: Path
    path: Path

    def commit(self) -> None:
        """Flush the bytes to disk (fsync), then rename: a crash, even a power cut, leaves the
        old file or the new one at ``path``, never half of one."""
        fd = os.open(self.tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


def stage(path: Path, parts: list[Any], *, crash_after: int | None = None) -> Staged:
    """Write ``parts`` (bytes-like, in order) to a temporary file beside ``path``; commit it
    with :meth:`Staged.commit`, now or in the background (:func:`commit_later`).

    ``crash_after`` (tests only) SIGKILLs the process after that many bytes, as a power cut
    would, to prove that the previous file survives.
    """
    wait_for_writes()  # a commit still pending may be renaming this very temporary file
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        if crash_after is not None:
            import signal

            f.write(b"".join(bytes(p) for p in parts)[:crash_after])
            f.flush()
            os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        for part in parts:
            f.write(part)
    return Staged(tmp, path)


def discard_temporaries(folder: Path) -> None:
    """Remove the temporary files this process left in ``folder`` (staged, never committed)."""
    for tmp in folder.glob(f".*.tmp-{os.getpid()}"):
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes, *, crash_after: int | None = None) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half:
    a temporary file, fsync, rename, then fsync of the folder."""
    stage(path, [data], crash_after=crash_after).commit()
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the renames in ``folder`` durable (where the platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Committer:
    """Commits staged files on one background thread, in order, so that their flush to disk
    (the slow part of a checkpoint: milliseconds per file) overlaps the next epoch's work."""

    def __init__(self) -> None:
        self._pool: Any = None
        self._pending: list[Any] = []

    def later(self, files: list[Staged]) -> None:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="vaekit-commit")
        self._pending.append(self._pool.submit(_commit_all, files))

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()  # raises what failed there


def _commit_all(files: list[Staged]) -> None:
    for f in files:
        f.commit()
    for folder in {f.path.parent for f in files}:  # one fsync of the folder for them all
        _fsync_dir(folder)


_COMMITTER = _Committer()


def commit_later(files: list[Staged]) -> None:
    """Commit ``files`` on the background thread (in order); :func:`wait_for_writes` waits."""
    _COMMITTER.later(files)


def wait_for_writes() -> None:
    """Return when every file handed to :func:`commit_later` is in its place."""
    _COMMITTER.wait()


@contextlib.contextmanager
def committed_after(files: list[Staged]) -> Iterator[None]:
    """Commit ``files`` (in the background) once the block has run; discard them if it raises.

    A checkpoint goes in place only after the block that records its epoch (the metrics row):
    a run stopped in between resumes from the epoch before and writes that row again."""
    try:
        yield
    except BaseException:
        for f in files:
            f.discard()
        raise
    commit_later(files)


def safetensors_parts(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> list[Any]:
    """``tensors`` as the bytes of a safetensors file (``safetensors.torch.save``), for :func:`stage`."""
    return [save(_plain(tensors), metadata=metadata)]


def _plain(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_NEW_FILE_MODE = 0o666 & ~_umask()  # what open() gives a new file here


def stage_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None, *,
                      crash_after: int | None = None) -> Staged:
    """``tensors`` staged beside ``path`` as safetensors, written by the library's own
    ``save_file`` straight to the temporary file (a third of a checkpoint's time, measured on
    the quick start, against building the bytes in memory first), then given the mode any new
    file gets: ``save_file`` makes it 0600, which would leave the weights unreadable to whoever
    can read the rest of the run. ``crash_after``: as :func:`stage` (tests)."""
    if crash_after is not None:
        return stage(path, safetensors_parts(tensors, metadata), crash_after=crash_after)
    wait_for_writes()  # a commit still pending may be renaming this very temporary file
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(_plain(tensors), tmp, metadata=metadata)
    os.chmod(tmp, _NEW_FILE_MODE)
    return Staged(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def stage_weights(model: torch.nn.Module, path: Path, metadata: dict[str, str] | None = None) -> Staged:
    """The model's state as safetensors, staged beside ``path`` (commit it to put it there).
    Not through save_file: it creates its file with mode 0600, which would leave the weights
    unreadable to whoever can read the rest of the run."""
    return stage_safetensors(path, model.state_dict(), metadata)


def save_weights(model: torch.nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """The model's state as safetensors, written atomically."""
    stage_weights(model, path, metadata).commit()
    _fsync_dir(path.parent)


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
    ``keep_until_epoch`` (a resumed run) keeps the rows up to that epoch and appends after them;
    a row with a column the file lacks (a run resumed by a newer vaekit) widens the header, the
    earlier rows left empty there.
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
        elif any(k not in self.fields for k in row):
            self._widen([k for k in row if k not in self.fields])
        with open(self.path, "w" if new else "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(self.fields)
            w.writerow([_fmt(row.get(k, "")) for k in self.fields])

    def _widen(self, added: list[str]) -> None:
        """Rewrite the file (atomically) with ``added`` columns at the end of its header."""
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        self.fields = [*self.fields, *added]
        buf = io.StringIO()
        w = csv.DictWriter(buf, self.fields, restval="")
        w.writeheader()
        w.writerows(rows)
        atomic_write_bytes(self.path, buf.getvalue().encode())


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
