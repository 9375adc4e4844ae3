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
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .config import ModelConfig, TrainConfig
from .data import choose_likelihood, prepare_data, value_range
from .datasets import binarize
from .errors import VaekitError
from .evaluate import evaluate
from .model import build_model
from . import runs

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
    train : Tensor, shape (N, *data_shape), or a lazy array read a batch at a time (a memmapped
        .npy); grey levels when ``config.binarize == 'dynamic'``
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
    in_memory = isinstance(train, Tensor)
    if in_memory:
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
        perm = torch.randperm(n, generator=gen)
        if in_memory:
            perm = perm.to(device)
        sums = None
        for b in range(n_batches):
            x = train[perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            if not in_memory:  # a lazy array: this batch's rows, read now
                x = x.to(device, non_blocking=True)
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
    if model_config.likelihood == "auto" and model_config.model != "pca":
        name, reason = choose_likelihood(splits.info["kind"], *value_range(splits.train))
        model_config = dataclasses.replace(model_config, likelihood=name)
        splits.info["likelihood_chosen"] = f"{name} (chosen for {reason})"
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
    summary = {"split": splits.info["test_split"], **evaluate(model, splits.test)}
    if out is not None:
        runs.write_json(out / runs.SUMMARY, summary)
        from .plots import save_run_figures

        save_run_figures(model, splits.test, out, seed=train_config.seed)
    return model, summary
