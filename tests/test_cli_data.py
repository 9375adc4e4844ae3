"""End-to-end tests of ``vaekit`` on users' own data: .npy/.npz arrays, CSV/TSV tables,
folders of images, and IDX files given with ``--data-dir``.

Commands run in-process through ``vaekit.cli.main`` on tiny files made in ``tmp_path``.

The contract for bad input: exit status 2, nothing on stdout, exactly one line on stderr
(``vaekit: error: ...``) that names the file (and the row and column where they apply) and the
problem, no traceback, and nothing written: no run directory, no output file, no temporary file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from cli_helpers import ok, refused

from vaekit.data import builtin as datasets
from vaekit.cli import main

# Small enough that every run here trains in a fraction of a second.
TINY = ("--epochs", "1", "--hidden", "8", "--latent-dim", "2", "--device", "cpu")
LATENT_DIM = 2
N_TABLE, N_IMAGES = 40, 40


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def train_quietly(*argv: object) -> str:
    """``vaekit train`` for a module-scoped fixture (capsys is function-scoped); returns stdout."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["train", *(str(a) for a in argv)])
    assert code == 0, err.getvalue()
    return out.getvalue()


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=np.float64)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in a fresh folder, away from the user's data and cache, with no MNIST or
    Fashion-MNIST mirror that could be reached."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))
    nowhere = [(tmp_path / "no-mirror").as_uri() + "/"]
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", nowhere)
    monkeypatch.setattr(datasets, "FASHION_MNIST_MIRRORS", nowhere)
    return tmp_path


# ---------------------------------------------------------------------------------------------
# Tiny files
# ---------------------------------------------------------------------------------------------


