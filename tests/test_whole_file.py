"""``encode``, ``score`` and ``reconstruct`` of a run on the user's own file: every row of it by
default, in the file's order; ``--id-column`` carried into the output; table columns matched by
name in any order; image folders that hold other files say so.

Runs are tiny (a few dozen rows, one epoch) and made in ``tmp_path``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import ok, refused, vaekit_cli

from vaekit.data.prepare import holdout_split, transform_from_dict
from vaekit.evaluation.embed import encode_means
from vaekit.runs import load_run

TINY = ("--epochs", "1", "--hidden", "8", "--latent-dim", "2", "--device", "cpu")
N = 24
FEATURES = ["a", "b", "c"]
# ids that are not numbers as written: leading zeros and a comma must come back as they are
IDS = [f"0{i:02d}" if i % 5 else f"row, {i}" for i in range(N)]


def rows(seed: int = 0) -> np.ndarray:
    """N distinct rows of 3 features."""
    return np.random.default_rng(seed).normal(size=(N, len(FEATURES))) + np.arange(N)[:, None] * 0.1


def write_csv(path: Path, x: np.ndarray, columns: list[str], *, ids: list[str] | None = None) -> Path:
    """``x`` under ``columns`` (features by name, ``id`` where the ids go, 1 in any other column),
    quoted as CSV needs."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for i, row in enumerate(x):
            values = dict(zip(FEATURES, (f"{v:.6g}" for v in row)), id=ids[i] if ids else "")
            w.writerow([values.get(c, "1") for c in columns])
    return path


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    return table[0], table[1:]


@pytest.fixture()
def table_run(tmp_path, capsys, monkeypatch) -> Path:
    """A run on t.csv (an id column first, then a, b, c), a quarter of it held out."""
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "t.csv", rows(), ["id", *FEATURES], ids=IDS)
    ok(capsys, "train", "--data", "t.csv", "--id-column", "id", "--run-dir", "run", "--val-fraction", "0.25", *TINY)
    return tmp_path / "run"


def each_row_encoded(run_dir: Path, x: np.ndarray) -> np.ndarray:
    """The latent means of ``x``'s rows one at a time, standardized as the run recorded."""
    run = load_run(run_dir)
    standardize = transform_from_dict(run.info["data"]["transform"])
    rows_t = standardize(torch.tensor(x, dtype=torch.float32))
    return np.concatenate([encode_means(run.model, rows_t[i : i + 1]).numpy() for i in range(len(x))])


def test_train_records_the_id_column_out_of_the_features(table_run):
    config = json.loads((table_run / "config.json").read_text())
    assert config["train"]["id_column"] == "id"
    assert config["data"]["columns"] == FEATURES and config["model"]["data_shape"] == [3]


def test_encode_defaults_to_every_row_in_the_files_order(capsys, table_run):
    ok(capsys, "encode", "run", "-o", "z.npy")
    z = np.load("z.npy")
    assert z.shape == (N, 2)
    np.testing.assert_allclose(z, each_row_encoded(table_run, rows()), rtol=1e-5, atol=1e-6)

    # --split test: the held-out quarter, the rows training held out
    ok(capsys, "encode", "run", "--split", "test", "-o", "held.npy")
    _, val_idx = holdout_split(N, N // 4, 0)
    np.testing.assert_allclose(np.load("held.npy"), z[val_idx.numpy()], rtol=1e-5, atol=1e-6)


def test_score_and_reconstruct_default_to_every_row(capsys, table_run):
    r = ok(capsys, "score", "run", "-o", "s.npy", "--n-samples", "3")
    assert f"{N} scores" in r.out
    ok(capsys, "score", "run", "--data", "t.csv", "-o", "s_file.npy", "--n-samples", "3")
    s = np.load("s.npy")
    assert s.shape == (N, 1)
    np.testing.assert_allclose(s, np.load("s_file.npy"), rtol=1e-6)  # the file whole, in order

    ok(capsys, "reconstruct", "run", "-n", str(N), "-o", "r.npy")
    ok(capsys, "reconstruct", "run", "--data", "t.csv", "-n", str(N), "-o", "r_file.npy")
    assert np.load("r.npy").shape == (N, 3)
    np.testing.assert_allclose(np.load("r.npy"), np.load("r_file.npy"), rtol=1e-6)


def test_id_column_is_carried_into_encode_and_score(capsys, table_run):
    ok(capsys, "encode", "run", "--id-column", "id", "-o", "z.csv")
    header, table = read_csv(Path("z.csv"))
    assert header == ["id", "loc_0", "loc_1"]
    assert [r[0] for r in table] == IDS
    z = np.array([r[1:] for r in table], dtype=np.float64)
    np.testing.assert_allclose(z, each_row_encoded(table_run, rows()), rtol=1e-5, atol=1e-6)

    r = ok(capsys, "score", "run", "--id-column", "id", "-o", "s.csv", "--n-samples", "2")
    header, table = read_csv(Path("s.csv"))
    assert header == ["id", "index", "score"]
    assert [r[0] for r in table] == IDS and [int(r[1]) for r in table] == list(range(N))
    top = max(table, key=lambda r: float(r[2]))[0]
    assert r.out.split("most unusual rows: ")[1].startswith(f"{top} (")


def test_id_column_refusals(capsys, tmp_path, table_run):
    refused(capsys, tmp_path, "encode", "run", "--id-column", "name", "-o", "z.csv",
            says=("t.csv", "no column 'name'", "id, a, b, c"))
    refused(capsys, tmp_path, "score", "run", "--id-column", "id", "-o", "s.npy",
            says=("--id-column id", "s.npy", ".csv"))
    np.save(tmp_path / "x.npy", rows().astype(np.float32))
    refused(capsys, tmp_path, "encode", "run", "--data", "x.npy", "--id-column", "id", "-o", "z.csv",
            says=("x.npy", "--id-column", ".csv and .tsv"))


def test_id_column_that_was_a_feature_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "t.csv", rows(), ["a", "b", "c"])
    ok(capsys, "train", "--data", "t.csv", "--run-dir", "run", *TINY)
    refused(capsys, tmp_path, "encode", "run", "--id-column", "c", "-o", "z.csv",
            says=("--id-column c", "as a feature", "train with --id-column c"))


