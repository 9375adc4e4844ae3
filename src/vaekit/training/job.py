"""The job behind ``vaekit train``: load the data, build the model, fit it, and write a run
directory (``train``); continue one that stopped (``resume``)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from .. import runs
from ..config import ModelConfig, TrainConfig, from_dict, size_model, size_training, to_dict
from ..data.prepare import (Splits, check_model_data, choose_likelihood, column_moments, log_jacobian, prepare_data,
                            value_range)
from ..errors import RunFinished, VaekitError
from ..evaluation.metrics import evaluate, in_data_units
from ..models import build_model
from ..models.registry import NEEDS_LABELS
from . import checkpoint as ckpt
from .device import resolve_device
from .distributed import world_from_env
from .loop import BatchHook, Callback, check_training, fit

log = logging.getLogger("vaekit")


def train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    run_dir: str | os.PathLike | None = None,
    *,
    callback: Callback | None = None,
    batch_hook: BatchHook | None = None,
    progress: bool | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load the data, build the model, fit it, and write everything to ``run_dir``.

    Every input is checked before the run directory is created, so bad input leaves nothing
    behind. The weights, ``metrics.csv`` and a checkpoint are written at the end of every
    epoch; :func:`resume` continues a run that stopped.

    Returns
    -------
    (model, summary): the trained model and its held-out figures (``summary.json``).

    Examples
    --------
    >>> model, summary = vaekit.train(ModelConfig(latent_dim=8), TrainConfig(data="digits", epochs=5), "runs/d")  # doctest: +SKIP
    """
    main = world_from_env().is_main
    splits = prepare_data(train_config)
    model_config = dataclasses.replace(model_config, data_shape=tuple(splits.info["shape"]))
    if model_config.model in NEEDS_LABELS:  # conditioned on the data's labels: count the classes
        model_config = dataclasses.replace(model_config, n_classes=_n_classes(splits, train_config))
    if model_config.likelihood == "auto" and model_config.model != "pca":
        name, reason = choose_likelihood(splits.info["kind"], *value_range(splits.train.x))
        model_config = dataclasses.replace(model_config, likelihood=name)
        splits.info["likelihood_chosen"] = f"{name} (chosen for {reason})"
    model_config, model_why = size_model(model_config)
    train_config, train_why = size_training(train_config, len(splits.train), splits.val is not None)
    device = resolve_device(train_config.device)
    torch.manual_seed(train_config.seed)  # weight initialization
    model = build_model(model_config)
    check_model_data(model, splits.train.x, f"dataset {train_config.data!r}")
    if not model.trains_by_gradient and not splits.train.in_memory:
        raise VaekitError(f"{train_config.data}: --model {model_config.model} needs the data in memory; use --no-memmap")
    if model.trains_by_gradient:
        model.init_output_bias(column_moments(splits.train.x)[0])  # streamed for lazy arrays
        check_training(model, train_config, splits.train)  # bad options refused before anything is written

    created = run_dir is not None and not os.path.exists(run_dir)
    out = runs.prepare_run_dir(run_dir) if run_dir is not None and main else (Path(run_dir) if run_dir else None)
    if main:
        _announce(out, splits, model_config, train_config, model_why + train_why)
    try:
        if out is not None and main:
            runs.write_config(out, model_config, train_config, splits.info)
        on_epoch = _epoch_writer(out if main else None, train_config, splits, callback)
        if not model.trains_by_gradient:  # PCA: closed form, no epochs, no optimizer
            t0 = time.perf_counter()
            model.to(device).fit_closed_form(splits.train.x.to(device))
            row: dict[str, Any] = {"epoch": 1, "step": 0}
            if splits.val is not None:
                v = evaluate(model, splits.val, seed=train_config.seed)
                row.update({f"val_{k}": v[k] for k in v if k not in ("n_examples", "bits_per_dim")})
            on_epoch({**row, "seconds": time.perf_counter() - t0}, model)
        else:
            fit(model, splits.train, splits.val, train_config, callback=on_epoch, batch_hook=batch_hook,
                progress=progress, checkpoint_dir=out)
    except BaseException:
        # a run with neither weights nor a checkpoint to resume is half-written: leave nothing behind
        if created and main and out is not None and not (out / runs.WEIGHTS).exists() and not (out / ckpt.LAST).exists():
            shutil.rmtree(out, ignore_errors=True)
        elif main and out is not None and out.is_dir():
            runs.discard_temporaries(out)
        raise
    return model, _finish(model, splits, out if main else None, train_config)