def write_table(path: Path, x: np.ndarray, labels: np.ndarray | None, *, names: list[str] | None,
                delimiter: str = ",", label_first: bool = False) -> Path:
    """A table of ``x`` (N, D) with an optional label column (last, or first), header optional."""
    lines = []
    if names is not None:
        lines.append(delimiter.join(names))
    for i, row in enumerate(x):
        cells = [f"{v:.6g}" for v in row]
        if labels is not None:
            cells = [str(labels[i])] + cells if label_first else cells + [str(labels[i])]
        lines.append(delimiter.join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def table_data(n: int = N_TABLE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two well-separated classes in 4 dimensions, real-valued."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 4)) + 4.0 * y[:, None]
    return x, y


def images(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """(n, 1, h, w) float32 grey levels in [0, 1]."""
    return np.random.default_rng(seed).uniform(size=(n, 1, h, w)).astype(np.float32)


def write_png(path: Path, h: int, w: int, seed: int = 0) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(h, w), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(path)
    return path


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX bytes of a uint8 array: magic 0x0000080N (N = ndim), big-endian dims, the data."""
    header = (0x800 | array.ndim).to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, *, gz: bool = False) -> Path:
    """A tiny but well-formed set of the four MNIST-format files (4 train, 2 test images)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.array([0, 1, 2, 3], dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(2, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([4, 5], dtype=np.uint8),
    }
    for name, a in arrays.items():
        data = idx_bytes(a)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


# ---------------------------------------------------------------------------------------------
# train refuses bad input, and writes nothing
# ---------------------------------------------------------------------------------------------


def _missing(d: Path):
    return ["--data", d / "nope.csv"], ("nope.csv", "no such file")


def _missing_no_suffix(d: Path):
    return ["--data", d / "nope"], ("nope", "no such file")


def _empty_csv(d: Path):
    (d / "empty.csv").write_text("")
    return ["--data", d / "empty.csv"], ("empty.csv", "empty file")


def _blank_csv(d: Path):
    (d / "blank.csv").write_text("\n  \n\n")
    return ["--data", d / "blank.csv"], ("blank.csv", "empty file")


def _empty_npy(d: Path):
    (d / "empty.npy").write_bytes(b"")
    return ["--data", d / "empty.npy"], ("empty.npy", "empty file")


def _empty_npz(d: Path):
    (d / "empty.npz").write_bytes(b"")
    return ["--data", d / "empty.npz"], ("empty.npz", "empty file")


def _idx_truncated(d: Path):
    folder = write_idx_set(d / "mnist")
    f = folder / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    return ["--data", "mnist", "--data-dir", folder], ("train-images-idx3-ubyte", "truncated IDX file")


def _idx_truncated_header(d: Path):
    folder = write_idx_set(d / "mnist")
    f = folder / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:10])  # the magic and a dimension and a half: 16 bytes needed
    return ["--data", "mnist", "--data-dir", folder], ("train-images-idx3-ubyte", "truncated IDX file",
                                                       "needs 16 bytes, found 10")


def _idx_wrong_magic(d: Path):
    folder = write_idx_set(d / "mnist")
    f = folder / "train-images-idx3-ubyte"
    # the labels' magic (1 dimension) where the images' (3 dimensions) belongs: a mixed-up file
    f.write_bytes((0x801).to_bytes(4, "big") + f.read_bytes()[4:])
    return ["--data", "mnist", "--data-dir", folder], ("train-images-idx3-ubyte", "magic number 0x00000801",
                                                       "expected 0x00000803")


def _idx_checksum(d: Path):
    folder = write_idx_set(d / "mnist")  # well formed, but not MNIST's bytes
    return ["--data", "mnist", "--data-dir", folder], ("train-images-idx3-ubyte", "SHA-256 mismatch")


def _idx_checksum_gz(d: Path):
    folder = write_idx_set(d / "mnist", gz=True)
    return ["--data", "mnist", "--data-dir", folder], ("train-images-idx3-ubyte.gz", "SHA-256 mismatch")


def _idx_bad_gzip(d: Path):
    folder = write_idx_set(d / "mnist", gz=True)
    f = folder / "train-images-idx3-ubyte.gz"  # the first file read
    f.write_bytes(f.read_bytes()[:12])
    return ["--data", "mnist", "--data-dir", folder], ("train-images-idx3-ubyte.gz", "corrupt gzip file")


def _idx_fashion_shape(d: Path):
    # Fashion-MNIST has no digests yet: a well-formed file of the wrong size is caught by shape.
    folder = write_idx_set(d / "fashion")
    return ["--data", "fashion-mnist", "--data-dir", folder], ("train-images-idx3-ubyte", "shape (4, 28, 28)",
                                                               "(60000, 28, 28)")


def _csv_text(d: Path):
    (d / "text.csv").write_text("a,b,c\n1,2,3\n4,five,6\n7,8,9\n")
    return ["--data", d / "text.csv"], ("text.csv", "row 3", "column 'b'", "'five' is not a number")


def _csv_text_no_header(d: Path):
    (d / "text.csv").write_text("1,2,3\n4,5,6\n7,8,x\n")
    return ["--data", d / "text.csv"], ("text.csv", "row 3", "column 'col2'", "'x' is not a number")


def _csv_semicolons(d: Path):
    (d / "semi.csv").write_text("a,b\n1,2\n3;4,5\n")
    return ["--data", d / "semi.csv"], ("semi.csv", "row 3", "column 'a'", "separated by ';'")


def _csv_nan(d: Path):
    (d / "nan.csv").write_text("a,b\n1,2\n3,4\nNaN,6\n")
    return ["--data", d / "nan.csv"], ("nan.csv", "row 4", "column 'a'", "missing value")


def _csv_empty_cell(d: Path):
    (d / "hole.csv").write_text("a,b\n1,2\n3,\n5,6\n")
    return ["--data", d / "hole.csv"], ("hole.csv", "row 3", "column 'b'", "missing value")


def _csv_inf(d: Path):
    (d / "inf.csv").write_text("a,b\n1,2\n3,inf\n")
    return ["--data", d / "inf.csv"], ("inf.csv", "row 3", "column 'b'", "'inf' is infinite")


def _csv_too_large(d: Path):
    (d / "big.csv").write_text("a,b\n1,2\n3,1e300\n")
    return ["--data", d / "big.csv"], ("big.csv", "row 3", "column 'b'", "too large for float32")


def _csv_ragged(d: Path):
    (d / "ragged.csv").write_text("a,b,c\n1,2,3\n\n4,5\n6,7,8\n")  # line 4: the blank line counts
    return ["--data", d / "ragged.csv"], ("ragged.csv", "row 4", "has 2 fields, expected 3")


def _csv_quoted_ragged(d: Path):
    (d / "ragged.csv").write_text('a,b\n"1",2\n3,4,"5"\n')  # quotes: the csv module's path
    return ["--data", d / "ragged.csv"], ("ragged.csv", "row 3", "has 3 fields, expected 2")


def _tsv_text(d: Path):
    (d / "t.tsv").write_text("a\tb\n1\t2\n3\tcat\n")
    return ["--data", d / "t.tsv"], ("t.tsv", "row 3", "column 'b'", "'cat' is not a number")


def _images_mixed_sizes(d: Path):
    write_png(d / "imgs" / "a.png", 6, 6)
    write_png(d / "imgs" / "b.png", 8, 5, seed=1)
    return ["--data", d / "imgs"], ("imgs", "images differ in size", "a.png is 6x6", "b.png is 8x5", "--image-size")


def _images_none(d: Path):
    (d / "imgs").mkdir()
    (d / "imgs" / "notes.txt").write_text("no pictures here\n")
    return ["--data", d / "imgs"], ("imgs", "no PNG or JPEG images found", "notes.txt")


def _images_empty_folder(d: Path):
    (d / "imgs").mkdir()
    return ["--data", d / "imgs"], ("imgs", "no PNG or JPEG images found")


def _images_corrupt(d: Path):
    write_png(d / "imgs" / "a.png", 6, 6)
    (d / "imgs" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    return ["--data", d / "imgs"], ("b.png", "cannot read image")


def _npy_strings(d: Path):
    np.save(d / "s.npy", np.array([["a", "b"], ["c", "d"]]), allow_pickle=False)
    return ["--data", d / "s.npy"], ("s.npy", "dtype <U1 is not numeric")


def _npy_object(d: Path):
    np.save(d / "o.npy", np.array([[1, "b"], [None, 2.0]], dtype=object), allow_pickle=True)
    return ["--data", d / "o.npy"], ("o.npy", "dtype object")


def _npy_complex(d: Path):
    np.save(d / "c.npy", np.ones((4, 3), dtype=np.complex64))
    return ["--data", d / "c.npy"], ("c.npy", "dtype complex64 is not numeric")


def _npy_1d(d: Path):
    np.save(d / "v.npy", np.linspace(0, 1, 10))
    return ["--data", d / "v.npy"], ("v.npy", "shape (10,)", "expected N x D")


def _npy_5d(d: Path):
    np.save(d / "v.npy", np.zeros((2, 1, 1, 2, 2)))
    return ["--data", d / "v.npy"], ("v.npy", "shape (2, 1, 1, 2, 2)", "expected N x D")


def _npy_no_rows(d: Path):
    np.save(d / "v.npy", np.zeros((0, 3)))
    return ["--data", d / "v.npy"], ("v.npy", "holds no examples")


def _npy_truncated(d: Path):
    np.save(d / "t.npy", np.zeros((10, 3)))
    (d / "t.npy").write_bytes((d / "t.npy").read_bytes()[:-8])
    return ["--data", d / "t.npy"], ("t.npy", "truncated")


def _npy_not_npy(d: Path):
    (d / "t.npy").write_text("1,2,3\n")
    return ["--data", d / "t.npy"], ("t.npy", "not a .npy file")


def _npy_nan(d: Path):
    x = images(5, 4, 4)
    x[2, 0, 1, 3] = np.nan
    np.save(d / "n.npy", x)
    return ["--data", d / "n.npy"], ("n.npy", "1 value is NaN or infinite", "(2, 0, 1, 3)")


def _npz_nan_memmap_ignored(d: Path):
    x = images(5, 4, 4)
    x[0, 0, 0, 0] = np.inf
    np.savez(d / "n.npz", x=x)
    return ["--data", d / "n.npz"], ("n.npz[x]", "NaN or infinite")


def _npz_wrong_names(d: Path):
    np.savez(d / "ab.npz", a=np.zeros((3, 2)), b=np.zeros(3))
    return ["--data", d / "ab.npz"], ("ab.npz", "holds arrays a, b", "named x")


def _npz_label_count(d: Path):
    np.savez(d / "xy.npz", x=np.zeros((4, 2)), y=np.zeros(3, dtype=np.int64))
    return ["--data", d / "xy.npz"], ("xy.npz[y]", "shape (3,)", "(4,)")


def _bernoulli_outside(d: Path):
    x = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    np.save(d / "real.npy", x)
    return ["--data", d / "real.npy", "--likelihood", "bernoulli"], ("real.npy", "values lie in", "outside [0, 1]",
                                                                      "'bernoulli'", "--likelihood gaussian")


def _bernoulli_table(d: Path):
    write_table(d / "t.csv", *table_data(), names=["a", "b", "c", "d", "label"])
    return ["--data", d / "t.csv", "--label-column", "label", "--likelihood", "bernoulli"], (
        "t.csv", "outside [0, 1]", "--likelihood gaussian")


def _binarize_table(d: Path):
    write_table(d / "t.csv", *table_data(), names=["a", "b", "c", "d", "label"])
    return ["--data", d / "t.csv", "--label-column", "label", "--binarize", "dynamic"], (
        "t.csv", "values lie in", "--binarize needs values in [0, 1]")


def _binarize_npy(d: Path):
    np.save(d / "x.npy", np.linspace(-1, 2, 40).reshape(10, 4))
    return ["--data", d / "x.npy", "--binarize", "static"], ("x.npy", "values lie in [-1, 2]", "--binarize needs")


def _label_column_missing(d: Path):
    write_table(d / "t.csv", *table_data(), names=["a", "b", "c", "d", "label"])
    return ["--data", d / "t.csv", "--label-column", "kind"], ("t.csv", "no column 'kind'", "columns are: a, b")


def _label_column_on_npy(d: Path):
    np.save(d / "x.npy", images(4, 3, 3))
    return ["--data", d / "x.npy", "--label-column", "0"], ("x.npy", "--label-column applies to")


def _image_size_on_csv(d: Path):
    write_table(d / "t.csv", *table_data(), names=["a", "b", "c", "d", "label"])
    return ["--data", d / "t.csv", "--image-size", "4", "4"], ("t.csv", "--image-size applies to folders of images")


def _data_dir_on_file(d: Path):
    np.save(d / "x.npy", images(4, 3, 3))
    (d / "somewhere").mkdir()
    return ["--data", d / "x.npy", "--data-dir", d / "somewhere"], ("x.npy", "--data-dir applies to the built-in")


def _unknown_suffix(d: Path):
    (d / "x.xlsx").write_bytes(b"PK\x03\x04")
    return ["--data", d / "x.xlsx"], ("x.xlsx", "cannot read .xlsx")


BAD_TRAIN_INPUT: dict[str, Callable[[Path], tuple[list, tuple[str, ...]]]] = {
    f.__name__.lstrip("_"): f
    for f in (
        _missing, _missing_no_suffix, _empty_csv, _blank_csv, _empty_npy, _empty_npz,
        _idx_truncated, _idx_truncated_header, _idx_wrong_magic, _idx_checksum, _idx_checksum_gz, _idx_bad_gzip,
        _idx_fashion_shape,
        _csv_text, _csv_text_no_header, _csv_semicolons, _csv_nan, _csv_empty_cell, _csv_inf, _csv_too_large,
        _csv_ragged, _csv_quoted_ragged, _tsv_text,
        _images_mixed_sizes, _images_none, _images_empty_folder, _images_corrupt,
        _npy_strings, _npy_object, _npy_complex, _npy_1d, _npy_5d, _npy_no_rows, _npy_truncated, _npy_not_npy,
        _npy_nan, _npz_nan_memmap_ignored, _npz_wrong_names, _npz_label_count,
        _bernoulli_outside, _bernoulli_table, _binarize_table, _binarize_npy,
        _label_column_missing, _label_column_on_npy, _image_size_on_csv, _data_dir_on_file, _unknown_suffix,
    )
}


@pytest.mark.parametrize("case", sorted(BAD_TRAIN_INPUT))
def test_train_refuses_bad_input(capsys, tmp_path, case):
    data_args, says = BAD_TRAIN_INPUT[case](tmp_path)
    refused(capsys, tmp_path, "train", *data_args, "--run-dir", "run", *TINY, says=says)
    assert not (tmp_path / "run").exists()


def test_train_refuses_into_an_existing_run_dir_untouched(capsys, tmp_path):
    """Bad data with a --run-dir that already exists (empty): it is left as it was, not removed."""
    (tmp_path / "run").mkdir()
    (tmp_path / "bad.csv").write_text("a,b\n1,x\n")
    refused(capsys, tmp_path, "train", "--data", "bad.csv", "--run-dir", "run", *TINY,
            says=("bad.csv", "row 2", "column 'b'"))
    assert (tmp_path / "run").is_dir()


def test_train_mixed_sizes_with_image_size(capsys, tmp_path):
    """The folder refused above trains once --image-size says how to resize it; subfolders are classes."""
    for k in range(6):
        write_png(tmp_path / "imgs" / ("cats" if k % 2 else "dogs") / f"{k}.png", 6 + k % 3, 5 + k % 2, seed=k)
    refused(capsys, tmp_path, "train", "--data", "imgs", "--run-dir", "run", *TINY,
            says=("images differ in size", "--image-size"))
    r = ok(capsys, "train", "--data", "imgs", "--image-size", "8", "8", "--run-dir", "run", "--val-fraction", "0.34",
           *TINY)
    assert "likelihood: bernoulli" in r.out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["data_shape"] == [1, 8, 8]
    assert config["data"]["kind"] == "image" and config["data"]["classes"] == ["cats", "dogs"]
    assert config["train"]["image_size"] == [8, 8]
    assert config["data"]["n_train"] + config["data"]["n_val"] == 6


# ---------------------------------------------------------------------------------------------
# Trained runs: a table with labels, and 1x6x6 images in a .npy
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    path: Path
    data: Path  # the file it was trained on
    stdout: str


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A run on a 40-row CSV: 4 real features and a 0/1 label column. Read-only: tests share it."""
    d = tmp_path_factory.mktemp("table")
    data = write_table(d / "table.csv", *table_data(), names=["f0", "f1", "f2", "f3", "label"])
    out = train_quietly("--data", data, "--label-column", "label", "--run-dir", d / "run", "--val-fraction", "0.25",
                        *TINY)
    return Run(d / "run", data, out)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A run on a .npy of 40 images 1x6x6 in [0, 1]. Read-only: tests share it."""
    d = tmp_path_factory.mktemp("images")
    np.save(d / "images.npy", images(N_IMAGES, 6, 6))
    out = train_quietly("--data", d / "images.npy", "--run-dir", d / "run", *TINY)
    return Run(d / "run", d / "images.npy", out)


def test_table_run_records_how_data_were_read(table_run):
    config = json.loads((table_run.path / "config.json").read_text())
    data = config["data"]
    assert data["kind"] == "table" and data["shape"] == [4]
    assert data["columns"] == ["f0", "f1", "f2", "f3"] and data["classes"] == ["0", "1"]
    assert data["transform"]["kind"] == "standardize" and len(data["transform"]["mean"]) == 4
    assert data["n_train"] == 30 and data["n_val"] == 10 and data["test_split"] == "val"
    assert config["model"]["likelihood"] == "gaussian-lowrank"
    assert "likelihood: gaussian-lowrank (chosen for a table)" in table_run.stdout


def test_image_run_records_how_data_were_read(image_run):
    config = json.loads((image_run.path / "config.json").read_text())
    assert config["model"]["data_shape"] == [1, 6, 6] and config["model"]["likelihood"] == "bernoulli"
    assert config["data"]["kind"] == "image" and config["data"]["in_memory"] is True


def _run_command(command: str, run: Path, data: Path) -> list[object]:
    """``COMMAND RUN --data DATA`` with an output where the command needs one."""
    outputs = {"encode": ["-o", "z.csv"], "score": ["-o", "scores.csv"], "reconstruct": ["-o", "recon.npy"],
               "evaluate": []}
    return [command, run, "--data", data, *outputs[command]]


COMMANDS_ON_DATA = ("encode", "evaluate", "score", "reconstruct")


@pytest.mark.parametrize("command", COMMANDS_ON_DATA)
def test_refuses_images_of_another_shape(capsys, tmp_path, image_run, command):
    np.save(tmp_path / "seven.npy", images(5, 7, 7))
    refused(capsys, [tmp_path, image_run.path], *_run_command(command, image_run.path, tmp_path / "seven.npy"),
            says=("seven.npy", "shape (1, 7, 7)", "trained on (1, 6, 6)"))


@pytest.mark.parametrize("command", COMMANDS_ON_DATA)
def test_refuses_flat_array_against_image_run(capsys, tmp_path, image_run, command):
    """The same number of values per example, but flat: refused with a hint to reshape."""
    np.save(tmp_path / "flat.npy", images(5, 6, 6).reshape(5, 36))
    refused(capsys, [tmp_path, image_run.path], *_run_command(command, image_run.path, tmp_path / "flat.npy"),
            says=("flat.npy", "shape (36,)", "trained on (1, 6, 6)"))


@pytest.mark.parametrize("command", COMMANDS_ON_DATA)
def test_refuses_npy_with_nan(capsys, tmp_path, image_run, command):
    x = images(5, 6, 6)
    x[3, 0, 2, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    refused(capsys, [tmp_path, image_run.path], *_run_command(command, image_run.path, tmp_path / "nan.npy"),
            says=("nan.npy", "NaN or infinite", "(3, 0, 2, 1)"))


@pytest.mark.parametrize("command", COMMANDS_ON_DATA)
def test_refuses_values_outside_bernoulli_support(capsys, tmp_path, image_run, command):
    np.save(tmp_path / "wide.npy", images(5, 6, 6) * 3 - 1)
    refused(capsys, [tmp_path, image_run.path], *_run_command(command, image_run.path, tmp_path / "wide.npy"),
            says=("wide.npy", "outside [0, 1]", "'bernoulli'"))


@pytest.mark.parametrize("command", COMMANDS_ON_DATA)
def test_refuses_csv_with_other_column_names(capsys, tmp_path, table_run, command):
    x, y = table_data(8, seed=1)
    write_table(tmp_path / "renamed.csv", x, y, names=["f0", "f1", "g2", "f3", "label"])
    refused(capsys, [tmp_path, table_run.path], *_run_command(command, table_run.path, tmp_path / "renamed.csv"),
            says=("renamed.csv", "columns", "'g2'", "differ from the training columns"))


@pytest.mark.parametrize("command", COMMANDS_ON_DATA)
def test_refuses_csv_with_other_number_of_columns(capsys, tmp_path, table_run, command):
    x, y = table_data(8, seed=1)
    write_table(tmp_path / "narrow.csv", x[:, :3], y, names=["f0", "f1", "f2", "label"])
    refused(capsys, [tmp_path, table_run.path], *_run_command(command, table_run.path, tmp_path / "narrow.csv"),
            says=("narrow.csv", "shape (3,)", "trained on (4,)"))


@pytest.mark.parametrize("command", COMMANDS_ON_DATA)
def test_refuses_csv_with_a_bad_cell(capsys, tmp_path, table_run, command):
    (tmp_path / "bad.csv").write_text("f0,f1,f2,f3,label\n1,2,3,4,0\n1,2,oops,4,1\n")
    refused(capsys, [tmp_path, table_run.path], *_run_command(command, table_run.path, tmp_path / "bad.csv"),
            says=("bad.csv", "row 3", "column 'f2'", "'oops' is not a number"))


@pytest.mark.parametrize("command", COMMANDS_ON_DATA)
def test_refuses_missing_data_file(capsys, tmp_path, table_run, command):
    refused(capsys, [tmp_path, table_run.path], *_run_command(command, table_run.path, tmp_path / "gone.csv"),
            says=("gone.csv", "no such file"))


# ---------------------------------------------------------------------------------------------
# Round trips that work
# ---------------------------------------------------------------------------------------------


def test_npz_with_labels_trains_and_evaluate_reports_probe(capsys, tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(80) % 2
    x = np.clip(0.15 + 0.7 * y[:, None] + 0.05 * rng.normal(size=(80, 8)), 0, 1).astype(np.float32)
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    r = ok(capsys, "train", "--data", "xy.npz", "--run-dir", "run", "--val-fraction", "0.25", *TINY)
    assert "likelihood: bernoulli" in r.out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["kind"] == "array" and config["data"]["shape"] == [8]
    assert config["data"]["n_train"] == 60 and config["data"]["n_test"] == 20

    r = ok(capsys, "evaluate", "run", "--json")
    result = json.loads(r.out)
    assert result["split"] == "val" and result["n_examples"] == 20
    assert np.isfinite(result["elbo"])
    # two far-apart clusters: even a barely trained encoder separates them linearly
    assert result["probe_accuracy"] is not None and result["probe_accuracy"] >= 0.9

    # the file given again with --data: all 80 rows, and no probe (new data have no training split)
    result = json.loads(ok(capsys, "evaluate", "run", "--data", "xy.npz", "--json").out)
    assert result["n_examples"] == 80 and result["probe_accuracy"] is None


def test_tsv_without_header_with_label_column_index(capsys, tmp_path):
    x, y = table_data(30)
    write_table(tmp_path / "t.tsv", x[:, :3], np.where(y == 1, 7, 3), names=None, delimiter="\t", label_first=True)
    r = ok(capsys, "train", "--data", "t.tsv", "--label-column", "0", "--run-dir", "run", *TINY)
    assert "likelihood: gaussian-lowrank" in r.out
    data = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    assert data["kind"] == "table" and data["shape"] == [3]
    assert data["columns"] == ["col1", "col2", "col3"] and data["classes"] == ["3", "7"]
    # the standardization's numbers are the training rows' (about the file's, as 27 of 30 rows)
    np.testing.assert_allclose(data["transform"]["mean"], x[:, :3].mean(0), atol=0.5)

    ok(capsys, "encode", "run", "--data", "t.tsv", "-o", "z.npy")
    assert np.load(tmp_path / "z.npy").shape == (30, LATENT_DIM)
    result = json.loads(ok(capsys, "evaluate", "run", "--json").out)
    assert result["probe_accuracy"] is not None and result["n_examples"] == 3


def test_encode_csv_keeps_row_order(capsys, tmp_path, table_run):
    ok(capsys, "encode", table_run.path, "--data", table_run.data, "-o", "z.npy")
    z = np.load(tmp_path / "z.npy")
    assert z.shape == (N_TABLE, LATENT_DIM) and np.isfinite(z).all()

    r = ok(capsys, "encode", table_run.path, "--data", table_run.data, "-o", "z.csv", "--with-scale")
    assert "z.csv" in r.out
    header, values = read_csv(tmp_path / "z.csv")
    assert header == ["loc_0", "loc_1", "scale_0", "scale_1"]
    assert values.shape == (N_TABLE, 2 * LATENT_DIM)
    np.testing.assert_allclose(values[:, :LATENT_DIM], z, rtol=1e-6, atol=1e-6)
    assert (values[:, LATENT_DIM:] > 0).all()

    # the same rows reversed in the file: the latent means come out reversed
    lines = table_run.data.read_text().splitlines()
    (tmp_path / "reversed.csv").write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    ok(capsys, "encode", table_run.path, "--data", "reversed.csv", "-o", "zr.csv")
    header, reversed_values = read_csv(tmp_path / "zr.csv")
    assert header == ["loc_0", "loc_1"]
    np.testing.assert_allclose(reversed_values, z[::-1], rtol=1e-6, atol=1e-6)


def test_memmap_npy_trains_encodes_and_scores(capsys, tmp_path):
    x = (images(30, 6, 6) * 255).astype(np.uint8)[:, 0]  # N x H x W uint8: scaled on read
    np.save(tmp_path / "u8.npy", x)
    r = ok(capsys, "train", "--data", "u8.npy", "--memmap", "--run-dir", "run", *TINY)
    assert "likelihood: bernoulli" in r.out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["in_memory"] is False
    assert config["train"]["memmap"] is True
    assert config["model"]["data_shape"] == [1, 6, 6]
    assert (tmp_path / "run" / "model.safetensors").is_file()

    ok(capsys, "encode", "run", "--data", "u8.npy", "-o", "z.npy")
    z_lazy = np.load(tmp_path / "z.npy")
    np.save(tmp_path / "f32.npy", x[:, None].astype(np.float32) / 255)  # the same values, in memory
    ok(capsys, "encode", "run", "--data", "f32.npy", "-o", "z2.npy")
    np.testing.assert_allclose(z_lazy, np.load(tmp_path / "z2.npy"), rtol=1e-5, atol=1e-6)
    ok(capsys, "score", "run", "--data", "u8.npy", "-o", "s.npy", "--n-samples", "2")
    assert np.load(tmp_path / "s.npy").shape == (30, 1)


@pytest.mark.parametrize("method", ["elbo", "iw"])
def test_score_writes_one_row_per_example(capsys, tmp_path, image_run, method):
    r = ok(capsys, "score", image_run.path, "--data", image_run.data, "--method", method, "--n-samples", "4",
           "-o", "scores.csv")
    assert f"{N_IMAGES} scores ({method})" in r.out and "most unusual rows" in r.out
    header, values = read_csv(tmp_path / "scores.csv")
    assert header == ["index", "score"]
    assert values.shape == (N_IMAGES, 2)
    assert values[:, 0].tolist() == list(range(N_IMAGES))
    # negative bounds on log p(x) of 36 Bernoulli pixels with grey targets: positive, finite
    assert np.isfinite(values[:, 1]).all() and (values[:, 1] > 0).all()
    top = int(np.argmax(values[:, 1]))
    assert r.out.split("most unusual rows: ")[1].startswith(f"{top} ")


def test_score_iw_is_no_higher_than_elbo_on_average(capsys, tmp_path, image_run):
    """-log p(x) by importance sampling (K = 50) lies below the negative ELBO, up to noise."""
    scores = {}
    for method in ("elbo", "iw"):
        ok(capsys, "score", image_run.path, "--data", image_run.data, "--method", method, "--n-samples", "50",
           "-o", f"{method}.npy")
        scores[method] = np.load(tmp_path / f"{method}.npy")[:, 0]
    assert scores["iw"].mean() <= scores["elbo"].mean() + 0.05


def test_reconstruct_and_evaluate_on_new_images(capsys, tmp_path, image_run):
    np.save(tmp_path / "new.npy", images(7, 6, 6, seed=3))
    ok(capsys, "reconstruct", image_run.path, "--data", "new.npy", "-n", "5", "-o", "recon.npy")
    recon = np.load(tmp_path / "recon.npy")
    assert recon.shape == (5, 1, 6, 6) and ((recon >= 0) & (recon <= 1)).all()
    result = json.loads(ok(capsys, "evaluate", image_run.path, "--data", "new.npy", "--json").out)
    assert result["n_examples"] == 7 and result["split"] == "new.npy" and result["elbo"] < 0


# ---------------------------------------------------------------------------------------------
# Once tracebacks, now one line each
# ---------------------------------------------------------------------------------------------


def test_train_refuses_npy_with_garbled_header(capsys, tmp_path):
    (tmp_path / "garbled.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': 'garba")  # 16 bytes, as said
    refused(capsys, tmp_path, "train", "--data", "garbled.npy", "--run-dir", "run", *TINY,
            says=("garbled.npy", "corrupt .npy file"))


def test_train_refuses_npz_whose_member_is_not_npy(capsys, tmp_path):
    with zipfile.ZipFile(tmp_path / "odd.npz", "w") as z:
        z.writestr("x.npy", b"not an array")
    refused(capsys, tmp_path, "train", "--data", "odd.npz", "--run-dir", "run", *TINY, says=("odd.npz", "not a .npy"))


def test_pca_on_a_memmapped_npy_is_refused_before_anything_is_written(capsys, tmp_path):
    np.save(tmp_path / "x.npy", images(20, 4, 4).reshape(20, 16))
    refused(capsys, tmp_path, "train", "--data", "x.npy", "--memmap", "--model", "pca", "--run-dir", "run",
            "--latent-dim", "2", "--device", "cpu", says=("x.npy", "pca", "in memory"))


def test_new_table_without_the_label_column_is_encoded(capsys, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    with open(tmp_path / "t.csv", "w") as f:
        f.write("a,b,c,label\n" + "".join(f"{r[0]},{r[1]},{r[2]},{i % 2}\n" for i, r in enumerate(x)))
    with open(tmp_path / "new.csv", "w") as f:
        f.write("a,b,c\n" + "".join(f"{r[0]},{r[1]},{r[2]}\n" for r in x[:4]))
    ok(capsys, "train", "--data", "t.csv", "--label-column", "label", "--run-dir", "run", *TINY)
    ok(capsys, "encode", "run", "--data", "new.csv", "-o", "z.npy")
    assert np.load(tmp_path / "z.npy").shape == (4, 2)


def test_a_tiny_file_still_gets_a_held_out_example(capsys, tmp_path):
    np.save(tmp_path / "five.npy", images(5, 4, 4))
    ok(capsys, "train", "--data", "five.npy", "--run-dir", "run", *TINY)
    data = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    assert data["n_val"] == 1 and data["n_train"] == 4
