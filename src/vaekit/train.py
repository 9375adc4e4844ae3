"""Training: a generic loop (``fit``) and the end-to-end job that writes a run directory (``train``).

The data live in memory as tensors and are batched by index: no per-example Python.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .config import BINARIZE_MODES, ModelConfig, TrainConfig
from .datasets import binarize, load_dataset
from .errors import VaekitError
from .evaluate import evaluate
from .model import build_model
from . import runs

# Fixed seed of the one-off binarization of held-out data: the same test set for every run.
HELDOUT_BINARIZE_SEED = 0


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; a named device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VaekitError("--device cuda: no CUDA device is available (try --device auto)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise VaekitError("--device mps: no MPS device is available (try --device auto)")
    if name not in ("cpu", "cuda", "mps"):
        raise VaekitError(f"--device {name}: unknown device; choose auto, cpu, cuda or mps")
    return torch.device(name)


@dataclass
class Splits:
    """Training, validation and test tensors as the model sees them (binarized if asked)."""

    train: Tensor
    val: Tensor | None
    test: Tensor
    info: dict[str, Any]


def prepare_data(cfg: TrainConfig) -> Splits:
    """Load ``cfg.data``, hold out ``cfg.val_fraction`` of the training set (split by
    ``cfg.seed``), and binarize as ``cfg.binarize`` says.

    ``static``: every split binarized once. ``dynamic``: the training set stays grey and is
    binarized afresh in every batch by :func:`fit`; validation and test sets are binarized once
    with a fixed seed so that figures are comparable across runs.
    """
    if cfg.binarize not in BINARIZE_MODES:
        raise VaekitError(f"--binarize {cfg.binarize}: unknown mode; choose one of: {', '.join(BINARIZE_MODES)}")
    if not 0 <= cfg.val_fraction < 1:
        raise VaekitError(f"--val-fraction {cfg.val_fraction}: must lie in [0, 1)")
    ds = load_dataset(cfg.data, cfg.data_dir)
    gen = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(len(ds.train), generator=gen)
    n_val = int(round(cfg.val_fraction * len(ds.train)))
    if n_val >= len(ds.train):
        raise VaekitError(f"--val-fraction {cfg.val_fraction}: leaves no training examples of {len(ds.train)}")
    train, val = ds.train[perm[n_val:]], (ds.train[perm[:n_val]] if n_val else None)
    test = ds.test
    if cfg.binarize != "none":
        fixed = torch.Generator().manual_seed(HELDOUT_BINARIZE_SEED)
        test = binarize(test, fixed)
        val = binarize(val, fixed) if val is not None else None
        if cfg.binarize == "static":
            train = binarize(train, torch.Generator().manual_seed(cfg.seed))
    info = {
        "name": ds.name,
        "shape": list(ds.shape),
        "n_train": len(train),
        "n_val": 0 if val is None else len(val),
        "n_test": len(test),
        "val_indices_seed": cfg.seed,
    }
    return Splits(train, val, test, info)


def _make_optimizer(params, lr: float, device: torch.device) -> torch.optim.Optimizer:
    # The fused kernel updates all parameters at once; fall back where a build lacks it.
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


def fit(
    model: torch.nn.Module,
    train: Tensor,
    val: Tensor | None = None,
    config: TrainConfig | None = None,
    *,
    callback: Callable[[dict[str, Any], torch.nn.Module], None] | None = None,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Maximize the objective of ``model`` (for a VAE, the ELBO) on ``train`` with Adam.

    A generic loop: it needs ``model.objective(x)``, a NamedTuple of per-example terms whose
    first field is maximized (the ELBO for a VAE); every field is logged.

    Parameters
    ----------
    model : VAE, or any module with ``objective``
    train : Tensor, shape (N, *data_shape); grey levels when ``config.binarize == 'dynamic'``
    val : Tensor, optional; its ELBO is computed every epoch
    config : TrainConfig; epochs, batch_size, lr, seed, binarize and device are used
    callback : called as ``callback(row, model)`` after every epoch with the metrics row
    progress : show a progress bar; default: when stderr is a terminal

    Returns
    -------
    list of dict, one metrics row per epoch (the columns of ``metrics.csv``).
    """
    cfg = config or TrainConfig()
    device = resolve_device(cfg.device)
    # Adam's second-moment state decays towards denormal floats, which the CPU handles in slow
    # microcode; on this project's machine that cost about 10 % of a run's time (issue 6).
    torch.set_flush_denormal(True)
    model.to(device).train()
    optimizer = _make_optimizer(model.parameters(), cfg.lr, device)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # the reparameterization noise
    train = train.to(device)
    n = len(train)
    n_batches = math.ceil(n / cfg.batch_size)
    dynamic = cfg.binarize == "dynamic"
    show = sys.stderr.isatty() if progress is None else progress
    rows: list[dict[str, Any]] = []
    step = 0
    bar = tqdm(range(1, cfg.epochs + 1), desc="train", unit="epoch", disable=not show, file=sys.stderr)
    for epoch in bar:
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen).to(device)
        sums = None
        for b in range(n_batches):
            x = train[perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            if dynamic:  # a fresh Bernoulli draw of every pixel, every epoch
                x = binarize(x, gen if device.type == "cpu" else None)
            terms = model.objective(x)  # per-example terms; the first is maximized
            loss = -terms[0].mean()
            if not torch.isfinite(loss):
                raise VaekitError(f"training diverged at epoch {epoch}, step {step + 1}: the loss is {float(loss.detach())}; try a lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            with torch.no_grad():  # summed on the device: no synchronization per step
                batch_sums = torch.stack([t.detach().sum(dtype=torch.float64) for t in terms])
                sums = batch_sums if sums is None else sums + batch_sums
        means = dict(zip(terms._fields, (sums / n).tolist()))
        row: dict[str, Any] = {"epoch": epoch, "step": step, **{f"train_{k}": v for k, v in means.items()}}
        if val is not None:
            v = evaluate(model, val, seed=cfg.seed)
            row.update({f"val_{k}": v[k] for k in terms._fields})
        row["lr"] = optimizer.param_groups[0]["lr"]
        row["seconds"] = time.perf_counter() - t0
        first = terms._fields[0]
        rows.append(row)
        bar.set_postfix({first: f"{means[first]:.2f}", "val": f"{row.get('val_' + first, float('nan')):.2f}"})
        if callback is not None:
            callback(row, model)
    return rows


def train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    run_dir: str | os.PathLike | None = None,
    *,
    callback: Callable[[dict[str, Any], torch.nn.Module], None] | None = None,
    progress: bool | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load the data, build the model, fit it, and write everything to ``run_dir``.

    Every input is checked before the run directory is created, so bad input leaves nothing
    behind. The weights and ``metrics.csv`` are updated at the end of every epoch.

    Returns
    -------
    (model, summary): the trained model and its test figures (``summary.json``).

    Examples
    --------
    >>> model, summary = vaekit.train(ModelConfig(latent_dim=8), TrainConfig(data="digits", epochs=5), "runs/d")  # doctest: +SKIP
    """
    splits = prepare_data(train_config)
    model_config = dataclasses.replace(model_config, data_shape=tuple(splits.info["shape"]))
    device = resolve_device(train_config.device)
    torch.manual_seed(train_config.seed)  # weight initialization
    model = build_model(model_config)
    model.check_data(splits.train, f"dataset {train_config.data!r}")
    model.init_from_data(splits.train)

    created = run_dir is not None and not os.path.exists(run_dir)
    out = runs.prepare_run_dir(run_dir) if run_dir is not None else None
    writer = runs.MetricsWriter(out / runs.METRICS) if out is not None else None

    def on_epoch(row: dict[str, Any], m: torch.nn.Module) -> None:
        if writer is not None:
            writer.write(row)
            runs.save_weights(m, out / runs.WEIGHTS)
        if callback is not None:
            callback(row, m)

    try:
        if out is not None:
            runs.write_config(out, model_config, train_config, splits.info)
        if hasattr(model, "fit_closed_form"):  # PCA: closed form, no epochs, no optimizer
            t0 = time.perf_counter()
            model.to(device).fit_closed_form(splits.train.to(device))
            row: dict[str, Any] = {"epoch": 1, "step": 0}
            if splits.val is not None:
                v = evaluate(model, splits.val, seed=train_config.seed)
                row.update({f"val_{k}": v[k] for k in v if k not in ("n_examples", "bits_per_dim")})
            on_epoch({**row, "seconds": time.perf_counter() - t0}, model)
        else:
            fit(model, splits.train, splits.val, train_config, callback=on_epoch, progress=progress)
    except BaseException:
        # a run that never finished an epoch is half-written: leave nothing behind
        if created and out is not None and not (out / runs.WEIGHTS).exists():
            shutil.rmtree(out, ignore_errors=True)
        raise
    summary = {"split": "test", **evaluate(model, splits.test)}
    if out is not None:
        runs.write_json(out / runs.SUMMARY, summary)
        from .plots import save_run_figures

        save_run_figures(model, splits.test, out, seed=train_config.seed)
    return model, summary


def load_split(
    train_config: TrainConfig,
    split: str = "test",
    *,
    data: str | None = None,
    data_dir: str | os.PathLike | None = None,
    data_shape: tuple[int, ...] | None = None,
) -> Tensor:
    """Data for a trained model, transformed exactly as its held-out data were.

    See :func:`load_labelled_split` for the parameters; this returns the examples alone.
    """
    return load_labelled_split(train_config, split, data=data, data_dir=data_dir, data_shape=data_shape)[0]


def load_labelled_split(
    train_config: TrainConfig,
    split: str = "test",
    *,
    data: str | None = None,
    data_dir: str | os.PathLike | None = None,
    data_shape: tuple[int, ...] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Examples and labels (``None`` when the data have none) for a trained model, the examples
    transformed exactly as its held-out data were.

    Parameters
    ----------
    train_config : the run's training config (its dataset and binarization)
    split : ``train``, ``test`` or ``all`` (train then test) of a built-in dataset, in its order
    data : a dataset name or a ``.npy`` file; default the run's dataset
    data_dir : folder of the dataset's files; default the run's
    data_shape : the model's per-example shape; a ``.npy`` of another shape is refused
    """
    from .datasets import DATASETS, load_array

    name = data or train_config.data
    if name not in DATASETS and (name.endswith((".npy", ".npz")) or os.path.sep in name or os.path.exists(name)):
        x, y = load_array(name, expected_shape=data_shape), None
    else:
        if data_dir is None and name == train_config.data:
            data_dir = train_config.data_dir
        ds = load_dataset(name, data_dir)
        if data_shape is not None and tuple(ds.shape) != tuple(data_shape):
            raise VaekitError(f"dataset {name!r}: examples have shape {tuple(ds.shape)} but the model was trained on {tuple(data_shape)}")
        parts = {"train": [(ds.train, ds.train_labels)], "test": [(ds.test, ds.test_labels)],
                 "all": [(ds.train, ds.train_labels), (ds.test, ds.test_labels)]}
        if split not in parts:
            raise VaekitError(f"--split {split}: choose train, test or all")
        x = torch.cat([p[0] for p in parts[split]])
        labels = [p[1] for p in parts[split]]
        y = None if any(t is None for t in labels) else torch.cat(labels)
    if train_config.binarize != "none":
        if float(x.min()) < 0 or float(x.max()) > 1:
            raise VaekitError(f"{name}: values outside [0, 1] cannot be binarized as the model's data were")
        x = binarize(x, torch.Generator().manual_seed(HELDOUT_BINARIZE_SEED))
    return x, y