def _announce(out: Path | None, splits: Splits, model_config: ModelConfig, train_config: TrainConfig,
              why: list[str]) -> None:
    """Before training: where the run goes, what the data are, and what was chosen for them
    (logger ``vaekit``; the command line shows it on stderr)."""
    info = splits.info
    if out is not None:
        log.info("run directory: %s", out)
    n_val = 0 if splits.val is None else len(splits.val)
    log.info("data: %s, %d training and %d validation examples of shape %s (%s)", train_config.data,
             len(splits.train), n_val, "x".join(map(str, info["shape"])), info["kind"])
    transform = info.get("transform", {}).get("kind", "none")
    if transform != "none":
        log.info("transform: %s per column, undone on output", transform)
    if "likelihood_chosen" in info:
        log.info("likelihood: %s; set --likelihood to change", info["likelihood_chosen"])
    if why:
        log.info("chosen for these data: %s; each has its flag", "; ".join(why))
    sizes = "-".join(map(str, ["x".join(map(str, info["shape"])), *(model_config.hidden or ()), model_config.latent_dim]))
    log.info("model: %s %s %s; training: batch %s, up to %s epochs%s", model_config.model, model_config.arch, sizes,
             train_config.batch_size, train_config.epochs,
             f", early stopping after {train_config.patience} epochs" if train_config.patience else "")


def _n_classes(splits: Splits, cfg: TrainConfig) -> int:
    """How many classes the training labels index (the class names', where the data name them)."""
    if splits.train.y is None:
        raise VaekitError(f"{cfg.data}: --model cvae needs labelled data, and these have no labels; use a built-in "
                          "dataset, a folder of images with one subfolder per class, or a table with --label-column")
    classes = splits.info.get("classes")
    return len(classes) if classes else int(splits.train.y.max()) + 1


#: What a resumed run may be given besides its own settings: how far it goes (``epochs``),
#: and this call's wall-clock budget (``max_seconds``); neither changes a step it takes.
RESUME_OPTIONS = ("epochs", "max_seconds")