def test_columns_in_another_order_give_the_same_encodings(capsys, tmp_path, table_run):
    ok(capsys, "encode", "run", "--data", "t.csv", "-o", "z.npy")
    write_csv(tmp_path / "shuffled.csv", rows(), ["c", "id", "a", "b"], ids=IDS)
    ok(capsys, "encode", "run", "--data", "shuffled.csv", "-o", "zs.npy")
    np.testing.assert_allclose(np.load("zs.npy"), np.load("z.npy"), rtol=1e-6, atol=1e-7)
    result = json.loads(ok(capsys, "evaluate", "run", "--data", "shuffled.csv", "--json").out)
    assert result["n_examples"] == N


@pytest.mark.parametrize("command", ["encode", "score", "evaluate"])
@pytest.mark.parametrize("columns, says", [
    (["id", "a", "c"], ("missing 'b'", "shape (2,)")),
    (["id", "a", "b", "c", "d"], ("extra 'd'", "shape (4,)")),
    (["id", "a", "b", "z"], ("missing 'c'", "extra 'z'")),
])
def test_missing_or_extra_columns_are_refused_in_one_line(capsys, tmp_path, table_run, command, columns, says):
    write_csv(tmp_path / "new.csv", rows(), columns, ids=IDS)
    output = {"encode": ["-o", "z.csv"], "score": ["-o", "s.csv"], "evaluate": []}[command]
    refused(capsys, tmp_path, command, "run", "--data", "new.csv", *output,
            says=("new.csv", "differ from the training columns a, b, c", *says))


def test_builtin_dataset_keeps_its_test_split(capsys, tmp_path, monkeypatch):
    from vaekit.data.builtin import load_dataset

    monkeypatch.chdir(tmp_path)
    ok(capsys, "train", "--data", "digits", "--run-dir", "run", *TINY)
    ok(capsys, "encode", "run", "-o", "z.npy")
    assert len(np.load("z.npy")) == len(load_dataset("digits").test)


def test_image_folder_reports_a_skipped_file(capsys, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8), mode="L").save(tmp_path / "imgs" / f"{i}.png")
    (tmp_path / "imgs" / "readme.txt").write_text("not an image")
    r = vaekit_cli(capsys, "train", "--data", "imgs", "--run-dir", "run", *TINY)
    assert r.code == 0, r.err
    warned = [line for line in r.err.splitlines() if "warning" in line]
    assert warned == ["vaekit: warning: imgs: skipped 1 file that is not a PNG or JPEG image: readme.txt"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["skipped_files"] == 1
    # the whole folder by default, with the same one line
    r = vaekit_cli(capsys, "encode", "run", "-o", "z.npy")
    assert r.code == 0 and "skipped 1 file" in r.err and "readme.txt" in r.err
    assert np.load(tmp_path / "z.npy").shape == (6, 2)


def test_many_skipped_files_are_counted_and_the_first_three_named(tmp_path):
    from PIL import Image

    from vaekit.data.files import load_file
    from vaekit.errors import VaekitWarning

    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    Image.fromarray(np.zeros((3, 3), dtype=np.uint8), mode="L").save(tmp_path / "imgs" / "x.png")
    for name in ("e.csv", "b.txt", "sub/a.gif", "d.json", "c.md"):
        (tmp_path / "imgs" / name).write_text("not a PNG or JPEG")
    with pytest.warns(VaekitWarning) as caught:
        ds = load_file(tmp_path / "imgs")
    assert len(caught) == 1
    assert str(caught[0].message).endswith("skipped 5 files that are not PNG or JPEG images: b.txt, c.md, d.json, ...")
    assert ds.skipped == ["b.txt", "c.md", "d.json", "e.csv", "sub/a.gif"] and len(ds.train) == 1
