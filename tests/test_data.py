"""Users' own data end to end: tables, arrays, image folders; the transform a run remembers;
memmapped arrays read a batch at a time; anomaly scores."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit import ModelConfig, TrainConfig, fit, load_run, prepare_data
from vaekit.cli import main
from vaekit.data.prepare import Standardize, load_labelled_split
from vaekit.evaluation.embed import encode_means
from vaekit.models import build_model
from vaekit.evaluation.scores import anomaly_scores

TINY = ["--hidden", "16", "--latent-dim", "2", "--device", "cpu", "--batch-size", "32"]


def _run(capsys, *argv):
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _table(path: Path, n=200, seed=0, columns=("height", "weight", "age"), outlier=False):
    """A correlated 3-column table with a string label column."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 1))
    x = np.hstack([170 + 10 * z, 70 + 8 * z + rng.normal(size=(n, 1)), 40 + 5 * rng.normal(size=(n, 1))])
    if outlier:
        x[17] = [120.0, 140.0, 40.0]  # short and very heavy: against the correlation
    labels = np.where(z[:, 0] > 0, "tall", "short")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*columns, "kind"])
        for row, lab in zip(x, labels):
            w.writerow([*(f"{v:.4f}" for v in row), lab])
    return x, labels


def test_table_round_trip_remembers_its_transform(capsys, tmp_path):
    x, labels = _table(tmp_path / "people.csv")
    run = tmp_path / "run"
    code, out, err = _run(capsys, "train", "--data", tmp_path / "people.csv", "--label-column", "kind",
                          "--epochs", 2, "--run-dir", run, *TINY)
    assert code == 0, err
    assert "likelihood: gaussian-lowrank (chosen for a table)" in out
    info = json.loads((run / "config.json").read_text())
    data = info["data"]
    assert data["kind"] == "table" and data["columns"] == ["height", "weight", "age"] and data["shape"] == [3]
    assert data["classes"] == ["short", "tall"] and data["test_split"] == "val"
    assert data["split_seed"] == 0 and data["n_val"] == 20 and data["n_train"] == 180
    # the standardization was fitted on the training split only
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(0))
    train_rows = torch.tensor(x[perm[20:].numpy()], dtype=torch.float64)
    np.testing.assert_allclose(data["transform"]["mean"], train_rows.mean(0).numpy(), rtol=1e-5)
    np.testing.assert_allclose(data["transform"]["std"], train_rows.std(0, unbiased=False).numpy(), rtol=1e-4)
    # evaluate without --data reproduces the summary on the held-out rows
    summary = json.loads((run / "summary.json").read_text())
    code, out, err = _run(capsys, "evaluate", run, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["split"] == "val" and result["elbo"] == pytest.approx(summary["elbo"], rel=1e-9)
    assert result["probe_accuracy"] is not None
    # encode a new file: same transform, rows in order, csv with a header
    new = tmp_path / "new.csv"
    x_new, _ = _table(new, n=7, seed=5)
    code, out, err = _run(capsys, "encode", run, "--data", new, "-o", tmp_path / "z.csv", "--with-scale")
    assert code == 0, err
    with open(tmp_path / "z.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["loc_0", "loc_1", "scale_0", "scale_1"] and len(rows) == 8
    loaded = load_run(run)
    std = Standardize(torch.tensor(data["transform"]["mean"]), torch.tensor(data["transform"]["std"]))
    expect = encode_means(loaded.model, std(torch.tensor(np.round(x_new, 4), dtype=torch.float32)))  # as written
    np.testing.assert_allclose(np.array(rows[1:], dtype=float)[:, :2], expect.numpy(), rtol=1e-5, atol=1e-6)


def test_table_with_other_columns_is_refused(capsys, tmp_path):
    _table(tmp_path / "people.csv")
    run = tmp_path / "run"
    assert _run(capsys, "train", "--data", tmp_path / "people.csv", "--label-column", "kind", "--epochs", 1,
                "--run-dir", run, *TINY)[0] == 0
    _table(tmp_path / "other.csv", columns=("height", "weight", "income"))
    out = tmp_path / "z.npy"
    code, _, err = _run(capsys, "encode", run, "--data", tmp_path / "other.csv", "-o", out)
    assert code == 2 and "other.csv" in err and "columns" in err and "income" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_bernoulli_refuses_a_table_and_suggests_gaussian(capsys, tmp_path):
    _table(tmp_path / "people.csv")
    code, out, err = _run(capsys, "train", "--data", tmp_path / "people.csv", "--label-column", "kind",
                          "--likelihood", "bernoulli", "--run-dir", tmp_path / "run", *TINY)
    assert code == 2 and "outside [0, 1]" in err and "gaussian" in err
    assert not (tmp_path / "run").exists()


def test_anomaly_scores_rank_an_injected_outlier_first(tmp_path):
    _table(tmp_path / "t.csv", n=400, outlier=True)
    cfg = TrainConfig(data=str(tmp_path / "t.csv"), label_column="kind", epochs=150, batch_size=64, lr=3e-3,
                      val_fraction=0.1)
    splits = prepare_data(cfg)
    torch.manual_seed(0)
    model = build_model(ModelConfig(data_shape=(3,), latent_dim=1, hidden=(16,), likelihood="gaussian-learned"))
    fit(model, splits.train, None, cfg, progress=False)
    x, _ = load_labelled_split(cfg, data=str(tmp_path / "t.csv"), data_info=splits.info)
    for method in ("elbo", "iw"):
        scores = anomaly_scores(model, x, method=method, n_samples=20)
        assert int(torch.argmax(scores)) == 17, method


def test_memmapped_array_is_trained_a_batch_at_a_time(tmp_path):
    rng = np.random.default_rng(0)
    arr = (rng.random((300, 1, 6, 6)) < 0.3).astype(np.float32)
    np.save(tmp_path / "big.npy", arr)
    cfg = TrainConfig(data=str(tmp_path / "big.npy"), memmap=True, epochs=2, batch_size=32)
    splits = prepare_data(cfg)
    assert not isinstance(splits.train.x, torch.Tensor), "a memmapped file must stay lazy"
    source = splits.train.x
    while not hasattr(source, "largest_read"):
        source = source.source
    torch.manual_seed(0)
    model = build_model(ModelConfig(data_shape=(1, 6, 6), latent_dim=2, hidden=(16,), likelihood="bernoulli"))
    before = source.rows_read
    fit(model, splits.train, None, cfg, progress=False)
    assert source.rows_read - before == 2 * splits.info["n_train"]  # every row once per epoch
    assert source.largest_read <= 4096  # batches and streamed statistics, never the whole file
    fresh = prepare_data(cfg)
    src = fresh.train.x
    while not hasattr(src, "largest_read"):
        src = src.source
    fit(model, fresh.train, None, TrainConfig(epochs=1, batch_size=32), progress=False)
    assert src.largest_read == 32


def test_image_folder_with_class_subfolders_trains_and_probes(capsys, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, level in (("dark", 40), ("light", 210)):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(12):
            img = np.clip(level + rng.normal(0, 20, (9, 9)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / "imgs" / cls / f"{i}.png")
    run = tmp_path / "run"
    code, out, err = _run(capsys, "train", "--data", tmp_path / "imgs", "--epochs", 2, "--run-dir", run,
                          "--val-fraction", "0.25", *TINY)
    assert code == 0, err
    assert "likelihood: bernoulli (chosen for images in [0, 1])" in out
    data = json.loads((run / "config.json").read_text())["data"]
    assert data["kind"] == "image" and data["shape"] == [1, 9, 9] and data["classes"] == ["dark", "light"]
    code, out, err = _run(capsys, "score", run, "-o", tmp_path / "s.csv")
    assert code == 0, err
    assert "most unusual rows" in out, out
    with open(tmp_path / "s.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["index", "score"] and len(rows) == 1 + 24  # every image of the folder, the default
    code, out, err = _run(capsys, "score", run, "--split", "test", "-o", tmp_path / "s.csv")
    assert code == 0, err
    with open(tmp_path / "s.csv") as f:
        assert len(list(csv.reader(f))) == 1 + 6  # the held-out quarter
