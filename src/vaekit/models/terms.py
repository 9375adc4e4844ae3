"""The terms models report, per example."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class ELBO(NamedTuple):
    """Per-example terms, in nats, each shape ``(B,)``: ``elbo = reconstruction - kl``."""

    elbo: Tensor
    reconstruction: Tensor  # E_q[log p(x|z)], a log-likelihood (higher is better)
    kl: Tensor  # KL(q(z|x) || p(z)): closed form for N(0, I), else estimated by sampling
