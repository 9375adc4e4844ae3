"""``fit``: the generic training loop, as small named pieces called from one short loop.

Read top to bottom: :func:`fit` sets up (:func:`_start`), then for every epoch draws the
order (:func:`_epoch_order`), runs the batches (:func:`_train_batch` takes one optimizer step or
skips a non-finite batch), validates (:func:`_validate`), logs and checkpoints
(:func:`_save`). The loop knows nothing model-specific: it calls the model only through the
:class:`vaekit.models.Model` protocol (``training_loss``, ``draw_noise``, ``elbo`` via
``evaluate``, ``headline``).

The data live in memory as tensors (or are read a batch at a time from a lazy array) and are
batched by index: no per-example Python, no DataLoader.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .. import runs
from ..batch import Batch
from ..config import OBJECTIVES, TrainConfig, size_training
from ..data.examples import Examples, as_examples
from ..errors import VaekitError
from ..evaluation.metrics import evaluate
from ..models.protocol import check_model
from . import checkpoint as ckpt
from .device import resolve_device
from .distributed import World, all_reduce_sum, init, leave, world_from_env
from .numerics import flush_denormal, gradients_finite
from .schedules import kl_beta, lr_factor

Callback = Callable[[dict[str, Any], torch.nn.Module], None]
BatchHook = Callable[[int, Batch], Batch]


log = logging.getLogger("vaekit")
LINE_EVERY_S = 30.0  # without a terminal, a plain progress line at most this often

def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam with the config's rate, betas and eps; the fused kernel updates all parameters at once
    (about 4x faster than the default here, ``benchmarks/speed_choices.py``); fall back where a
    build lacks it."""
    params = list(params)
    options = dict(lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps)
    try:
        return torch.optim.Adam(params, fused=True, **options)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, foreach=True, **options)


@dataclass
class _Run:
    """Everything one call of :func:`fit` works with; the named pieces read and update it."""

    model: torch.nn.Module
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    cfg: TrainConfig
    world: World
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    gen: torch.Generator  # every random draw of training comes from it
    epoch_start: Tensor  # the generator's state when the current epoch drew its order
    state: ckpt.Progress
    out: Path | None  # the checkpoint folder
    params: list[Tensor] = field(default_factory=list)
    n_batches: int = 0
    scheduled: bool = True  # a constant rate needs no scheduler step
    names: tuple[str, ...] = ()  # the model's terms, in the order of the epoch's sums
    partial: Tensor | None = None  # a resumed epoch's sums so far (global, with the count last)
    owns_group: bool = False  # this fit created the process group, and destroys it
    checkpoint_seconds: float = 0.0  # the current epoch's time spent writing checkpoints
    # the objective's options, passed to the model only when they are not the plain ELBO's
    loss_options: dict[str, Any] = field(default_factory=dict)


