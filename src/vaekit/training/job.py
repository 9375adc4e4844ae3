"""The job behind ``vaekit train``: load the data, build the model, fit it, and write a run
directory (``train``); continue one that stopped (``resume``)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from .. import runs
from ..config import ModelConfig, TrainConfig, from_dict
from ..data.prepare import Splits, check_model_data, choose_likelihood, column_moments, prepare_data, value_range
from ..errors import VaekitError
from ..evaluation.metrics import evaluate
from ..models import build_model
from ..models.registry import NEEDS_LABELS
from . import checkpoint as ckpt
from .device import resolve_device
from .distributed import world_from_env
from .loop import BatchHook, Callback, fit


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
    device = resolve_device(train_config.device)
    torch.manual_seed(train_config.seed)  # weight initialization
    model = build_model(model_config)
    check_model_data(model, splits.train.x, f"dataset {train_config.data!r}")
    if not model.trains_by_gradient and not splits.train.in_memory:
        raise VaekitError(f"{train_config.data}: --model {model_config.model} needs the data in memory; use --no-memmap")
    if model.trains_by_gradient:
        model.init_output_bias(column_moments(splits.train.x)[0])  # streamed for lazy arrays

    created = run_dir is not None and not os.path.exists(run_dir)
    out = runs.prepare_run_dir(run_dir) if run_dir is not None and main else (Path(run_dir) if run_dir else None)
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
        raise
    return model, _finish(model, splits, out if main else None, train_config)


def _n_classes(splits: Splits, cfg: TrainConfig) -> int:
    """How many classes the training labels index (the class names', where the data name them)."""
    if splits.train.y is None:
        raise VaekitError(f"{cfg.data}: --model cvae needs labelled data, and these have no labels; use a built-in "
                          "dataset, a folder of images with one subfolder per class, or a table with --label-column")
    classes = splits.info.get("classes")
    return len(classes) if classes else int(splits.train.y.max()) + 1


def resume(
    run_dir: str | os.PathLike,
    *,
    epochs: int | None = None,
    callback: Callback | None = None,
    batch_hook: BatchHook | None = None,
    progress: bool | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Continue the run in ``run_dir`` from its last checkpoint, to ``epochs`` (default: the
    run's own). On the CPU the result is bit for bit the run done in one go."""
    main = world_from_env().is_main
    out = Path(run_dir)
    try:
        info = json.loads((out / runs.CONFIG).read_text())
        model_config = from_dict(ModelConfig, info["model"])
        train_config = from_dict(TrainConfig, info["train"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise VaekitError(f"{out}: not a run directory to resume ({type(e).__name__}: {e})") from None
    saved = ckpt.load_checkpoint(out / ckpt.LAST)  # refuse a bad checkpoint before any work
    if epochs is not None:
        train_config = dataclasses.replace(train_config, epochs=epochs)
    splits = prepare_data(train_config)
    model = build_model(model_config)
    saved.check_model(model)  # before anything in the run is touched
    if main:
        runs.write_config(out, model_config, train_config, {**info["data"]})
        for stale in out.glob(".*.tmp-*"):  # temporary files of a process that was killed
            stale.unlink(missing_ok=True)
    on_epoch = _epoch_writer(out if main else None, train_config, splits, callback, keep_until=saved.progress.epoch)
    fit(model, splits.train, splits.val, train_config, callback=on_epoch, batch_hook=batch_hook,
        progress=progress, checkpoint_dir=out, resume=True)
    return model, _finish(model, splits, out if main else None, train_config)


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

    def on_epoch(row: dict[str, Any], m: torch.nn.Module) -> None:
        if writer is not None:
            writer.write(row)
            runs.save_weights(m, out / runs.WEIGHTS)
        if board is not None:
            _log_tensorboard(board, row, m, splits)
        if callback is not None:
            callback(row, m)

    return on_epoch


def _log_tensorboard(board, row: dict[str, Any], model, splits) -> None:
    from ..plots import image_grid, is_image_shape, sample_for_figure

    step = int(row["step"])
    for k, v in row.items():
        if isinstance(v, (int, float)) and k not in ("epoch", "step"):
            board.add_scalar(k.replace("_", "/", 1) if k.startswith(("train_", "val_")) else k, v, step)
    if is_image_shape(tuple(splits.test.shape[1:])):
        batch = next(splits.test.batches(32, model.device))
        x = batch["x"]
        for tag, images in (("reconstructions", torch.cat([x, model.reconstruct(batch)])),
                            ("samples", sample_for_figure(model, 64))):
            grid = torch.as_tensor(image_grid(images))
            board.add_image(tag, grid if grid.ndim == 3 else grid.unsqueeze(0),
                            step, dataformats="HWC" if grid.ndim == 3 else "CHW")
    board.flush()


def _finish(model, splits, out: Path | None, cfg: TrainConfig) -> dict[str, Any]:
    """The held-out figures, written with the figures as ``summary.json``."""
    summary = {"split": splits.info["test_split"], **evaluate(model, splits.test)}
    if out is not None:
        runs.write_json(out / runs.SUMMARY, summary)
        from ..plots import save_run_figures

        save_run_figures(model, splits.test, out, seed=cfg.seed)
    return summary
