"""Floating-point care in the training step: denormal flushing and the gradients' finiteness."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor


def flush_denormal_enabled() -> bool:
    """Whether this thread flushes denormal floats to zero (probed: torch has no getter)."""
    small = torch.tensor(1e-20, dtype=torch.float32)
    return float(small * small) == 0.0  # 1e-40 is denormal in float32: kept, or flushed to zero


@contextlib.contextmanager
def flush_denormal() -> Iterator[None]:
    """Flush denormal floats to zero inside the block, then restore the caller's setting.

    Adam's second-moment state decays towards denormal floats, which the CPU handles in slow
    microcode; on this project's machine that cost about 10 % of a run's time (issue 6).
    """
    before = flush_denormal_enabled()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def gradients_finite(params: list[Tensor], clip: float | None = None) -> bool:
    """Whether every gradient is finite; with ``clip``, first scale them to a norm of at most ``clip``.

    One public multi-tensor reduction, the gradients' total L2 norm, answers both: it is
    non-finite when any gradient is (or when their norm overflows float32, a divergence too).
    It costs 95-144 us a step for the 784-400-20 VAE on this project's 2-core machine, against
    286-558 us for torch's private AMP check and 7-9 ms for the infinity norm (2026-11-30).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    norm = torch.nn.utils.get_total_norm(grads)
    if clip is not None:
        torch.nn.utils.clip_grads_with_norm_(params, clip, norm)
    return bool(torch.isfinite(norm))
