"""Schedules by optimizer step: the learning rate and the KL weight.

Only ``beta = 1`` with no free bits trains on the ELBO itself; whatever the schedule, every
figure vaekit reports is the true ELBO.
"""

from __future__ import annotations

import math
from typing import Callable

from ..config import LR_SCHEDULES, TrainConfig
from ..errors import VaekitError


def burda_stage(epoch: int) -> int:
    """The stage ``i`` of epoch ``epoch`` (0-based) in Burda et al. (2015)'s schedule: stage ``i``
    lasts ``3^i`` epochs, so stages 0-7 make 3280 epochs."""
    i, start = 0, 0
    while epoch >= start + 3**i:
        start += 3**i
        i += 1
    return i


def lr_factor(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The multiplier of ``cfg.lr`` after ``step`` steps (for ``torch.optim.lr_scheduler.LambdaLR``).

    A linear warm-up over ``lr_warmup_steps``, then ``constant``; ``cosine`` decay to zero at the
    last step (Loshchilov and Hutter 2017); ``step``: times ``lr_gamma`` every ``lr_step_epochs``
    epochs; or ``burda``: ``10^(-i/7)`` in stage ``i``, which lasts ``3^i`` epochs.
    """
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise VaekitError(f"--lr-schedule {cfg.lr_schedule}: choose one of: {', '.join(LR_SCHEDULES)}")
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = cfg.lr_warmup_steps

    def factor(step: int) -> float:
        f = min(1.0, (step + 1) / warm) if warm > 0 else 1.0
        if cfg.lr_schedule == "cosine":
            progress = min(1.0, max(0, step - warm) / max(1, total - warm))
            f *= 0.5 * (1 + math.cos(math.pi * progress))
        elif cfg.lr_schedule == "step":
            f *= cfg.lr_gamma ** (step // max(1, cfg.lr_step_epochs * steps_per_epoch))
        elif cfg.lr_schedule == "burda":  # 10^(-i/7) in stage i (Burda et al. 2015, section 5)
            f *= 10 ** (-burda_stage(step // max(1, steps_per_epoch)) / 7)
        return f

    return factor


def kl_beta(cfg: TrainConfig, step: int) -> float:
    """The KL weight at ``step``: ``beta`` ramped linearly from 0 over ``kl_warmup_steps``."""
    if cfg.kl_warmup_steps <= 0:
        return cfg.beta
    return cfg.beta * min(1.0, step / cfg.kl_warmup_steps)
