"""Schedules by optimizer step: the learning rate and the KL weight.

Only ``beta = 1`` with no free bits trains on the ELBO itself; whatever the schedule, every
figure vaekit reports is the true ELBO.
"""

from __future__ import annotations

import math
from typing import Callable

from ..config import TrainConfig
from ..errors import VaekitError

LR_SCHEDULES = ("constant", "cosine", "step")


def lr_factor(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The multiplier of ``cfg.lr`` after ``step`` steps (for ``torch.optim.lr_scheduler.LambdaLR``).

    A linear warm-up over ``lr_warmup_steps``, then ``constant``; ``cosine`` decay to zero at the
    last step (Loshchilov and Hutter 2017); or ``step``: times ``lr_gamma`` every
    ``lr_step_epochs`` epochs.
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
        return f

    return factor


def kl_beta(cfg: TrainConfig, step: int) -> float:
    """The KL weight at ``step``: ``beta`` ramped linearly from 0 over ``kl_warmup_steps``."""
    if cfg.kl_warmup_steps <= 0:
        return cfg.beta
    return cfg.beta * min(1.0, step / cfg.kl_warmup_steps)
