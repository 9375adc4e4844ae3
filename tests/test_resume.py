"""Checkpoints in proportion to the run, resume that never surprises, and stopping by signal.

The best checkpoint is the weights alone and is written only when the validation figure
improves; the last one is the whole training state (tests/test_training.py proves that it
resumes exactly). ``vaekit train --resume RUN`` refuses options that would change the run,
says when a run is finished, and Ctrl-C or SIGTERM end training on one line that gives the
command resuming it.
"""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from cli_helpers import refused, snapshot, vaekit_cli
from conftest import TINY_MODEL
from vaekit import runs
from vaekit.config import ModelConfig, TrainConfig
from vaekit.errors import RunFinished
from vaekit.report import REPORT
from vaekit.training import checkpoint as ckpt
from vaekit.training import resume, train

MODEL = ModelConfig(latent_dim=4, hidden=(32,), likelihood="bernoulli")
RUN_FILES = {runs.CONFIG, runs.WEIGHTS, runs.METRICS, runs.SUMMARY, ckpt.LAST, ckpt.BEST, REPORT}


def config(**changes) -> TrainConfig:
    return TrainConfig(**{"data": "digits", "epochs": 2, "batch_size": 128, "device": "cpu", **changes})


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    """Runs here skip their PNG figures (half a second each; tested with the CLI)."""
    import vaekit.plots

    monkeypatch.setattr(vaekit.plots, "save_run_figures", lambda *args, **kwargs: None)


@pytest.fixture
def finished_run(digits_run, tmp_path) -> Path:
    """A copy of the session's 2-epoch run (``vaekit train ... --hidden 32 --latent-dim 4``)."""
    return Path(shutil.copytree(digits_run.path, tmp_path / "run"))


def metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


# -- checkpoints ------------------------------------------------------------------------------

def test_best_checkpoint_is_the_weights_alone_and_files_do_not_accumulate(tmp_path):
    run = tmp_path / "run"
    kept: dict[int, dict[str, torch.Tensor]] = {}

    def keep(row, model):
        kept[row["epoch"]] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        assert float(row["checkpoint_seconds"]) > 0

    train(MODEL, config(), run, callback=keep, progress=False)
    assert {p.name for p in run.iterdir()} == RUN_FILES
    best_epoch = ckpt.load_checkpoint(run / ckpt.LAST).progress.best_epoch
    best = load_file(str(run / ckpt.BEST))
    assert set(best) == set(load_file(str(run / runs.WEIGHTS)))  # the format of model.safetensors
    assert all(torch.equal(best[k], kept[best_epoch][k]) for k in best)
    assert metadata(run / ckpt.BEST)["epoch"] == str(best_epoch)
    # weights alone: no optimizer moments (twice the weights), no generator state
    assert (run / ckpt.BEST).stat().st_size < (run / ckpt.LAST).stat().st_size / 2.5

    resume(run, epochs=4, progress=False)  # overwrites leave the same files, and no temporaries
    assert {p.name for p in run.iterdir()} == RUN_FILES
    assert [r["epoch"] for r in runs.read_metrics(run)] == ["1", "2", "3", "4"]


def test_the_safetensors_written_in_place_read_back_exactly(tmp_path):
    """vaekit writes safetensors from the tensors' own memory; safetensors reads every dtype,
    shape (a scalar, a transposed view) and the metadata back."""
    tensors = {"u8": torch.arange(3, dtype=torch.uint8), "f64": torch.randn(3, dtype=torch.float64),
               "scalar": torch.tensor(2.5), "bool": torch.tensor([True, False]),
               "bf16": torch.randn(2, 3).bfloat16(), "view": torch.randn(4, 5).t()}
    runs.stage(tmp_path / "t.safetensors", runs.safetensors_parts(tensors, {"epoch": "3"})).commit()
    got = load_file(str(tmp_path / "t.safetensors"))
    assert set(got) == set(tensors)
    for k, t in tensors.items():
        assert got[k].dtype == t.dtype and torch.equal(got[k], t), k
    assert metadata(tmp_path / "t.safetensors") == {"epoch": "3"}
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]


