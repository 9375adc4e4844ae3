"""Defaults chosen from the data, real-valued arrays standardized (with their figures in the data's
own units), and a tool that says what it is doing while it trains."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import vaekit
from vaekit import ModelConfig, TrainConfig
from vaekit.cli import main
from vaekit.config import size_model, size_training


def test_the_rule_on_two_data_sizes():
    """A 3-column table of 5000 rows and 28x28 images of 54000: the README's rule, number by number."""
    small, why = size_model(ModelConfig(data_shape=(3,)))
    assert (small.latent_dim, small.hidden) == (3, (128, 128)) and len(why) == 2
    large, _ = size_model(ModelConfig(data_shape=(1, 28, 28)))
    assert (large.latent_dim, large.hidden) == (32, (1024, 512))
    few, _ = size_training(TrainConfig(), 5000, has_val=True)
    assert (few.batch_size, few.max_steps, few.epochs, few.patience) == (64, 20000, 254, 32)  # 79 steps an epoch
    many, _ = size_training(TrainConfig(), 54000, has_val=True)
    assert (many.batch_size, many.epochs, many.patience) == (128, 48, 10)  # 422 steps an epoch
    assert size_training(TrainConfig(), 5000, has_val=False)[0].patience == 0  # nothing to stop on


def test_given_values_are_kept_and_a_step_budget_becomes_whole_epochs():
    cfg, why = size_training(TrainConfig(batch_size=10, max_steps=25, patience=0), 100, has_val=True)
    assert (cfg.batch_size, cfg.epochs, cfg.patience) == (10, 3, 0) and len(why) == 1  # 25 steps of 10 an epoch
    cfg, why = size_training(TrainConfig(batch_size=10, epochs=7, patience=4), 100, has_val=True)
    assert (cfg.epochs, cfg.patience, why) == (7, 4, [])
    model, why = size_model(ModelConfig(data_shape=(3,), latent_dim=2, hidden=(16,)))
    assert (model.latent_dim, model.hidden, why) == (2, (16,), [])


def test_fit_takes_the_chosen_batch_and_length():
    """fit with nothing set: batch 16 for 100 examples (7 steps an epoch), 20000 steps in 2858 epochs,
    cut short here by a step budget given instead."""
    x = torch.rand(100, 4, generator=torch.Generator().manual_seed(0))
    model = vaekit.VAE(ModelConfig(data_shape=(4,), likelihood="bernoulli"))
    rows = vaekit.fit(model, x, None, TrainConfig(max_steps=20, device="cpu"), progress=False)
    assert [r["step"] for r in rows] == [7, 14, 21]
    assert model.config.latent_dim == 4 and model.config.hidden == (128, 128)


def test_a_real_valued_array_is_standardized_and_its_figures_are_in_its_own_units(tmp_path):
    """The same array and the array times 10: standardized, both train identically, so their
    figures differ by exactly D log 10, the change of units; and the run records the transform."""
    x = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32) * [1, 5, 0.2] + [0, 3, -1]
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", x * 10)
    cfg = dict(epochs=2, batch_size=50, device="cpu")
    _, a = vaekit.train(ModelConfig(latent_dim=2, hidden=(16,)), TrainConfig(data=str(tmp_path / "a.npy"), **cfg),
                        tmp_path / "ra", progress=False)
    _, b = vaekit.train(ModelConfig(latent_dim=2, hidden=(16,)), TrainConfig(data=str(tmp_path / "b.npy"), **cfg),
                        tmp_path / "rb", progress=False)
    assert a["elbo"] - b["elbo"] == pytest.approx(3 * math.log(10), abs=1e-3)
    assert a["kl"] == pytest.approx(b["kl"], abs=1e-4)  # the KL has no units of x
    run = vaekit.load_run(tmp_path / "rb")
    assert run.info["data"]["transform"]["kind"] == "standardize"
    assert run.info["data"]["transform"]["std"][1] == pytest.approx(float(x[:, 1].std() * 10), rel=0.1)
    rows_a, rows_b = (vaekit.runs.read_metrics(tmp_path / r) for r in ("ra", "rb"))  # metrics.csv too
    assert float(rows_a[-1]["val_elbo"]) - float(rows_b[-1]["val_elbo"]) == pytest.approx(3 * math.log(10), abs=1e-3)