def fit(
    model: torch.nn.Module,
    train: Any,
    val: Any | None = None,
    config: TrainConfig | None = None,
    *,
    callback: Callback | None = None,
    batch_hook: BatchHook | None = None,
    progress: bool | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Train ``model`` with Adam: for a VAE, maximize the ELBO (or the beta / free-bits
    objective the config asks for; the figures logged are always the true ELBO).

    Every random draw (the order of examples, the reparameterization noise, dynamic
    binarization) comes from one generator seeded by ``config.seed`` and is made for the whole
    global batch, so a run resumed from a checkpoint, or sharded over processes by
    ``torchrun``, takes exactly the steps of one uninterrupted process.

    Parameters
    ----------
    model : a :class:`vaekit.models.Model` (VAE, Autoencoder, or your own)
    train : :class:`vaekit.data.Examples` (examples with their labels), or the examples alone:
        a tensor ``(N, *data_shape)``, :class:`vaekit.ByteImages` (a quarter of the memory),
        or a lazy array read a batch at a time
    val : held-out examples, the same kinds; their figures are computed every epoch (early
        stopping, best checkpoint)
    config : TrainConfig
    callback : ``callback(row, model)`` after every epoch, with the metrics row (rank 0 only)
    batch_hook : ``batch_hook(step, batch) -> batch`` before every step (inspection, fault injection)
    progress : a progress bar; default: when stderr is a terminal
    checkpoint_dir : where ``checkpoint-last`` (the whole training state, every epoch, and every
        ``checkpoint_every`` steps) and ``checkpoint-best`` (the weights alone, whenever the
        validation figure improves) are written; the time spent is each row's
        ``checkpoint_seconds`` (their flush to disk overlaps the next epoch)
    resume : continue from ``checkpoint_dir``'s last checkpoint

    Returns
    -------
    list of dict, the metrics rows of the epochs run by this call.
    """
    check_model(model)
    train = as_examples(train)
    val = None if val is None else as_examples(val)
    cfg = size_training(config or TrainConfig(), len(train), val is not None)[0]
    with flush_denormal():
        run = _start(model, train, cfg, checkpoint_dir, resume)
        finished = False
        try:
            rows = _epochs(run, train, val, callback, batch_hook, progress)
            finished = True
            return rows
        finally:
            try:
                runs.wait_for_writes()  # every checkpoint in its place, whichever way fit ends
            finally:
                leave(run.owns_group, finished)


def _epochs(run: _Run, train: Examples, val: Examples | None, callback: Callback | None,
            batch_hook: BatchHook | None, progress: bool | None) -> list[dict[str, Any]]:
    """The loop over epochs: train, log, validate, checkpoint, stop early."""
    cfg, model = run.cfg, run.model
    if train.in_memory:  # on the device once; a batch is then one gather there
        train = train.to(run.device)
    show = (sys.stderr.isatty() if progress is None else progress) and run.world.is_main
    rows: list[dict[str, Any]] = []
    started = said = time.perf_counter()
    bar = tqdm(range(run.state.epoch + 1, cfg.epochs + 1), desc="train", unit="epoch", disable=not show,
               file=sys.stderr)
    for epoch in bar:
        t0 = time.perf_counter()
        run.checkpoint_seconds = 0.0
        sums = _run_epoch(run, train, epoch, batch_hook)
        row = _epoch_row(run, epoch, sums)
        improved = _validate(run, val, row)
        row.update(beta=kl_beta(cfg, run.state.step), lr=run.optimizer.param_groups[0]["lr"],
                   nan_skipped=run.state.nan_skipped, seconds=time.perf_counter() - t0 - run.checkpoint_seconds)
        t1 = time.perf_counter()
        staged = _stage_last(run) + (_stage_best(run, row) if improved else [])
        with runs.committed_after(staged):  # in place once the callback has logged the epoch
            row["checkpoint_seconds"] = run.checkpoint_seconds + time.perf_counter() - t1
            rows.append(row)
            if run.world.is_main and callback is not None:
                callback(row, model)
        key = model.headline.key
        bar.set_postfix({key: f"{row[f'train_{key}']:.2f}", "val": f"{row.get(f'val_{key}', math.nan):.2f}"})
        if not show and run.world.is_main and (not rows[:-1] or time.perf_counter() - said >= LINE_EVERY_S):
            said = time.perf_counter()  # without a bar: one plain line an epoch, at most one each 30 s
            log.info("epoch %d/%d, step %d: train %s %.2f%s (%.0f s)", epoch, cfg.epochs, run.state.step, key,
                     row[f"train_{key}"], f", val {row[f'val_{key}']:.2f}" if f"val_{key}" in row else "",
                     said - started)
        if cfg.patience and run.state.bad_epochs >= cfg.patience:
            row["stopped_early"] = True
            if run.world.is_main:
                log.info("stopped early at epoch %d: no better validation figure in %d epochs (the best: epoch %d, "
                         "in checkpoint-best)", epoch, cfg.patience, run.state.best_epoch)
            break
        if cfg.max_seconds is not None and _out_of_time(run, time.perf_counter() - started):
            row["stopped_time"] = True
            break
    return rows


def _out_of_time(run: _Run, seconds: float) -> bool:
    """Past the budget, on any process: all processes stop at the same epoch."""
    late = torch.tensor([float(seconds > run.cfg.max_seconds)], device=run.device)
    return bool(all_reduce_sum(late, run.world).item() > 0)


def _loss_options(cfg: TrainConfig) -> dict[str, Any]:
    """The objective's options, passed to the model only when they are not the plain ELBO's."""
    return {} if (cfg.objective, cfg.n_samples) == ("elbo", 1) else {"objective": cfg.objective, "n_samples": cfg.n_samples}


def check_training(model, cfg: TrainConfig, train: Examples | None = None) -> None:
    """Refuse training options that do not fit each other or the model, before any work: the
    options alone, then (given training data) the model's own loss on two examples, which
    refuses what it cannot do (free bits without a closed-form KL, say)."""
    _check_options(model, cfg)
    if train is not None and len(train):
        with torch.random.fork_rng(devices=[]), torch.no_grad():  # the run's random state untouched
            model.training_loss(next(train.head(2).batches(2, model.device)), beta=cfg.beta, free_bits=cfg.free_bits,
                                **_loss_options(cfg))


def _check_options(model, cfg: TrainConfig) -> None:
    if cfg.on_nan not in ("stop", "skip"):
        raise VaekitError(f"--on-nan {cfg.on_nan}: choose stop or skip")
    if not model.trains_by_gradient:
        raise VaekitError(f"a {model.config.model!r} model is fitted in closed form, not by fit")
    if cfg.objective not in OBJECTIVES:
        raise VaekitError(f"--objective {cfg.objective}: choose one of: {', '.join(OBJECTIVES)}")
    if cfg.n_samples < 1:
        raise VaekitError(f"--n-samples {cfg.n_samples}: must be at least 1")
    if cfg.objective != "elbo" and (cfg.beta != 1 or cfg.free_bits > 0 or cfg.kl_warmup_steps > 0):
        raise VaekitError(f"--objective {cfg.objective}: --beta, --free-bits and --kl-warmup-steps weigh the ELBO's "
                          "KL term, which the importance-weighted bound does not have; use --objective elbo")
    if cfg.objective != "elbo" and not model.headline.bounds_log_likelihood:
        raise VaekitError(f"--objective {cfg.objective}: a {model.config.model!r} model has no importance weights; "
                          "it applies to a vae")


def _start(model, train: Examples, cfg: TrainConfig, checkpoint_dir, resume: bool) -> _Run:
    """Device, process group, optimizer, schedule and generator; restored from the last
    checkpoint when resuming."""
    _check_options(model, cfg)
    world = world_from_env()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world.enabled:
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    owns_group = init(world, device)
    model.to(device).train()
    from torch.nn.parallel import DistributedDataParallel

    net = DistributedDataParallel(model) if world.enabled else model
    optimizer = make_optimizer(model.parameters(), cfg)
    n_batches = math.ceil(len(train) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, n_batches))
    gen = torch.Generator().manual_seed(cfg.seed)
    out = Path(checkpoint_dir) if checkpoint_dir is not None else None
    run = _Run(model, net, cfg, world, device, optimizer, scheduler, gen, gen.get_state(), ckpt.Progress(), out,
               params=[p for p in model.parameters() if p.requires_grad], n_batches=n_batches,
               scheduled=cfg.lr_schedule != "constant" or cfg.lr_warmup_steps > 0, owns_group=owns_group,
               loss_options=_loss_options(cfg))
    if resume:
        if out is None:
            raise VaekitError("resume needs the run's checkpoint folder")
        saved = ckpt.load_checkpoint(out / ckpt.LAST)
        saved.restore(model, optimizer, scheduler, {"gen": gen})
        run.state = saved.progress
        run.epoch_start = saved.tensors.get("rng/gen_epoch_start", gen.get_state())
        # the partial epoch's sums are global (summed over processes when saved): one process holds them
        run.partial = _saved_sums(saved, cfg, len(train)) if world.is_main else None
    return run


def _saved_sums(saved: ckpt.Checkpoint, cfg: TrainConfig, n: int) -> Tensor | None:
    """A mid-epoch checkpoint's sums, with the count of examples they cover last. Checkpoints
    written before issue 11 kept the sums alone: their count is the examples of the batches done."""
    sums = saved.extra("epoch_sums_counted")
    if sums is None and saved.extra("epoch_sums") is not None:
        done = min(saved.progress.batch * cfg.batch_size, n)
        sums = torch.cat([saved.extra("epoch_sums"), torch.tensor([float(done)], dtype=torch.float64)])
    return sums


def _epoch_order(run: _Run, n: int) -> Tensor:
    """The epoch's permutation of the examples. Resuming inside an epoch draws the same order
    again from the state the epoch started with, then puts the generator back where it stood."""
    if run.state.batch == 0:
        run.epoch_start = run.gen.get_state()
        return torch.randperm(n, generator=run.gen)
    now = run.gen.get_state()
    run.gen.set_state(run.epoch_start)
    perm = torch.randperm(n, generator=run.gen)
    run.gen.set_state(now)
    return perm


def _run_epoch(run: _Run, train: Examples, epoch: int, batch_hook: BatchHook | None) -> Tensor:
    """The epoch's batches from where the run stands; returns the global sums of every term
    over the examples used, with that count last (float64, summed over processes)."""
    perm = _epoch_order(run, len(train))
    sums = None if run.partial is None else run.partial.to(run.device)
    run.partial = None
    B, cfg = run.cfg.batch_size, run.cfg
    for b in range(run.state.batch, run.n_batches):
        batch, noise = _draw_batch(run, train, perm[b * B : (b + 1) * B])
        if batch_hook is not None:
            batch = batch_hook(run.state.step, batch)
        batch_sums = _train_batch(run, batch, noise, epoch)
        if batch_sums is not None:
            sums = batch_sums if sums is None else sums.add_(batch_sums)
        run.state.batch = b + 1
        if cfg.checkpoint_every and run.state.step % cfg.checkpoint_every == 0 and run.state.batch < run.n_batches \
                and batch_sums is not None:
            _save_mid_epoch(run, all_reduce_sum(sums.clone(), run.world))  # every process joins the sum
    run.state.batch = 0
    run.state.epoch = epoch
    if sums is None:
        raise VaekitError(f"epoch {epoch}: every batch was skipped as non-finite; training cannot go on")
    return all_reduce_sum(sums, run.world)


def _draw_batch(run: _Run, train: Examples, idx: Tensor) -> tuple[Batch, Tensor | None]:
    """This process's share of the global batch ``idx``, and its noise.

    The noise and the dynamic binarization are drawn for the whole global batch from the run's
    generator (so one process and several take the same draws), then sliced: this process takes
    every ``world.size``-th example.
    """
    G, world, device = len(idx), run.world, run.device
    mine = slice(world.rank, None, world.size)
    K = run.cfg.n_samples
    noise = run.model.draw_noise(G, run.gen) if K == 1 else run.model.draw_noise(G, run.gen, K)
    uniform = torch.rand((G, *train.shape[1:]), generator=run.gen) if run.cfg.binarize == "dynamic" else None
    local = idx[mine]
    batch = train[local.to(device) if train.in_memory else local]
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if uniform is not None:  # a fresh Bernoulli draw of every value, every epoch: 1.0 where u < x
        x = batch["x"]
        batch["x"] = torch.lt(uniform[mine].to(device), x, out=torch.empty_like(x))
    return batch, None if noise is None else noise[mine].to(device)


def _train_batch(run: _Run, batch: Batch, noise: Tensor | None, epoch: int) -> Tensor | None:
    """One optimizer step on ``batch``; returns the batch's sums of every term and its size
    (float64, on the device), or None when a non-finite batch was skipped.

    The NaN guard takes one decision after the backward pass and before ``optimizer.step()``:
    backward always runs, so every process of a DDP run joins the gradient all-reduce even when
    only its own loss went bad (skipping it there left the other processes waiting on a
    collective that never matched); then the loss and every gradient are checked.
    """
    cfg, world, G = run.cfg, run.world, len(batch["x"]) * run.world.size
    beta = kl_beta(cfg, run.state.step) if cfg.kl_warmup_steps > 0 else cfg.beta
    if cfg.precision == "bf16":
        with torch.autocast(run.device.type, dtype=torch.bfloat16):
            loss_vec, terms = run.net(batch, beta=beta, free_bits=cfg.free_bits, noise=noise, **run.loss_options)
    else:  # no context to enter every step
        loss_vec, terms = run.net(batch, beta=beta, free_bits=cfg.free_bits, noise=noise, **run.loss_options)
    # sum / G * world.size: DDP's gradient average is then the global batch's mean
    loss = loss_vec.sum(dtype=torch.float32) * (world.size / G)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grads_ok = gradients_finite(run.params, cfg.grad_clip)
    bad = None if math.isfinite(loss.item()) else _nonfinite_term(terms, run.model.headline.key)
    if bad is None and not grads_ok:
        bad = "gradient"
    if world.enabled:  # every process takes the same decision
        flag = all_reduce_sum(torch.tensor([0.0 if bad is None else 1.0], device=run.device), world)
        bad = bad or ("loss on another process" if float(flag) > 0 else None)
    if bad is not None:
        return _skip_or_stop(run, bad, epoch)
    run.optimizer.step()
    if run.scheduled:
        run.scheduler.step()
    run.state.step += 1
    run.names = terms._fields
    with torch.no_grad():  # summed on the device: no synchronization per step
        sums = torch.stack(terms).sum(1, dtype=torch.float64)
        return torch.cat([sums, sums.new_tensor([len(batch["x"])])])


def _nonfinite_term(terms, headline: str) -> str:
    """The first non-finite term, parts before the headline total (the ELBO is non-finite
    whenever a part is, so naming the part says more)."""
    named = sorted(terms._asdict().items(), key=lambda kv: kv[0] == headline)
    for name, t in named:
        if not bool(torch.isfinite(t).all()):
            return name
    return "loss"


def _skip_or_stop(run: _Run, bad: str, epoch: int) -> None:
    """``--on-nan stop`` raises naming where and what; ``skip`` counts the batch and goes on."""
    if run.cfg.on_nan == "stop":
        runs.wait_for_writes()  # the last checkpoint's commit may be still under way
        last = run.out / ckpt.LAST if run.out is not None else None
        kept = f"; the last good checkpoint is {last}" if last is not None and last.exists() else ""
        raise VaekitError(f"non-finite {bad} at epoch {epoch}, step {run.state.step + 1}: training stopped{kept}; "
                          "try a lower --lr, --grad-clip, or --on-nan skip")
    run.state.nan_skipped += 1
    run.optimizer.zero_grad(set_to_none=True)
    return None


def _epoch_row(run: _Run, epoch: int, sums: Tensor) -> dict[str, Any]:
    """The metrics row: the epoch's mean of every term over the examples actually used."""
    means = (sums[:-1] / sums[-1]).tolist()
    return {"epoch": epoch, "step": run.state.step, **{f"train_{k}": v for k, v in zip(run.names, means)}}


def _validate(run: _Run, val: Examples | None, row: dict[str, Any]) -> bool:
    """Add the validation figures to ``row``; True when the headline figure improved.

    A run still warming up its KL weight never counts an epoch against its patience.
    """
    if val is None:
        return False
    v = evaluate(run.model, val, seed=run.cfg.seed)
    row.update({f"val_{k}": v[k] for k in run.names})
    score, state = v[run.model.headline.key], run.state
    if state.best_val is None or score > state.best_val:
        state.best_val, state.best_epoch, state.bad_epochs = score, state.epoch, 0
        return True
    if state.step >= run.cfg.kl_warmup_steps:
        state.bad_epochs += 1
    return False


def _writes(run: _Run) -> bool:
    """Whether this process writes checkpoints: rank 0, given a folder."""
    return run.out is not None and run.world.is_main


def _stage_last(run: _Run, sums: Tensor | None = None) -> list[runs.Staged]:
    """The whole training state, staged as the last checkpoint (committed by the caller)."""
    if not _writes(run):
        return []
    extra = {"epoch_sums_counted": sums} if sums is not None else {}
    epoch_start = torch.Generator()
    epoch_start.set_state(run.epoch_start)
    return [ckpt.stage_checkpoint(run.out / ckpt.LAST, run.model, run.optimizer, run.scheduler, run.state,
                                  {"gen": run.gen, "gen_epoch_start": epoch_start}, extra)]


def _stage_best(run: _Run, row: dict[str, Any]) -> list[runs.Staged]:
    """The weights alone, staged as the best checkpoint, with the epoch and its validation figure."""
    if not _writes(run):
        return []
    key = f"val_{run.model.headline.key}"
    meta = {"epoch": str(run.state.epoch), "step": str(run.state.step), key: repr(float(row[key]))}
    return [runs.stage_weights(run.model, run.out / ckpt.BEST, meta)]


def _save_mid_epoch(run: _Run, sums: Tensor) -> None:
    """A checkpoint inside an epoch, with the epoch's sums so far; its time counts in the epoch's row."""
    t0 = time.perf_counter()
    runs.commit_later(_stage_last(run, sums))
    run.checkpoint_seconds += time.perf_counter() - t0


__all__ = ["fit", "make_optimizer"]