def test_best_checkpoint_is_not_rewritten_when_validation_does_not_improve(tmp_path):
    """At a learning rate of 1e-30 the weights, and so the validation figure, never change:
    epoch 1 is the best for good, and its file stays as epoch 1 left it."""
    run = tmp_path / "run"
    seen: dict[int, tuple[int, bytes]] = {}

    def look(row, model):  # before the epoch's own checkpoints go in place
        if row["epoch"] > 1:
            seen[row["epoch"]] = ((run / ckpt.BEST).stat().st_mtime_ns, (run / ckpt.BEST).read_bytes())

    train(MODEL, config(epochs=4, lr=1e-30), run, callback=look, progress=False)
    final = ((run / ckpt.BEST).stat().st_mtime_ns, (run / ckpt.BEST).read_bytes())
    assert seen[2] == seen[3] == seen[4] == final
    assert metadata(run / ckpt.BEST)["epoch"] == "1"
    assert ckpt.load_checkpoint(run / ckpt.LAST).progress.epoch == 4  # the last one does move on


def test_an_older_metrics_file_gains_the_checkpoint_seconds_column_on_resume(tmp_path):
    run = tmp_path / "run"
    train(MODEL, config(), run, progress=False)
    with open(run / runs.METRICS, newline="") as f:  # as vaekit wrote it before the column
        old = [{k: v for k, v in r.items() if k != "checkpoint_seconds"} for r in csv.DictReader(f)]
    with open(run / runs.METRICS, "w", newline="") as f:
        w = csv.DictWriter(f, list(old[0]))
        w.writeheader()
        w.writerows(old)
    resume(run, epochs=3, progress=False)
    with open(run / runs.METRICS, newline="") as f:
        header = next(csv.reader(f))
    assert header == [*old[0], "checkpoint_seconds"]
    got = runs.read_metrics(run)
    assert [{k: r[k] for k in old[0]} for r in got[:2]] == old  # the old rows as they were
    assert [r["checkpoint_seconds"] for r in got[:2]] == ["", ""]
    assert float(got[2]["checkpoint_seconds"]) > 0


# -- resume: options that would change the run are refused --------------------------------------

REFUSED = [
    (("--lr", "0.01"), ("--lr 0.01", "with --lr 0.001")),
    (("--latent-dim", "32"), ("--latent-dim 32", "with --latent-dim 4")),  # the default, given: still given
    (("--batch-size", "7"), ("--batch-size 7", "was trained with --batch-size ")),
    (("--hidden", "64", "32"), ("--hidden 64 32", "with --hidden 32")),
    (("--patience", "3"), ("--patience 3", "was trained with")),
    (("--grayscale",), ("--grayscale", "without --grayscale")),
    (("--epochs", "3", "--seed", "1"), ("--seed 1", "with --seed 0")),  # --epochs may be given, --seed not
    (("--run-dir", "elsewhere"), ("--run-dir elsewhere", "drop --run-dir")),
    (("--epochs", "1"), ("--epochs 1", "trained 2 epochs already")),
]


@pytest.mark.parametrize("given, says", REFUSED, ids=[" ".join(g) for g, _ in REFUSED])
def test_resume_refuses_an_option_that_would_change_the_run(capsys, finished_run, given, says):
    refused(capsys, finished_run, "train", "--resume", finished_run, *given, says=(str(finished_run), *says))


def test_options_equal_to_the_runs_own_are_accepted(capsys, finished_run):
    r = vaekit_cli(capsys, "train", "--resume", finished_run, "--epochs", 3, "--latent-dim", 4, "--hidden", 32,
                   "--lr", "0.001", "--device", "cpu")
    assert r.code == 0, r.err
    assert [row["epoch"] for row in runs.read_metrics(finished_run)] == ["1", "2", "3"]


# -- resume: a finished run -------------------------------------------------------------------

def test_a_finished_run_says_so_with_the_command_that_extends_it(capsys, finished_run):
    before = snapshot(finished_run)
    r = vaekit_cli(capsys, "train", "--resume", finished_run)  # no --hidden 32 etc.: defaults are not options
    assert r.code == 0 and r.err == "", r.err
    command = f"vaekit train --resume {finished_run} --epochs 12"
    assert r.out == f"{finished_run}: finished (all 2 epochs done); to train it further: {command}\n"
    assert snapshot(finished_run) == before
    assert vaekit_cli(capsys, "train", "--resume", finished_run, "--epochs", 2).out == r.out

    extended = vaekit_cli(capsys, *shlex.split(command)[1:])  # the command it gave works
    assert extended.code == 0, extended.err
    assert len(runs.read_metrics(finished_run)) == 12


