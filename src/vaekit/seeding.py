"""Seeded noise that leaves the caller's random state untouched."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block with the global generators seeded by ``seed``, restoring them afterwards.

    ``seed=None`` uses (and advances) the global random state as it is.
    """
    if seed is None:
        yield
        return
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
