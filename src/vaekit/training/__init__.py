"""Training: the generic loop (``fit``), the job that writes a run directory (``train``,
``resume``), checkpoints, schedules, devices and DistributedDataParallel."""

from .job import resume, train
from .loop import fit

__all__ = ["fit", "resume", "train"]