def resume(
    run_dir: str | os.PathLike,
    *,
    epochs: int | None = None,
    max_seconds: float | None = None,
    settings: dict[str, Any] | None = None,
    callback: Callback | None = None,
    batch_hook: BatchHook | None = None,
    progress: bool | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Continue the run in ``run_dir`` from its last checkpoint, to ``epochs`` (default: the
    run's own), with ``max_seconds`` as this call's budget (default: the run's own). On the CPU
    the result is bit for bit the run done in one go.

    A resumed run keeps its own settings: ``settings`` (config fields, e.g. the options of a
    command line) must equal the run's, else they are refused in one line naming the first that
    differs and the run's value. A run with nothing left to do (every epoch done, or stopped by
    ``patience``) raises :class:`vaekit.errors.RunFinished`, whose message gives the command that
    extends it. Either way nothing in the run is touched.
    """
    main = world_from_env().is_main
    out = Path(run_dir)
    info, model_config, train_config = _read_run(out)
    _check_settings(out, settings or {}, model_config, train_config)
    saved = ckpt.load_checkpoint(out / ckpt.LAST)  # refuse a bad checkpoint before any work
    model = build_model(model_config)
    saved.check_model(model)
    trains_on = _trains_on(out, saved.progress, train_config, epochs)
    given = {"epochs": epochs, "max_seconds": max_seconds}
    train_config = dataclasses.replace(train_config, **{k: v for k, v in given.items() if v is not None})
    splits = prepare_data(train_config)
    if not trains_on:  # every epoch done, but stopped before its figures were written: write them
        model.load_state_dict(saved.model_state())
        model.to(resolve_device(train_config.device))
        return model, _finish(model, splits, out if main else None, train_config)
    if main:
        runs.write_config(out, model_config, train_config, {**info["data"]})
        for stale in out.glob(".*.tmp-*"):  # temporary files of a process that was killed
            stale.unlink(missing_ok=True)
    on_epoch = _epoch_writer(out if main else None, train_config, splits, callback, keep_until=saved.progress.epoch)
    try:
        fit(model, splits.train, splits.val, train_config, callback=on_epoch, batch_hook=batch_hook,
            progress=progress, checkpoint_dir=out, resume=True)
    except BaseException:
        if main:
            runs.discard_temporaries(out)
        raise
    return model, _finish(model, splits, out if main else None, train_config)


def _read_run(out: Path) -> tuple[dict[str, Any], ModelConfig, TrainConfig]:
    try:
        info = json.loads((out / runs.CONFIG).read_text())
        train_config = from_dict(TrainConfig, info["train"])
        if "max_steps" not in info["train"] and train_config.patience is None:
            # written before defaults were chosen from the data, when no patience meant none
            train_config = dataclasses.replace(train_config, patience=0)
        return info, from_dict(ModelConfig, info["model"]), train_config
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise VaekitError(f"{out}: not a run directory to resume ({type(e).__name__}: {e})") from None


def _check_settings(out: Path, settings: dict[str, Any], model_config: ModelConfig, train_config: TrainConfig) -> None:
    """Refuse a setting that differs from the run's own, naming it and the run's value."""
    own = {**to_dict(train_config), **to_dict(model_config)}
    allowed = ", ".join(_flag(k) for k in RESUME_OPTIONS)
    for name, value in settings.items():
        if name not in own:
            raise VaekitError(f"{_as_option(name, value)}: not a setting a resumed run can take (it keeps its own; "
                              f"only {allowed} may be given)")
        if _plain(value) != _plain(own[name]):
            raise VaekitError(f"{_as_option(name, value)}: {out} was trained {_with(name, own[name])}, and a resumed "
                              f"run keeps its own settings (only {allowed} may be given); start a new run to change it")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _plain(value: Any) -> Any:
    """Lists and tuples alike (JSON keeps tuples as lists)."""
    return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value


def _as_option(name: str, value: Any) -> str:
    """``name`` set to ``value``, as a command line writes it."""
    if isinstance(value, bool):
        return _flag(name) if value else "--no-" + _flag(name)[2:]
    shown = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
    return f"{_flag(name)} {shown}"


def _with(name: str, value: Any) -> str:
    """How a run was trained as to ``name``: "with --lr 0.001", "without --patience"."""
    if value is None or value is False:
        return f"without {_flag(name)}"
    return f"with {_flag(name) if value is True else _as_option(name, value)}"


def _trains_on(out: Path, progress: ckpt.Progress, cfg: TrainConfig, epochs: int | None) -> bool:
    """Whether a resumed run has epochs left to train; :class:`RunFinished` when it has nothing
    left to do at all (False: the epochs are done but the final figures are not written)."""
    done = progress.epoch
    if epochs is not None and epochs < done:
        raise VaekitError(f"--epochs {epochs}: {out} has trained {done} epochs already; give more to extend it")
    stopped = epochs is None and bool(cfg.patience) and progress.batch == 0 and progress.bad_epochs >= cfg.patience
    if done < (epochs or cfg.epochs) and not stopped:
        return True
    if not (out / runs.SUMMARY).exists():
        return False
    why = (f"stopped early at epoch {done} of {cfg.epochs}: no better validation figure in {cfg.patience} epochs"
           if stopped and done < cfg.epochs else f"all {done} epochs done")
    raise RunFinished(f"{out}: finished ({why}); to train it further: "
                      f"vaekit train --resume {shlex.quote(str(out))} --epochs {done + 10}")


def _epoch_writer(out: Path | None, cfg: TrainConfig, splits, callback, keep_until: int | None = None):
    """The per-epoch callback that writes metrics.csv, the weights and TensorBoard events."""
    writer = runs.MetricsWriter(out / runs.METRICS, keep_until_epoch=keep_until) if out is not None else None
    board = None
    if out is not None and cfg.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise VaekitError("--tensorboard needs the tensorboard package: pip install 'vaekit[tensorboard]'") from None
        board = SummaryWriter(str(out / "tensorboard"))

    jacobian = log_jacobian(splits.info)

    def on_epoch(row: dict[str, Any], m: torch.nn.Module) -> None:
        row.update(in_data_units(row, jacobian, ("train_", "val_")))  # densities of the data as given
        if writer is not None:  # the weights' time counts with the checkpoints'
            t0 = time.perf_counter()
            weights = runs.stage_weights(m, out / runs.WEIGHTS)
            row["checkpoint_seconds"] = row.get("checkpoint_seconds", 0.0) + time.perf_counter() - t0
            with runs.committed_after([weights]):  # in place once the epoch's row is written
                writer.write(row)
        if board is not None:
            _log_tensorboard(board, row, m, splits)
        if callback is not None:
            callback(row, m)

    return on_epoch


def _log_tensorboard(board, row: dict[str, Any], model, splits) -> None:
    from ..plots import image_grid, is_image_shape, paired_rows, sample_for_figure

    step = int(row["step"])
    for k, v in row.items():
        if isinstance(v, (int, float)) and k not in ("epoch", "step"):
            board.add_scalar(k.replace("_", "/", 1) if k.startswith(("train_", "val_")) else k, v, step)
    if is_image_shape(tuple(splits.test.shape[1:])):
        batch = next(splits.test.batches(32, model.device))
        x = batch["x"]
        for tag, (images, cols) in (("reconstructions", paired_rows(x, model.reconstruct(batch))),
                                    ("samples", (sample_for_figure(model, 64), None))):
            grid = torch.as_tensor(image_grid(images, cols))
            board.add_image(tag, grid if grid.ndim == 3 else grid.unsqueeze(0),
                            step, dataformats="HWC" if grid.ndim == 3 else "CHW")
    board.flush()


def _finish(model, splits, out: Path | None, cfg: TrainConfig) -> dict[str, Any]:
    """The held-out figures, written with the figures as ``summary.json``."""
    summary = {"split": splits.info["test_split"], **evaluate(model, splits.test, log_jacobian=log_jacobian(splits.info))}
    if out is not None:
        runs.write_json(out / runs.SUMMARY, summary)
        from ..plots import save_run_figures

        save_run_figures(model, splits.test, out, seed=cfg.seed)
        from ..report import REPORT, write_report

        # the figures just written and the curves: a fraction of a second; `vaekit report` draws all
        write_report([out], out / REPORT, device=model.device, figures=False)
    return summary
