"""Shared fixtures: one tiny run directory, trained once per test session through the CLI."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from vaekit.cli import main

# Small enough that a digits run trains in about a second on a CPU.
TINY_MODEL = ("--hidden", "32", "--latent-dim", "4", "--device", "cpu")
LATENT_DIM = 4


@dataclass(frozen=True)
class TrainedRun:
    """A run directory written by ``vaekit train``, with what the command printed."""

    path: Path
    stdout: str
    stderr: str
    epochs: int


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """``vaekit train`` on the embedded digits for 2 epochs. Treat as read-only: tests share it."""
    path = tmp_path_factory.mktemp("runs") / "digits"
    epochs = 2
    out, err = io.StringIO(), io.StringIO()
    # capsys is function-scoped, so capture by hand here.
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["train", "--data", "digits", "--run-dir", str(path), "--epochs", str(epochs), *TINY_MODEL])
    assert code == 0, err.getvalue()
    return TrainedRun(path, out.getvalue(), err.getvalue(), epochs)
