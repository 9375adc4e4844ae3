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

from ..config import ModelConfig, TrainConfig
from ..data.prepare import ByteImages, choose_likelihood, prepare_data, value_range
from ..errors import VaekitError
from ..evaluation.metrics import evaluate
from ..models.vae import build_model
from .. import runs
from .checkpoint import LAST

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


def _make_optimizer(params, lr: float) -> torch.optim.Optimizer:
    # The fused kernel updates all parameters at once; fall back where a build lacks it.
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


def _nonfinite_term(terms) -> str:
    # the parts before the first field: the total (the ELBO) is non-finite whenever a part is
    for name, t in zip(terms._fields[1:] + terms._fields[:1], terms[1:] + terms[:1]):
        if not bool(torch.isfinite(t).all()):
            return name
    return "loss"


def _gradients_finite(params: list[Tensor], clip: float | None, found_inf: Tensor, unit: Tensor) -> bool:
    """Whether every gradient is finite; with ``clip``, first scale them to a norm of at most ``clip``.

    Without clipping one multi-tensor check reads the gradients (as ``GradScaler`` does, at
    scale 1): about 2.5x cheaper than their norm here (``benchmarks/speed_choices.py``).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if clip is not None:
        norm = torch.nn.utils.get_total_norm(grads)
        torch.nn.utils.clip_grads_with_norm_(params, clip, norm)
        return bool(torch.isfinite(norm))
    found_inf.zero_()
    torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, unit)
    return not bool(found_inf)


def fit(
    model: torch.nn.Module,
    train: Any,
    val: Any | None = None,
    config: TrainConfig | None = None,
    *,
    callback: Callable[[dict[str, Any], torch.nn.Module], None] | None = None,
    batch_hook: Callable[[int, Tensor], Tensor] | None = None,
    progress: bool | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Train ``model`` on ``train`` with Adam: for a VAE, maximize the ELBO (or the beta /
    free-bits objective the config asks for; the figures logged are always the true ELBO).

    A generic loop: it needs ``model.training_loss(x, beta=, free_bits=, noise=)`` (per-example
    loss and the terms to log), ``model.draw_noise(n, generator)`` and, for validation,
    ``model.objective``. Every random draw (the order of examples, the reparameterization
    noise, dynamic binarization) comes from one generator seeded by ``config.seed`` and is made
    for the whole global batch, so a run resumed from a checkpoint, or sharded over processes by
    ``torchrun``, takes exactly the steps of one uninterrupted process.

    Parameters
    ----------
    model : VAE or Autoencoder
    train : Tensor ``(N, *data_shape)``, 8-bit images as :class:`vaekit.data.ByteImages` (a quarter
        of the memory), or a lazy array read a batch at a time
    val : held-out data; its figures are computed every epoch (early stopping, best checkpoint)
    config : TrainConfig
    callback : ``callback(row, model)`` after every epoch, with the metrics row (rank 0 only)
    batch_hook : ``batch_hook(step, x) -> x`` before every step (inspection, fault injection)
    progress : a progress bar; default: when stderr is a terminal
    checkpoint_dir : where ``checkpoint-last`` (every epoch, and every ``checkpoint_every``
        steps) and ``checkpoint-best`` (best validation figure) are written
    resume : continue from ``checkpoint_dir``'s last checkpoint

    Returns
    -------
    list of dict, the metrics rows of the epochs run by this call.
    """
    from torch.nn.parallel import DistributedDataParallel

    from . import checkpoint as ckpt
    from .distributed import all_reduce_sum, init, world_from_env
    from .schedules import kl_beta, lr_factor

    cfg = config or TrainConfig()
    if cfg.on_nan not in ("stop", "skip"):
        raise VaekitError(f"--on-nan {cfg.on_nan}: choose stop or skip")
    world = world_from_env()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world.enabled:
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    init(world, device)
    # Adam's second-moment state decays towards denormal floats, which the CPU handles in slow
    # microcode; on this project's machine that cost about 10 % of a run's time (issue 6).
    torch.set_flush_denormal(True)
    model.to(device).train()
    net = DistributedDataParallel(model) if world.enabled else model
    optimizer = _make_optimizer(model.parameters(), cfg.lr)
    n = len(train)
    B = cfg.batch_size
    n_batches = math.ceil(n / B)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, n_batches))
    gen = torch.Generator().manual_seed(cfg.seed)
    epoch_start_state = gen.get_state()
    state = ckpt.Progress()
    partial: Tensor | None = None
    out = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if resume:
        if out is None:
            raise VaekitError("resume needs the run's checkpoint folder")
        saved = ckpt.load_checkpoint(out / ckpt.LAST)
        saved.restore(model, optimizer, scheduler, {"gen": gen})
        state = saved.progress
        epoch_start_state = saved.tensors.get("rng/gen_epoch_start", gen.get_state())
        # the partial epoch's sums are global (summed over processes when saved): one process holds them
        partial = saved.extra("epoch_sums") if world.is_main else None
    in_memory = isinstance(train, (Tensor, ByteImages))
    if in_memory:  # on the device once; a batch is then one gather there
        train = train.to(device)
    dynamic = cfg.binarize == "dynamic"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    params = [p for p in model.parameters() if p.requires_grad]
    found_inf, unit = torch.zeros(1, device=device), torch.ones(1, device=device)  # the gradient check's
    # a constant rate needs no scheduler step
    scheduled = cfg.lr_schedule != "constant" or cfg.lr_warmup_steps > 0
    show = (sys.stderr.isatty() if progress is None else progress) and world.is_main
    rows: list[dict[str, Any]] = []

    def save(name: str, sums: Tensor | None) -> None:
        if out is None or not world.is_main:
            return
        extra = {"epoch_sums": sums} if sums is not None else {}
        ckpt.save_checkpoint(out / name, model, optimizer, scheduler, state,
                             {"gen": gen, "gen_epoch_start": _generator(epoch_start_state)}, extra)

    bar = tqdm(range(state.epoch + 1, cfg.epochs + 1), desc="train", unit="epoch", disable=not show, file=sys.stderr)
    names: tuple[str, ...] = ()
    for epoch in bar:
        t0 = time.perf_counter()
        if state.batch == 0:
            epoch_start_state = gen.get_state()
        else:  # resuming inside an epoch: the same order, then the generator where it stood
            now = gen.get_state()
            gen.set_state(epoch_start_state)
        perm = torch.randperm(n, generator=gen)
        if state.batch:
            gen.set_state(now)
        sums = None if partial is None else partial.to(device)
        partial = None
        for b in range(state.batch, n_batches):
            idx = perm[b * B : (b + 1) * B]
            G = len(idx)  # the global batch: this process takes every world.size-th example
            mine = slice(world.rank, None, world.size)
            noise = model.draw_noise(G, gen)
            uniform = torch.rand((G, *train.shape[1:]), generator=gen) if dynamic else None
            x = train[idx[mine].to(device) if in_memory else idx[mine]].to(device, non_blocking=True)
            if dynamic:  # a fresh Bernoulli draw of every value, every epoch
                x = (uniform[mine].to(device) < x).to(x.dtype)
            if batch_hook is not None:
                x = batch_hook(state.step, x)
            beta = kl_beta(cfg, state.step)
            with autocast:
                loss_vec, terms = net(x, beta=beta, free_bits=cfg.free_bits,
                                      noise=None if noise is None else noise[:, mine].to(device))
            # sum / G * world.size: DDP's gradient average is then the global batch's mean
            loss = loss_vec.sum(dtype=torch.float32) * (world.size / G)
            bad = None if bool(torch.isfinite(loss)) else _nonfinite_term(terms)
            if bad is None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                bad = None if _gradients_finite(params, cfg.grad_clip, found_inf, unit) else "gradient"
            if world.enabled:  # every process takes the same decision
                flag = all_reduce_sum(torch.tensor([0.0 if bad is None else 1.0], device=device), world)
                bad = bad or ("loss on another process" if float(flag) > 0 else None)
            if bad is not None:
                where = f"epoch {epoch}, step {state.step + 1}"
                if cfg.on_nan == "stop":
                    kept = f"; the last good checkpoint is {out / ckpt.LAST}" if out is not None and (out / ckpt.LAST).exists() else ""
                    raise VaekitError(f"non-finite {bad} at {where}: training stopped{kept}; try a lower --lr, "
                                      "--grad-clip, or --on-nan skip")
                state.nan_skipped += 1
                optimizer.zero_grad(set_to_none=True)
                continue
            optimizer.step()
            if scheduled:
                scheduler.step()
            state.step += 1
            with torch.no_grad():  # summed on the device: no synchronization per step
                batch_sums = torch.stack(terms).sum(1, dtype=torch.float64)
                sums = batch_sums if sums is None else sums.add_(batch_sums)
            names = terms._fields
            state.batch = b + 1
            if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.batch < n_batches:
                save(ckpt.LAST, all_reduce_sum(sums.clone().to(device), world))  # every process joins the sum
        state.batch = 0
        state.epoch = epoch
        if sums is None:
            raise VaekitError(f"epoch {epoch}: every batch was skipped as non-finite; training cannot go on")
        sums = all_reduce_sum(sums.to(device), world)
        means = dict(zip(names, (sums / n).tolist()))
        row: dict[str, Any] = {"epoch": epoch, "step": state.step, **{f"train_{k}": v for k, v in means.items()}}
        improved = False
        if val is not None:
            v = evaluate(model, val, seed=cfg.seed)
            row.update({f"val_{k}": v[k] for k in names})
            score = v[names[0]]
            if state.best_val is None or score > state.best_val:
                state.best_val, state.best_epoch, state.bad_epochs, improved = score, epoch, 0, True
            elif state.step >= cfg.kl_warmup_steps:  # never counts against a run still warming up
                state.bad_epochs += 1
        row.update(beta=kl_beta(cfg, state.step), lr=optimizer.param_groups[0]["lr"], nan_skipped=state.nan_skipped,
                   seconds=time.perf_counter() - t0)
        rows.append(row)
        if world.is_main and callback is not None:
            callback(row, model)
        save(ckpt.LAST, None)
        if improved and out is not None and world.is_main:  # the best, kept beside the last
            shutil.copyfile(out / ckpt.LAST, out / f".{ckpt.BEST}.tmp")
            os.replace(out / f".{ckpt.BEST}.tmp", out / ckpt.BEST)
        bar.set_postfix({names[0]: f"{means[names[0]]:.2f}", "val": f"{row.get('val_' + names[0], float('nan')):.2f}"})
        if cfg.patience is not None and state.bad_epochs >= cfg.patience:
            row["stopped_early"] = True
            break
    return rows