def test_a_run_stopped_by_patience_is_finished_until_given_more_epochs(tmp_path):
    run = tmp_path / "run"
    train(MODEL, config(epochs=10, patience=1, lr=1e-30), run, progress=False)  # never improves
    assert ckpt.load_checkpoint(run / ckpt.LAST).progress.epoch == 2
    before = snapshot(run)
    with pytest.raises(RunFinished, match=r"stopped early at epoch 2 of 10.*--resume .* --epochs 12"):
        resume(run, progress=False)
    assert snapshot(run) == before
    resume(run, epochs=12, progress=False)  # one more epoch, no better: stopped again
    assert [r["epoch"] for r in runs.read_metrics(run)] == ["1", "2", "3"]


def test_a_run_stopped_while_writing_its_figures_resumes_to_write_them(tmp_path):
    run = tmp_path / "run"
    train(MODEL, config(), run, progress=False)
    summary = (run / runs.SUMMARY).read_bytes()
    (run / runs.SUMMARY).unlink()
    resume(run, progress=False)  # no epoch to train: the figures only
    assert (run / runs.SUMMARY).read_bytes() == summary
    assert len(runs.read_metrics(run)) == 2


# -- Ctrl-C and SIGTERM -----------------------------------------------------------------------

@pytest.mark.parametrize("at_epoch", [1, 2])
def test_ctrl_c_prints_the_command_that_resumes(capsys, monkeypatch, tmp_path, at_epoch):
    """Ctrl-C while epoch ``at_epoch``'s row is written: its checkpoint never goes in place."""
    run = tmp_path / "run"
    write = runs.MetricsWriter.write

    def interrupted(self, row):
        write(self, row)
        if row["epoch"] == at_epoch:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(runs.MetricsWriter, "write", interrupted)
    # Ctrl-C as Python sees it at a terminal, also where the tests run with SIGINT ignored (a
    # background job): there Python leaves SIGINT ignored and raise_signal would do nothing
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        r = vaekit_cli(capsys, "train", "--data", "digits", "--epochs", 5, "--run-dir", run, *TINY_MODEL)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert r.code == 130 and "Traceback" not in r.err
    last = r.err.splitlines()[-1]  # after what training announced
    if at_epoch == 1:
        assert last == "vaekit: interrupted before the first epoch ended; nothing to resume"
        assert not run.exists()
        return
    assert last == f"vaekit: interrupted; resume with: vaekit train --resume {run}"
    assert {p.name for p in run.iterdir()} == RUN_FILES - {runs.SUMMARY, REPORT}  # no temporary left
    assert ckpt.load_checkpoint(run / ckpt.LAST).progress.epoch == 1
    monkeypatch.setattr(runs.MetricsWriter, "write", write)
    assert vaekit_cli(capsys, "train", "--resume", run).code == 0
    assert [row["epoch"] for row in runs.read_metrics(run)] == ["1", "2", "3", "4", "5"]


def test_sigterm_prints_the_command_that_resumes_and_exits_143(capsys, tmp_path):
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "VAEKIT_TEST_CRASH_CHECKPOINT"}
    child = subprocess.Popen([sys.executable, "-m", "vaekit", "train", "--data", "digits", "--epochs", "100000",
                              "--run-dir", str(run), *TINY_MODEL], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (run / runs.METRICS).exists() or len(runs.read_metrics(run)) < 1:
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
            time.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 143, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == f"vaekit: terminated; resume with: vaekit train --resume {run}"
    epoch = ckpt.load_checkpoint(run / ckpt.LAST).progress.epoch  # intact
    assert epoch >= 1 and not [p for p in run.iterdir() if ".tmp" in p.name]

    r = vaekit_cli(capsys, "train", "--resume", run, "--epochs", epoch + 1)
    assert r.code == 0, r.err
    assert [int(row["epoch"]) for row in runs.read_metrics(run)] == list(range(1, epoch + 2))
