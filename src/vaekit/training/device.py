"""Where to compute: ``--device auto|cpu|cuda|mps``."""

from __future__ import annotations

import torch

from ..errors import VaekitError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; a named device must be available."""
    mps = getattr(torch.backends, "mps", None)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VaekitError("--device cuda: no CUDA device is available (try --device auto)")
    if name == "mps" and not (mps is not None and mps.is_available()):
        raise VaekitError("--device mps: no MPS device is available (try --device auto)")
    if name not in ("cpu", "cuda", "mps"):
        raise VaekitError(f"--device {name}: unknown device; choose auto, cpu, cuda or mps")
    return torch.device(name)