def test_grey_levels_in_an_array_are_not_standardized(tmp_path):
    np.save(tmp_path / "g.npy", np.random.default_rng(0).random((60, 5)).astype(np.float32))
    vaekit.train(ModelConfig(latent_dim=2, hidden=(8,)), TrainConfig(data=str(tmp_path / "g.npy"), epochs=1,
                 device="cpu"), tmp_path / "r", progress=False)
    assert vaekit.load_run(tmp_path / "r").info["data"]["transform"]["kind"] == "none"


def test_train_says_what_it_chose_before_training(capsys, tmp_path):
    assert main(["train", "--data", "digits", "--epochs", "1", "--run-dir", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("vaekit: ")]
    said = "\n".join(lines)
    assert f"run directory: {tmp_path / 'r'}" in said
    assert "data: digits, 1294 training and 144 validation examples of shape 1x8x8" in said
    assert "likelihood: bernoulli" in said and "latent size 32" in said and "batch 16" in said
    assert said.index("run directory") < said.index("epoch 1/1")  # before the first epoch's line


def test_without_a_terminal_progress_lines_come_while_training(tmp_path):
    """stderr to a pipe: the first epoch's plain line arrives while the process is still training."""
    proc = subprocess.Popen([sys.executable, "-m", "vaekit", "train", "--data", "digits", "--epochs", "100000",
                             "--patience", "0", "--run-dir", str(tmp_path / "r")],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        seen, deadline = [], time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen.append(line)
            if line.startswith("vaekit: epoch 1/100000, step 81: train elbo"):
                break
        else:
            pytest.fail(f"no epoch line in 120 s: {seen}")
        assert proc.poll() is None  # still training
    finally:
        proc.kill()
        proc.wait()


def test_samples_and_reconstructions_come_back_in_the_data_units(tmp_path):
    """A table far from 0 and 1 in scale: what sample and reconstruct write is in its units."""
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(300, 2)) * [100, 0.01] + [1000, 5]).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run = str(tmp_path / "r")
    vaekit.train(ModelConfig(latent_dim=2, hidden=(32,)), TrainConfig(data=str(tmp_path / "x.npy"), epochs=20,
                 device="cpu"), run, progress=False)
    assert main(["sample", run, "-n", "2000", "-o", str(tmp_path / "s.npy")]) == 0
    s = np.load(tmp_path / "s.npy")
    assert np.allclose(s.mean(0), [1000, 5], atol=[30, 0.003])  # means of p(x|z) average near the data's mean
    assert main(["reconstruct", run, "-n", "300", "-o", str(tmp_path / "r.npy")]) == 0
    r = np.load(tmp_path / "r.npy")
    assert r.shape == (300, 2) and np.abs(r - x).mean(0)[0] < 100 and np.abs(r - x).mean(0)[1] < 0.01


def test_a_run_written_before_these_defaults_keeps_no_early_stopping(tmp_path):
    """In an older config.json (no max_steps) a missing patience meant none; resuming it must not
    start stopping early, while a new run's recorded patience is kept as it is."""
    import json

    from vaekit.training.job import _read_run

    run = tmp_path / "r"
    vaekit.train(ModelConfig(latent_dim=2, hidden=(8,)), TrainConfig(data="digits", epochs=1, device="cpu"), run,
                 progress=False)
    info = json.loads((run / "config.json").read_text())
    assert info["train"]["patience"] == 31 and info["train"]["max_steps"] is None  # chosen, recorded
    assert _read_run(run)[2].patience == 31
    del info["train"]["max_steps"]
    info["train"]["patience"] = None
    (run / "config.json").write_text(json.dumps(info))
    assert _read_run(run)[2].patience == 0


def test_early_stopping_says_so(capsys, tmp_path):
    """A learning rate too small to improve anything: patience 2 stops at epoch 3, and says where the best is."""
    assert main(["train", "--data", "digits", "--epochs", "50", "--patience", "2", "--lr", "1e-30", "--latent-dim", "2",
                 "--hidden", "8", "--run-dir", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "vaekit: stopped early at epoch 3: no better validation figure in 2 epochs (the best: epoch 1" in err
    assert len(vaekit.runs.read_metrics(tmp_path / "r")) == 3
