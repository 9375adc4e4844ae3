"""End-to-end tests of the ``vaekit`` command on the embedded digits (8x8, 1797 images).

Commands run in-process through ``vaekit.cli.main`` (fast), plus one real ``python -m vaekit``.
Every command of ``vaekit.cli.COMMANDS`` must succeed somewhere in this file: the last test
fails otherwise.

The contract for bad input: exit status 2, nothing on stdout, exactly one line on stderr that
names the input and the problem, no traceback, and nothing written.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import ok as _ok, refused
import torch

import vaekit
from vaekit.data import builtin as datasets
from vaekit.cli import COMMANDS

from conftest import LATENT_DIM, TINY_MODEL

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_TRAIN, N_TEST = 1438, 359  # the fixed digits split
FIGURES = ("reconstructions.png", "samples.png")
METRIC_KEYS = ("elbo", "reconstruction", "kl", "bits_per_dim")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def ok(capsys: pytest.CaptureFixture, *argv: object):
    """Run a command that must succeed."""
    return _ok(capsys, *argv)


def load_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in a fresh folder (a stray default ``runs/`` lands there), away from the user's
    data and cache, with no MNIST mirror that could be reached."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", [(tmp_path / "no-mirror").as_uri() + "/"])
    return tmp_path


@pytest.fixture(scope="module")
def digits_test() -> torch.Tensor:
    return datasets.load_dataset("digits").test


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------


def test_train_writes_run_directory(digits_run):
    run = digits_run.path
    for name in ("config.json", "model.safetensors", "metrics.csv", "summary.json", *FIGURES):
        assert (run / name).is_file(), name
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")], "temporary files left behind"

    config = json.loads((run / "config.json").read_text())
    assert {"model", "train", "data", "versions"} <= set(config)
    assert config["model"]["latent_dim"] == LATENT_DIM and config["model"]["hidden"] == [32]
    assert config["model"]["data_shape"] == [1, 8, 8]
    assert config["train"]["data"] == "digits" and config["train"]["epochs"] == digits_run.epochs
    assert config["data"]["n_test"] == N_TEST
    assert config["versions"]["vaekit"] == vaekit.__version__ and config["versions"]["torch"] == torch.__version__

    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, digits_run.epochs + 1))
    assert all(math.isfinite(float(r["train_elbo"])) and math.isfinite(float(r["val_elbo"])) for r in rows)

    summary = json.loads((run / "summary.json").read_text())
    assert set(METRIC_KEYS) <= set(summary) and summary["n_examples"] == N_TEST
    assert all(math.isfinite(summary[k]) for k in METRIC_KEYS)
    for name in FIGURES:
        assert (run / name).read_bytes()[:8] == PNG_MAGIC, name
    # The weights are as readable as the rest of the run (safetensors alone would make them 0600).
    assert (run / "model.safetensors").stat().st_mode == (run / "config.json").stat().st_mode

    assert f"run directory: {run}" in digits_run.stdout
    for name in FIGURES:
        assert str(run / name) in digits_run.stdout
    assert f"{summary['elbo']:.2f}" in digits_run.stdout
    assert "Traceback" not in digits_run.stderr


VARIANTS = [
    ("--likelihood", "gaussian"),
    ("--likelihood", "gaussian-learned"),
    ("--likelihood", "continuous-bernoulli"),
    ("--arch", "conv"),
    ("--binarize", "dynamic"),
    ("--binarize", "static"),
]


@pytest.mark.parametrize("option, value", VARIANTS, ids=[v for _, v in VARIANTS])
def test_train_variant_and_evaluate_reproduces_summary(capsys, tmp_path, option, value):
    run = tmp_path / "run"
    extra = ("--conv-channels", "4", "8") if value == "conv" else ()
    r = ok(capsys, "train", "--run-dir", run, "--epochs", 1, "--batch-size", 256, option, value, *TINY_MODEL, *extra)
    assert f"run directory: {run}" in r.out
    config = json.loads((run / "config.json").read_text())
    section = "train" if option == "--binarize" else "model"
    assert config[section][option.lstrip("-")] == value
    with open(run / "metrics.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 1

    summary = json.loads((run / "summary.json").read_text())
    assert all(math.isfinite(summary[k]) for k in METRIC_KEYS)
    # Held-out data are binarized with a fixed seed, so evaluate sees the test set training saw.
    result = json.loads(ok(capsys, "evaluate", run, "--json").out)
    for k in METRIC_KEYS:
        assert result[k] == pytest.approx(summary[k], rel=1e-9, abs=1e-12), k


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------


def test_evaluate_json_reproduces_training_summary(capsys, digits_run):
    r = ok(capsys, "evaluate", digits_run.path, "--json")
    result = json.loads(r.out)  # the whole of stdout is one JSON object
    assert isinstance(result, dict) and set(METRIC_KEYS) <= set(result)
    assert r.err == ""
    # Per-example float32 terms summed in float64: elbo = reconstruction - kl up to rounding.
    assert result["elbo"] == pytest.approx(result["reconstruction"] - result["kl"], rel=1e-6)
    assert result["kl"] >= 0
    assert result["bits_per_dim"] == pytest.approx(-result["elbo"] / (64 * math.log(2)), rel=1e-12)
    summary = json.loads((digits_run.path / "summary.json").read_text())
    for k in METRIC_KEYS:
        assert result[k] == pytest.approx(summary[k], rel=1e-9), k
    assert result["n_examples"] == N_TEST


def test_evaluate_human_output(capsys, digits_run):
    out = ok(capsys, "evaluate", digits_run.path).out
    summary = json.loads((digits_run.path / "summary.json").read_text())
    assert f"ELBO {summary['elbo']:.2f}" in out and "bits per dimension" in out and f"{N_TEST} examples" in out
    assert "estimated by sampling" not in out  # N(0, I): the KL is exact
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)
    assert f"{N_TRAIN + N_TEST} examples" in ok(capsys, "evaluate", digits_run.path, "--split", "all").out


def test_load_rebuilds_the_model_evaluate_scores(digits_run, digits_test):
    model = vaekit.load(digits_run.path)
    assert isinstance(model, vaekit.VAE) and model.latent_dim == LATENT_DIM
    summary = json.loads((digits_run.path / "summary.json").read_text())
    assert vaekit.evaluate(model, digits_test)["elbo"] == pytest.approx(summary["elbo"], rel=1e-9)


def test_python_m_vaekit_runs_without_traceback(digits_run, digits_test, tmp_path):
    """The one real process: the entry point works and stdout holds only the JSON.

    The test images go in as a user's .npy (the same figures, since this run does not
    binarize), which spares the process importing scikit-learn: about 2 s of this file.
    """
    np.save(tmp_path / "test.npy", digits_test.numpy())
    p = subprocess.run([sys.executable, "-m", "vaekit", "evaluate", str(digits_run.path), "--json", "--data", "test.npy"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    summary = json.loads((digits_run.path / "summary.json").read_text())
    assert json.loads(p.stdout)["elbo"] == pytest.approx(summary["elbo"], rel=1e-9)


# ---------------------------------------------------------------------------------------------
# sample, reconstruct, encode, interpolate
# ---------------------------------------------------------------------------------------------


def test_sample_png_and_npy(capsys, digits_run, tmp_path):
    r = ok(capsys, "sample", digits_run.path, "-n", 16, "-o", "x.png")
    assert "x.png" in r.out and (tmp_path / "x.png").read_bytes()[:8] == PNG_MAGIC
    ok(capsys, "sample", digits_run.path, "-n", 16, "-o", "x.npy")
    x = load_npy(tmp_path / "x.npy")
    assert x.shape == (16, 1, 8, 8) and np.isfinite(x).all()
    assert x.min() >= 0 and x.max() <= 1  # Bernoulli means
    ok(capsys, "sample", digits_run.path, "-n", 16, "-o", "again.npy")
    ok(capsys, "sample", digits_run.path, "-n", 16, "-o", "other.npy", "--seed", 1)
    np.testing.assert_array_equal(load_npy(tmp_path / "again.npy"), x)  # --seed fixes z
    assert not np.allclose(load_npy(tmp_path / "other.npy"), x)


def test_reconstruct_png_and_npy(capsys, digits_run, digits_test, tmp_path):
    r = ok(capsys, "reconstruct", digits_run.path, "-o", "r.png")
    assert "r.png" in r.out and (tmp_path / "r.png").read_bytes()[:8] == PNG_MAGIC
    ok(capsys, "reconstruct", digits_run.path, "-n", 5, "-o", "r.npy")
    recon = load_npy(tmp_path / "r.npy")
    assert recon.shape == (5, 1, 8, 8) and recon.min() >= 0 and recon.max() <= 1
    expected = vaekit.load(digits_run.path).reconstruct(digits_test[:5]).numpy()
    np.testing.assert_allclose(recon, expected, atol=1e-6)


def test_encode_splits_keep_row_order(capsys, digits_run, digits_test, tmp_path):
    r = ok(capsys, "encode", digits_run.path, "-o", "z.npy")
    assert "z.npy" in r.out and f"({N_TEST}, {LATENT_DIM})" in r.out
    z = load_npy(tmp_path / "z.npy")
    assert z.shape == (N_TEST, LATENT_DIM) and np.isfinite(z).all()
    model = vaekit.load(digits_run.path)
    np.testing.assert_allclose(z[:10], vaekit.encode_means(model, digits_test[:10]).numpy(), atol=1e-6)

    ok(capsys, "encode", digits_run.path, "--split", "all", "-o", "z_all.npy")
    z_all = load_npy(tmp_path / "z_all.npy")
    assert z_all.shape == (N_TRAIN + N_TEST, LATENT_DIM)
    np.testing.assert_allclose(z_all[N_TRAIN:], z, atol=1e-6)  # train rows, then test rows

    # A user's array, in its own order (reversed here), gives the matching rows.
    np.save(tmp_path / "mine.npy", digits_test[:10].numpy()[::-1].copy())
    ok(capsys, "encode", digits_run.path, "--data", "mine.npy", "-o", "z_mine.npy")
    np.testing.assert_allclose(load_npy(tmp_path / "z_mine.npy"), z[:10][::-1], atol=1e-6)


def test_interpolate_png_and_npy(capsys, digits_run, digits_test, tmp_path):
    r = ok(capsys, "interpolate", digits_run.path, "-o", "i.png")
    assert "i.png" in r.out and (tmp_path / "i.png").read_bytes()[:8] == PNG_MAGIC
    r = ok(capsys, "interpolate", digits_run.path, "--pairs", 2, "--steps", 5, "-o", "i.npy")
    path = load_npy(tmp_path / "i.npy")
    assert path.shape == (2 * 5, 1, 8, 8)
    # The ends of each line are the reconstructions of the pair's images, which it names.
    chosen = [int(w.strip(",")) for w in r.out.split("between examples ")[1].split() if w.strip(",").isdigit()]
    assert len(chosen) == len(set(chosen)) == 4
    ends = vaekit.load(digits_run.path).reconstruct(digits_test[chosen]).numpy()
    np.testing.assert_allclose(path[[0, 4, 5, 9]], ends, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, says",
    [
        (("--data", "nosuch"), ("'nosuch'", "unknown dataset")),
        (("--likelihood", "nosuch"), ("--likelihood", "'nosuch'", "invalid choice")),
        (("--arch", "nosuch"), ("--arch", "'nosuch'", "invalid choice")),
        (("--epochs", "0"), ("--epochs", "at least 1")),
    ],
    ids=["dataset", "likelihood", "arch", "epochs"],
)
def test_train_refuses_bad_option(capsys, tmp_path, argv, says):
    refused(capsys, tmp_path, "train", "--run-dir", "run", *argv, *TINY_MODEL, says=says)


def test_usage_errors_are_one_line(capsys, tmp_path, digits_run):
    refused(capsys, tmp_path, says=("required", "COMMAND"))
    refused(capsys, tmp_path, "frobnicate", says=("'frobnicate'", "invalid choice"))
    refused(capsys, tmp_path, "sample", digits_run.path, says=("-o/--output", "required"))


def test_train_refuses_empty_mnist_data_dir(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    refused(capsys, tmp_path, "train", "--data", "mnist", "--data-dir", "empty", "--run-dir", "run", *TINY_MODEL,
            says=("empty", "lacks", "train-images-idx3-ubyte"))


def test_train_refuses_corrupt_mnist_file(capsys, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in datasets.IDX_FILES:
        (folder / f"{name}.gz").write_bytes(b"\x1f\x8b not really gzip" * 10)
    refused(capsys, tmp_path, "train", "--data", "mnist", "--data-dir", folder, "--run-dir", "run", *TINY_MODEL,
            says=(str(folder / "train-images-idx3-ubyte.gz"), "corrupt gzip"))


def _break_run(kind: str, good: Path, bad: Path) -> None:
    """Make ``bad`` a damaged copy of the run directory ``good``."""
    bad.mkdir()
    if kind == "no-config":
        (bad / "notes.txt").write_text("not a run\n")
        return
    weights = (good / "model.safetensors").read_bytes()
    config = (good / "config.json").read_text()
    (bad / "config.json").write_text(config)
    if kind == "garbage-weights":
        (bad / "model.safetensors").write_bytes(bytes(range(256)) * 8)
    elif kind == "truncated-weights":
        (bad / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    elif kind == "other-model":
        info = json.loads(config)
        info["model"]["hidden"] = [48]
        (bad / "config.json").write_text(json.dumps(info))
        (bad / "model.safetensors").write_bytes(weights)
    elif kind == "garbage-config":
        (bad / "config.json").write_text('{"model": ["not", "an", "object"]}')
        (bad / "model.safetensors").write_bytes(weights)
    else:
        assert kind == "no-weights"


@pytest.mark.parametrize(
    "kind, says",
    [
        ("no-config", ("bad", "not a run directory", "config.json")),
        ("no-weights", ("bad", "no weights", "model.safetensors")),
        ("garbage-weights", ("model.safetensors", "unreadable weights")),
        ("truncated-weights", ("model.safetensors", "unreadable weights")),
        ("other-model", ("model.safetensors", "do not fit")),
        ("garbage-config", ("config.json", "unreadable run config")),
    ],
)
def test_evaluate_refuses_a_broken_run(capsys, tmp_path, digits_run, kind, says):
    _break_run(kind, digits_run.path, tmp_path / "bad")
    refused(capsys, tmp_path, "evaluate", "bad", says=says)


def test_evaluate_refuses_a_missing_run(capsys, tmp_path):
    refused(capsys, tmp_path, "evaluate", "nowhere", says=("nowhere", "no such run directory"))


@pytest.mark.parametrize(
    "array, says",
    [
        (np.zeros((5, 1, 9, 9), np.float32), ("bad.npy", "(1, 9, 9)", "(1, 8, 8)")),
        (np.where(np.eye(8, dtype=bool), np.nan, 0.5).astype(np.float32).reshape(1, 1, 8, 8).repeat(5, 0),
         ("bad.npy", "NaN")),
        (np.linspace(0, 5, 5 * 64, dtype=np.float32).reshape(5, 1, 8, 8), ("bad.npy", "outside [0, 1]", "bernoulli")),
    ],
    ids=["wrong-size", "nan", "outside-support"],
)
@pytest.mark.parametrize("command", ["encode", "evaluate", "reconstruct"])
def test_refuses_bad_user_array(capsys, tmp_path, digits_run, array, says, command):
    np.save(tmp_path / "bad.npy", array)
    output = () if command == "evaluate" else ("-o", "out.npy")
    refused(capsys, tmp_path, command, digits_run.path, "--data", "bad.npy", *output, says=says)


def test_train_refuses_existing_run(capsys, tmp_path, digits_run):
    shutil.copytree(digits_run.path, tmp_path / "run")
    refused(capsys, tmp_path, "train", "--run-dir", "run", "--epochs", 1, *TINY_MODEL,
            says=("run", "already holds a run"))


@pytest.mark.parametrize(
    "command, output, says",
    [
        ("sample", "out.txt", ("out.txt", "unknown output type", ".txt")),
        ("sample", "/nonexistent/dir/x.png", ("/nonexistent/dir", "does not exist")),
        ("sample", "nonexistent/dir/x.png", ("nonexistent/dir", "does not exist")),
        ("reconstruct", "out", ("out", "unknown output type")),
        ("encode", "z.png", ("z.png", "unknown output type", ".npy")),
        ("interpolate", "nonexistent/i.npy", ("nonexistent", "does not exist")),
    ],
)
def test_refuses_bad_output_path(capsys, tmp_path, digits_run, command, output, says):
    refused(capsys, tmp_path, command, digits_run.path, "-o", output, says=says)


# ---------------------------------------------------------------------------------------------
# Keep last: every command must have been run end to end above.
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# evaluate: log-likelihood, gap, active units, probe; the baselines through the same commands
# ---------------------------------------------------------------------------------------------


def test_evaluate_importance_sampling_gap_units_probe(capsys, digits_run, digits_test, tmp_path):
    r = json.loads(ok(capsys, "evaluate", digits_run.path, "--json", "--n-importance", 50, "--n-examples", 40).out)
    assert r["n_examples"] == 40 and r["n_importance"] == 50
    # log p(x) >= ELBO in expectation; with K = 50 the estimate is above the ELBO here
    assert r["log_likelihood"] > r["elbo"]
    assert r["gap"] == pytest.approx(r["log_likelihood"] - r["elbo"], rel=1e-12)
    assert r["log_likelihood_bits_per_dim"] == pytest.approx(-r["log_likelihood"] / (64 * math.log(2)))
    # Active units where the answer is known: copies of the run whose encoder-mean rows are scaled
    # so that, over the 200 examples evaluated, each unit's variance is a chosen number. Active
    # means a variance above 0.01 (Burda et al. 2015), so 0 (x ignored) and 0.002 (whose standard
    # deviation is above 0.01) are inactive; 0.05 and 1 are active.
    from safetensors.torch import save_file

    x = digits_test[:200]
    gen = torch.Generator().manual_seed(0)
    for i, variances in enumerate(((1.0, 0.0, 0.05, 0.002), (0.002, 1.0, 1.0, 0.05))):
        known = tmp_path / f"known-{i}"
        shutil.copytree(digits_run.path, known)
        model = vaekit.load(known)
        target = torch.tensor(variances)
        with torch.no_grad():
            w = model.encoder.loc_head.weight  # (latent units, hidden): unit u's mean is w[u] . h(x) + bias
            w.copy_(torch.randn(w.shape, generator=gen))
            w.mul_((target / model.encode(x).mean.var(0)).sqrt()[:, None])
            torch.testing.assert_close(model.encode(x).mean.var(0), target, rtol=1e-3, atol=1e-9)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(known / "model.safetensors"))
        got = json.loads(ok(capsys, "evaluate", known, "--json", "--no-probe", "--n-examples", 200).out)
        assert got["active_units"] == int((target > 0.01).sum()), (variances, got["active_units"])
    assert 0.1 < r["probe_accuracy"] <= 1.0  # ten classes: chance is 0.1
    again = json.loads(ok(capsys, "evaluate", digits_run.path, "--json", "--n-importance", 50, "--n-examples", 40,
                          "--chunk-size", 7, "--no-probe").out)
    assert again["probe_accuracy"] is None
    assert again["log_likelihood"] == pytest.approx(r["log_likelihood"], abs=0.5)  # other chunks, other noise
    out = ok(capsys, "evaluate", digits_run.path, "--n-importance", 20, "--n-examples", 10).out
    assert "K=20 importance samples" in out and "gap" in out and "active units" in out


@pytest.mark.parametrize("model", ["ae", "pca"])
def test_baselines_train_and_evaluate_through_the_same_commands(capsys, tmp_path, model):
    run = tmp_path / model
    r = ok(capsys, "train", "--model", model, "--run-dir", run, "--epochs", 2, *TINY_MODEL)
    assert f"run directory: {run}" in r.out and "squared reconstruction error" in r.out
    summary = json.loads((run / "summary.json").read_text())
    result = json.loads(ok(capsys, "evaluate", run, "--json").out)
    assert result["reconstruction_error"] == pytest.approx(summary["reconstruction_error"], rel=1e-9)
    assert "elbo" not in result  # neither baseline has a bound on log p(x)
    if model == "pca":
        assert "log_likelihood" in result and "bits_per_dim" in result  # exact, as probabilistic PCA
    assert 0.1 < result["probe_accuracy"] <= 1  # codes that carry the digit, for both baselines
    z = tmp_path / "z.npy"
    ok(capsys, "encode", run, "-o", z)
    assert load_npy(z).shape == (N_TEST, LATENT_DIM)
    ok(capsys, "sample", run, "-n", 4, "-o", tmp_path / "s.npy")
    refused(capsys, tmp_path, "evaluate", run, "--n-importance", 10, says=("--n-importance", model))


def test_score_writes_one_score_per_example_in_order(capsys, digits_run, tmp_path):
    out = tmp_path / "scores.csv"
    r = ok(capsys, "score", digits_run.path, "-o", out, "--n-samples", 3)
    assert "most unusual rows" in r.out
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["index", "score"] and len(rows) == 1 + N_TEST
    assert [int(r[0]) for r in rows[1:]] == list(range(N_TEST))
    npy = tmp_path / "scores.npy"
    ok(capsys, "score", digits_run.path, "-o", npy, "--method", "iw", "--n-samples", 5)
    iw = load_npy(npy)[:, 0]
    elbo = np.array([float(r[1]) for r in rows[1:]])
    assert iw.shape == (N_TEST,) and np.isfinite(iw).all()
    # -log p(x) estimated by importance sampling sits below -ELBO on average
    assert iw.mean() < elbo.mean()
    refused(capsys, tmp_path, "score", digits_run.path, "-o", tmp_path / "s.txt", says=("s.txt", "unknown output type"))


def test_every_command_has_an_end_to_end_test(capsys, tmp_path):
    """Every command of ``vaekit.cli.COMMANDS`` runs to success here, on a run this test trains
    itself: whatever other tests were selected, and in whatever order. A new command fails this
    test until it is given a case below."""
    run = tmp_path / "run"
    cases = {
        "train": (("--data", "digits", "--run-dir", run, "--epochs", 1, *TINY_MODEL), run / "model.safetensors"),
        "evaluate": ((run, "--json", "--no-probe", "--n-examples", 20), None),
        "sample": ((run, "-n", 4, "-o", tmp_path / "s.npy"), tmp_path / "s.npy"),
        "reconstruct": ((run, "-n", 4, "-o", tmp_path / "r.npy"), tmp_path / "r.npy"),
        "encode": ((run, "-o", tmp_path / "z.npy"), tmp_path / "z.npy"),
        "score": ((run, "-o", tmp_path / "scores.csv", "--n-samples", 2), tmp_path / "scores.csv"),
        "interpolate": ((run, "--pairs", 1, "--steps", 3, "-o", tmp_path / "i.npy"), tmp_path / "i.npy"),
        "plot": ((run, "--kind", "samples", "-n", 4, "-o", tmp_path / "p.png"), tmp_path / "p.png"),
        "report": ((run, "--no-figures", "-o", tmp_path / "r.html"), tmp_path / "r.html"),
        "serve": ((run, "--port", 0), None),  # in a process of its own, stopped by Ctrl-C once it answers
        "export": ((run, "--format", "onnx", "-o", tmp_path / "onnx"), tmp_path / "onnx" / "encoder.onnx"),
    }
    assert set(COMMANDS) <= set(cases), f"commands with no end-to-end case here: {sorted(set(COMMANDS) - set(cases))}"
    assert set(cases) <= set(COMMANDS), f"cases for commands that no longer exist: {sorted(set(cases) - set(COMMANDS))}"
    out = {}
    for command in ["train", *sorted(set(cases) - {"train"})]:  # train first: the others read its run
        argv, writes = cases[command]
        out[command] = _serve_until_it_answers(*argv) if command == "serve" else ok(capsys, command, *argv).out
        if writes is not None:
            assert writes.is_file() and writes.stat().st_size > 0, (command, writes)
    assert json.loads(out["evaluate"])["n_examples"] == 20
    assert load_npy(tmp_path / "s.npy").shape == (4, 1, 8, 8)
    assert load_npy(tmp_path / "r.npy").shape == (4, 1, 8, 8)
    assert load_npy(tmp_path / "z.npy").shape == (N_TEST, LATENT_DIM)
    assert load_npy(tmp_path / "i.npy").shape == (3, 1, 8, 8)
    assert out["plot"].strip() == str(tmp_path / "p.png")
    assert len(list(csv.reader((tmp_path / "scores.csv").open()))) == 1 + N_TEST
    assert json.loads(out["serve"])["latent_dim"] == LATENT_DIM


def _serve_until_it_answers(*argv: object) -> str:
    """``vaekit serve`` in a process of its own: what its page info says once it answers; then
    Ctrl-C stops it, and it must exit with status 0."""
    import re
    import signal
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "vaekit", "serve", *map(str, argv)], stderr=subprocess.PIPE, text=True)
    try:
        said = ""
        while not (url := re.search(r"http://[^/\s]+/", said)):
            line = proc.stderr.readline()
            assert line, f"vaekit serve ended before it listened: {said}"
            said += line
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
        with opener.open(url.group(0) + "info", timeout=60) as r:
            info = r.read().decode()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, proc.stderr.read()
        assert "stopped serving" in proc.stderr.read()
        return info
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
