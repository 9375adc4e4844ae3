"""Training checkpoints: everything needed to continue a run exactly, in one safetensors file.

Tensors (the model, the optimizer's state, the random generator's state, a partial epoch's
sums) are safetensors tensors; counters, the optimizer's hyperparameters and the scheduler's
state are JSON in the file's metadata. Nothing is unpickled on load, so a checkpoint executes
no code. Files are written atomically (temporary file, fsync, rename): a run killed at any
instant leaves the previous checkpoint readable.

The best checkpoint (``BEST``) is the weights alone, in the format of the run's
``model.safetensors`` (its metadata names the epoch and the validation figure): evaluating
needs no optimizer state, and only the last checkpoint is ever resumed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from ..errors import VaekitError
from ..runs import Staged, stage_safetensors

FORMAT = "vaekit-checkpoint-1"
LAST = "checkpoint-last.safetensors"
BEST = "checkpoint-best.safetensors"


@dataclass
class Progress:
    """Where a run stands: counters and what early stopping and the NaN guard remember."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    batch: int = 0  # batches done in the current (incomplete) epoch; 0 at an epoch's end
    best_val: float | None = None  # best validation objective so far
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs without improvement (early stopping)
    nan_skipped: int = 0  # batches skipped by --on-nan skip
    extra: dict[str, Any] = field(default_factory=dict)


def stage_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: Progress,
    generators: dict[str, torch.Generator],
    tensors: dict[str, torch.Tensor] | None = None,
) -> Staged:
    """Write a checkpoint of the whole training state beside ``path``; commit it
    (:meth:`vaekit.runs.Staged.commit`) to put it in place, atomically."""
    blobs: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        blobs[f"model/{k}"] = v
    opt = optimizer.state_dict()
    for idx, state in opt["state"].items():
        for k, v in state.items():
            blobs[f"optim/{idx}/{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    for name, g in generators.items():
        blobs[f"rng/{name}"] = g.get_state()
    for k, v in (tensors or {}).items():
        blobs[f"extra/{k}"] = v
    meta = {
        "format": FORMAT,
        "progress": json.dumps(asdict(progress)),
        "param_groups": json.dumps(opt["param_groups"]),
        "scheduler": json.dumps(scheduler.state_dict()),
    }
    crash = os.environ.get("VAEKIT_TEST_CRASH_CHECKPOINT")  # "N:BYTES": die writing the Nth
    crash_after = None
    if crash:
        nth, nbytes = (int(v) for v in crash.split(":"))
        stage_checkpoint.count = getattr(stage_checkpoint, "count", 0) + 1
        crash_after = nbytes if stage_checkpoint.count == nth else None
    return stage_safetensors(path, blobs, meta, crash_after=crash_after)


@dataclass
class Checkpoint:
    """A checkpoint read back: apply it with :meth:`restore`."""

    path: Path
    tensors: dict[str, torch.Tensor]
    progress: Progress
    param_groups: list[dict[str, Any]]
    scheduler: dict[str, Any]

    def model_state(self) -> dict[str, torch.Tensor]:
        return {k[len("model/"):]: v for k, v in self.tensors.items() if k.startswith("model/")}

    def extra(self, name: str) -> torch.Tensor | None:
        return self.tensors.get(f"extra/{name}")

    def check_model(self, model) -> None:
        """Refuse a checkpoint whose tensors do not fit ``model`` (another architecture), once the
        modules whose saved format changed (``take_saved_format``, the VampPrior) took the
        checkpoint's."""
        state = self.model_state()
        for name, module in model.named_modules():  # a module whose saved format changed takes the old one
            if hasattr(module, "take_saved_format"):
                module.take_saved_format(state, f"{name}." if name else "")
        own = model.state_dict()
        if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
            diff = sorted(set(state) ^ set(own)) or [k for k in own if state[k].shape != own[k].shape]
            raise VaekitError(f"{self.path}: a checkpoint of another model (differs at {diff[0]}); "
                              "resume it with the run's own config")

    def restore(self, model, optimizer, scheduler, generators: dict[str, torch.Generator]) -> None:
        """Load model, optimizer, scheduler and generator states; refuse another model's."""
        self.check_model(model)
        model.load_state_dict(self.model_state())
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in self.tensors.items():
            if k.startswith("optim/"):
                _, idx, name = k.split("/", 2)
                opt_state.setdefault(int(idx), {})[name] = v
        optimizer.load_state_dict({"state": opt_state, "param_groups": self.param_groups})
        scheduler.load_state_dict(self.scheduler)
        for name, g in generators.items():
            g.set_state(self.tensors[f"rng/{name}"])


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint; a truncated, corrupt or foreign file is refused in one line."""
    path = Path(path)
    if not path.exists():
        raise VaekitError(f"{path}: no checkpoint (was the run stopped before its first epoch ended?)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise VaekitError(f"{path}: truncated or corrupt checkpoint ({str(e).splitlines()[0]})") from None
    if meta.get("format") != FORMAT:
        raise VaekitError(f"{path}: not a vaekit checkpoint (format {meta.get('format')!r})")
    try:
        progress = Progress(**json.loads(meta["progress"]))
        param_groups = json.loads(meta["param_groups"])
        scheduler = json.loads(meta["scheduler"])
    except (KeyError, TypeError, ValueError) as e:
        raise VaekitError(f"{path}: unreadable checkpoint metadata ({e})") from None
    return Checkpoint(path, tensors, progress, param_groups, scheduler)