def _generator(state: Tensor) -> torch.Generator:
    g = torch.Generator()
    g.set_state(state)
    return g


def train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    run_dir: str | os.PathLike | None = None,
    *,
    callback: Callable[[dict[str, Any], torch.nn.Module], None] | None = None,
    batch_hook: Callable[[int, Tensor], Tensor] | None = None,
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
    from .distributed import world_from_env

    main = world_from_env().is_main
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
    if hasattr(model, "fit_closed_form") and not isinstance(splits.train, Tensor):
        raise VaekitError(f"{train_config.data}: --model pca needs the data in memory; use --no-memmap")

    created = run_dir is not None and not os.path.exists(run_dir)
    out = runs.prepare_run_dir(run_dir) if run_dir is not None and main else (Path(run_dir) if run_dir else None)
    try:
        if out is not None and main:
            runs.write_config(out, model_config, train_config, splits.info)
        on_epoch = _epoch_writer(out if main else None, train_config, splits, callback)
        if hasattr(model, "fit_closed_form"):  # PCA: closed form, no epochs, no optimizer
            t0 = time.perf_counter()
            model.to(device).fit_closed_form(splits.train.to(device))
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
        if created and main and out is not None and not (out / runs.WEIGHTS).exists() and not (out / LAST).exists():
            shutil.rmtree(out, ignore_errors=True)
        raise
    return model, _finish(model, splits, out if main else None, train_config)


def resume(
    run_dir: str | os.PathLike,
    *,
    epochs: int | None = None,
    callback: Callable[[dict[str, Any], torch.nn.Module], None] | None = None,
    batch_hook: Callable[[int, Tensor], Tensor] | None = None,
    progress: bool | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Continue the run in ``run_dir`` from its last checkpoint, to ``epochs`` (default: the
    run's own). On the CPU the result is bit for bit the run done in one go."""
    from . import checkpoint as ckpt
    from ..config import from_dict
    from .distributed import world_from_env
    import json

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
    from ..plots import image_grid, is_image_shape

    step = int(row["step"])
    for k, v in row.items():
        if isinstance(v, (int, float)) and k not in ("epoch", "step"):
            board.add_scalar(k.replace("_", "/", 1) if k.startswith(("train_", "val_")) else k, v, step)
    if is_image_shape(tuple(splits.test.shape[1:])):
        x = splits.test[:32].to(model.device)
        for tag, images in (("reconstructions", torch.cat([x, model.reconstruct(x)])), ("samples", model.sample(64))):
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
