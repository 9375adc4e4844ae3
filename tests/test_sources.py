"""Tests for vaekit.data.files: users' .npy, .npz, .csv, .tsv files and folders of images.

Every file is tiny and written in tmp_path. Each refusal is checked to be one VaekitError line
that names the file (and row and column for tables) and the problem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.data import files as sources
from vaekit.errors import VaekitError, VaekitWarning
from vaekit.data.files import MemmapArray, load_file


def error_of(path, **options) -> str:
    """The VaekitError message of ``load_file(path, **options)``, checked to name the file."""
    with pytest.raises(VaekitError) as info:
        load_file(path, **options)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}"), message
    return message


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# .npy
# ---------------------------------------------------------------------------------------------


def test_npy_vectors(tmp_path):
    arr = np.random.default_rng(0).normal(size=(7, 5))  # float64: converted as it is
    np.save(tmp_path / "x.npy", arr)
    ds = load_file(tmp_path / "x.npy")
    assert ds.name == str(tmp_path / "x.npy") and ds.test is None and ds.train_labels is None
    assert ds.kind == "array" and ds.shape == (5,) and ds.columns is None and ds.classes is None
    assert ds.train.dtype == torch.float32
    np.testing.assert_array_equal(ds.train.numpy(), arr.astype(np.float32))


def test_npy_grey_uint8_images_are_scaled_and_get_a_channel(tmp_path):
    arr = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5) * 4
    np.save(tmp_path / "x.npy", arr)
    ds = load_file(tmp_path / "x.npy")
    assert ds.kind == "image" and ds.train.shape == (3, 1, 4, 5)
    np.testing.assert_array_equal(ds.train[:, 0].numpy(), arr.astype(np.float32) / 255)


def test_npy_channels_first_images(tmp_path):
    arr = np.random.default_rng(0).random((2, 3, 4, 4)).astype(np.float16)
    np.save(tmp_path / "x.npy", arr)
    ds = load_file(tmp_path / "x.npy")
    assert ds.kind == "image" and ds.shape == (3, 4, 4)
    np.testing.assert_array_equal(ds.train.numpy(), arr.astype(np.float32))


def _nan_array():
    a = np.zeros((3, 4))
    a[1, 2] = np.nan
    a[2, 0] = np.inf
    return a


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "no such file"),
        (b"", "empty file"),
        (b"a,b\n1,2\n", "not a .npy file"),
        ("npz", ".npz archive"),
        ("truncated", "corrupt .npy file (truncated"),
        (np.array([[1, "a"]], dtype=object), "holds Python objects (dtype object)"),
        (np.array([["a", "b"]]), "dtype <U1 is not numeric"),
        (np.ones((2, 2), dtype=complex), "dtype complex128 is not numeric"),
        (_nan_array(), "2 values are NaN or infinite as float32 (first at index (1, 2))"),
        (np.array([[1e300]]), "1 value is NaN or infinite as float32 (first at index (0, 0))"),
        (np.arange(5.0), "array has shape (5,); expected N x D, N x H x W or N x C x H x W"),
        (np.zeros((1, 1, 1, 1, 1)), "array has shape (1, 1, 1, 1, 1)"),
        (np.zeros((0, 64)), "holds no examples"),
    ],
)
@pytest.mark.parametrize("memmap", [False, True])
def test_npy_refusals(tmp_path, content, expected, memmap):
    path = tmp_path / "user.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, np.ndarray):
        np.save(path, content, allow_pickle=content.dtype == object)
    elif content == "npz":
        np.savez(tmp_path / "user", a=np.zeros((2, 2)))
        (tmp_path / "user.npz").rename(path)
    elif content == "truncated":
        np.save(path, np.zeros((10, 10)))
        path.write_bytes(path.read_bytes()[:200])
    message = error_of(path, memmap=memmap) if content is not None else error_of(path)
    assert expected in message


# ---------------------------------------------------------------------------------------------
# .npy, memory-mapped
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def big_uint8(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (1000, 6, 5), dtype=np.uint8)
    np.save(tmp_path / "big.npy", arr)
    return tmp_path / "big.npy", arr


def test_memmap_reads_the_rows_asked_for_in_their_order(big_uint8):
    path, arr = big_uint8
    ds = load_file(path, memmap=True)
    x = ds.train
    assert isinstance(x, MemmapArray) and x.rows_read == 0  # loading reads no rows
    assert len(x) == 1000 and x.shape == (1000, 1, 6, 5) and ds.shape == (1, 6, 5) and ds.kind == "image"

    idx = torch.randperm(1000, generator=torch.Generator().manual_seed(0))[:32]
    idx[5] = 999
    batch = x[idx]
    assert batch.dtype == torch.float32 and batch.shape == (32, 1, 6, 5)
    expected = arr[idx.numpy()][:, None].astype(np.float32) / 255
    np.testing.assert_array_equal(batch.numpy(), expected)
    assert x.largest_read == 32 and x.rows_read == 32

    # Repeated indices are read once and returned twice.
    twice = x[torch.tensor([3, 1, 3])]
    np.testing.assert_array_equal(twice.numpy(), arr[[3, 1, 3]][:, None].astype(np.float32) / 255)
    assert x.rows_read == 34 and x.largest_read == 32
    np.testing.assert_array_equal(x[-1].numpy(), arr[-1][None].astype(np.float32) / 255)
    np.testing.assert_array_equal(x[10:13].numpy(), arr[10:13][:, None].astype(np.float32) / 255)


def test_memmap_subset_and_chunks(big_uint8):
    path, arr = big_uint8
    x = load_file(path, memmap=True).train
    rows = torch.tensor([900, 2, 50, 7])
    sub = x.subset(rows)
    assert x.rows_read == 0 and sub.rows_read == 0 and sub.shape == (4, 1, 6, 5)
    np.testing.assert_array_equal(sub[torch.tensor([1, 0])].numpy(), arr[[2, 900]][:, None].astype(np.float32) / 255)
    np.testing.assert_array_equal(sub.subset(torch.tensor([3]))[0:1].numpy(), arr[[7]][:, None].astype(np.float32) / 255)

    parts = list(x.chunks(300))
    assert [len(p) for p in parts] == [300, 300, 300, 100] and x.largest_read == 300
    np.testing.assert_array_equal(torch.cat(parts).numpy(), arr[:, None].astype(np.float32) / 255)


def test_memmap_vectors_of_floats(tmp_path):
    arr = np.random.default_rng(1).normal(size=(50, 3))
    np.save(tmp_path / "v.npy", arr)
    ds = load_file(tmp_path / "v.npy", memmap=True)
    assert ds.kind == "array" and ds.shape == (3,) and ds.train.scale == 1.0
    np.testing.assert_array_equal(ds.train[torch.tensor([4, 0])].numpy(), arr[[4, 0]].astype(np.float32))


def test_memmap_nan_scan_in_chunks_reports_count_and_first_index(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "_SCAN_BYTES", 3 * 4 * 8)  # three rows of 4 float64 a chunk
    arr = np.zeros((10, 4))
    arr[7, 1] = np.nan
    arr[9, 3] = np.inf
    np.save(tmp_path / "n.npy", arr)
    message = error_of(tmp_path / "n.npy", memmap=True)
    assert message.endswith("2 values are NaN or infinite as float32 (first at index (7, 1))")


def test_memmap_auto_threshold(big_uint8, monkeypatch):
    path, _ = big_uint8
    size = path.stat().st_size
    monkeypatch.setattr(sources, "MEMMAP_AUTO_BYTES", size - 1)
    assert isinstance(load_file(path).train, MemmapArray)
    assert isinstance(load_file(path, memmap=False).train, torch.Tensor)  # an explicit False wins
    monkeypatch.setattr(sources, "MEMMAP_AUTO_BYTES", size)
    assert isinstance(load_file(path).train, torch.Tensor)
    assert isinstance(load_file(path, memmap=True).train, MemmapArray)


# ---------------------------------------------------------------------------------------------
# .npz
# ---------------------------------------------------------------------------------------------


def test_npz_single_array(tmp_path):
    arr = np.random.default_rng(0).random((4, 6)).astype(np.float32)
    np.savez(tmp_path / "a.npz", whatever=arr)
    ds = load_file(tmp_path / "a.npz")
    assert ds.kind == "array" and ds.train_labels is None and ds.test is None
    np.testing.assert_array_equal(ds.train.numpy(), arr)


def test_npz_x_and_y(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (5, 3, 3), dtype=np.uint8)
    y = np.array([2, 0, 1, 2, 0])
    np.savez_compressed(tmp_path / "d.npz", x=x, y=y)
    ds = load_file(tmp_path / "d.npz")
    assert ds.kind == "image" and ds.train.shape == (5, 1, 3, 3) and ds.classes is None
    np.testing.assert_array_equal(ds.train[:, 0].numpy(), x.astype(np.float32) / 255)
    assert ds.train_labels.dtype == torch.int64 and ds.train_labels.tolist() == y.tolist()

    np.savez(tmp_path / "s.npz", x=np.zeros((3, 2)), y=np.array(["b", "a", "b"]))
    ds = load_file(tmp_path / "s.npz")
    assert ds.classes == ["a", "b"] and ds.train_labels.tolist() == [1, 0, 1]


def test_npz_refusals(tmp_path):
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 2)), b=np.zeros((2, 2)))
    assert error_of(tmp_path / "two.npz").endswith(
        "holds arrays a, b; expected one array, or one named x (and y for labels)"
    )
    np.savez(tmp_path / "xyz.npz", x=np.zeros((2, 2)), y=np.zeros(2, int), z=np.zeros(2))
    assert "holds arrays x, y, z" in error_of(tmp_path / "xyz.npz")
    np.savez(tmp_path / "none.npz")
    assert "holds no arrays;" in error_of(tmp_path / "none.npz")
    np.savez(tmp_path / "short.npz", x=np.zeros((3, 2)), y=np.zeros(2, int))
    assert error_of(tmp_path / "short.npz") == (
        f"{tmp_path / 'short.npz'}[y]: labels have shape (2,); expected one per example, shape (3,)"
    )
    np.savez(tmp_path / "nan.npz", x=np.array([[0.0, np.nan]]))
    assert error_of(tmp_path / "nan.npz") == f"{tmp_path / 'nan.npz'}[x]: 1 value is NaN or infinite as float32 (first at index (0, 1))"
    np.savez(tmp_path / "obj.npz", x=np.array([[{}]], dtype=object))
    assert "[x]: holds Python objects" in error_of(tmp_path / "obj.npz")
    write(tmp_path / "text.npz", "x,y\n")
    assert "not a .npz file" in error_of(tmp_path / "text.npz")
    np.savez(tmp_path / "cut.npz", x=np.zeros((50, 50)))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "cut.npz").read_bytes()[:300])
    assert "corrupt .npz file" in error_of(tmp_path / "cut.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    assert "empty file" in error_of(tmp_path / "empty.npz")


# ---------------------------------------------------------------------------------------------
# .csv and .tsv
# ---------------------------------------------------------------------------------------------


def test_csv_with_header_and_string_labels(tmp_path):
    path = write(tmp_path / "p.csv", "height,kind,weight\n1.5,tall,60\n\n1.2,short,55\n1.9,tall,80\n")
    ds = load_file(path, label_column="kind")
    assert ds.kind == "table" and ds.shape == (2,) and ds.columns == ["height", "weight"]
    assert ds.classes == ["short", "tall"] and ds.train_labels.tolist() == [1, 0, 1]
    assert ds.train_labels.dtype == torch.int64 and ds.train.dtype == torch.float32
    np.testing.assert_array_equal(ds.train.numpy(), np.array([[1.5, 60], [1.2, 55], [1.9, 80]], np.float32))


def test_csv_without_header_label_column_by_index(tmp_path):
    # A text label column in the first row is no header: the row below it is text too.
    path = write(tmp_path / "n.csv", "1,0.5,cat\n2,1e3,dog\n3,-4,cat\n")
    ds = load_file(path, label_column="2")
    assert ds.columns == ["col0", "col1"] and ds.classes == ["cat", "dog"] and ds.train_labels.tolist() == [0, 1, 0]
    np.testing.assert_array_equal(ds.train.numpy(), np.array([[1, 0.5], [2, 1000], [3, -4]], np.float32))
    assert load_file(path, label_column="-1").classes == ["cat", "dog"]
    assert load_file(path, label_column="col2").classes == ["cat", "dog"]


def test_csv_numeric_labels_sort_as_numbers(tmp_path):
    path = write(tmp_path / "l.csv", "x,y\n1,10\n2,9\n3,10.5\n4,9\n")
    ds = load_file(path, label_column="y")
    assert ds.classes == ["9", "10", "10.5"] and ds.train_labels.tolist() == [1, 0, 2, 0]


def test_csv_all_numeric_first_row_is_data(tmp_path):
    ds = load_file(write(tmp_path / "d.csv", "1,2\n3,4\n"))
    assert ds.columns == ["col0", "col1"] and ds.train.tolist() == [[1, 2], [3, 4]] and ds.train_labels is None


def test_tsv(tmp_path):
    path = write(tmp_path / "t.tsv", "a\tb\tlabel\n1\t 2\t0\n3\t4\t1\n")
    ds = load_file(path, label_column="label")
    assert ds.columns == ["a", "b"] and ds.classes == ["0", "1"] and ds.train.tolist() == [[1, 2], [3, 4]]


def test_csv_with_quotes_and_crlf(tmp_path):
    path = tmp_path / "q.csv"
    path.write_bytes(b'\xef\xbb\xbf"a","b","name"\r\n1,2,"Smith, J"\r\n3,4,"Doe, A"\r\n')  # BOM, as Excel writes
    ds = load_file(path, label_column="name")
    assert ds.columns == ["a", "b"] and ds.classes == ["Doe, A", "Smith, J"] and ds.train.tolist() == [[1, 2], [3, 4]]


def test_csv_of_100k_rows_by_50_columns_loads_in_bulk(tmp_path):
    import time

    # 1000 distinct rows repeated 100 times: writing the file stays cheap.
    block = np.random.default_rng(0).integers(-999, 1000, (1000, 50)) / 8  # exact in binary
    lines = "\n".join(",".join(map(str, row)) for row in block.tolist())
    header = ",".join(f"c{i}" for i in range(50))
    (tmp_path / "big.csv").write_text(header + "\n" + (lines + "\n") * 100)
    start = time.perf_counter()
    ds = load_file(tmp_path / "big.csv")
    elapsed = time.perf_counter() - start
    assert ds.train.shape == (100_000, 50) and ds.columns[-1] == "c49"
    np.testing.assert_array_equal(ds.train.numpy(), np.tile(block, (100, 1)).astype(np.float32))
    # About a second on a slow CPU; a cell-by-cell Python parser takes several times longer.
    assert elapsed < 3.0, f"100000 x 50 took {elapsed:.2f} s; parsing is not in bulk"


@pytest.mark.parametrize(
    "text, options, expected",
    [
        ("", {}, "empty file"),
        ("\n\n", {}, "empty file"),
        ("a,b,c\n", {}, "header only, no data rows"),
        ("id,age\n1,30\n2,31\n\n3,31\n4,32\n5,33\n6,abc\n", {}, "row 8, column 'age': 'abc' is not a number"),
        ("a,b\n1,2\n3,\n", {}, "row 3, column 'b': missing value (empty cell)"),
        ("a,b\n1,2\n3,NA\n", {}, "row 3, column 'b': missing value ('NA')"),
        ("a,b\n1,2\nNaN,4\n", {}, "row 3, column 'a': missing value ('NaN')"),
        ("a,b\n1,2\n3,nan\n", {}, "row 3, column 'b': missing value ('nan')"),
        ("a,b\n1,inf\n", {}, "row 2, column 'b': 'inf' is infinite"),
        ("a,b\n1,1e300\n", {}, "row 2, column 'b': '1e300' is too large for float32"),
        ("a,b,c,d\n1,2,3,4\n1,2,3,4\n1,2,3,4\n1,2,3\n", {}, "row 5 has 3 fields, expected 4"),
        ("a,b\n1,2\n", {"label_column": "c"}, "no column 'c'; columns are: a, b"),
        ("1,2\n3,4\n", {"label_column": "2"}, "no column '2'; the file has no header, so give a 0-based column index 0..1"),
        ("label\n1\n2\n", {"label_column": "label"}, "column 'label' is the only column; no features are left"),
        ("a,y\n1,cat\n2,\n", {"label_column": "y"}, "row 3, column 'y': missing label (empty cell)"),
        ("a,a\n1,2\n", {}, "the header names column 'a' twice (columns 1 and 2)"),
        ("a;b\n1;2\n", {}, "row 1, column 'col0': 'a;b' is not a number (is the file separated by ';'?"),
        ('a,b\n1,"2\n', {}, "row 2: malformed CSV"),
        ("a,b\n1,2\n", {"image_size": (2, 2)}, "--image-size applies to folders of images"),
        ("a,b\n1,2\n", {"grayscale": True}, "--grayscale applies to folders of images"),
        ("a,b\n1,2\n", {"memmap": False}, "--memmap applies to .npy files"),
    ],
)
def test_csv_refusals(tmp_path, text, options, expected):
    message = error_of(write(tmp_path / "user.csv", text), **options)
    assert expected in message


def test_csv_first_bad_cell_in_reading_order(tmp_path):
    # Bad cells in two columns: the one in the earlier row is reported, whatever its column.
    path = write(tmp_path / "b.csv", "a,b,c\n1,2,3\n4,5,x\n7,y,9\n")
    assert error_of(path).endswith("row 3, column 'c': 'x' is not a number")


def test_text_file_refusals(tmp_path):
    (tmp_path / "bin.csv").write_bytes(b"a,b\n\x00\x01\n")
    assert "not a text file" in error_of(tmp_path / "bin.csv")
    (tmp_path / "latin.csv").write_bytes("é,b\n1,2\n".encode("latin-1"))
    assert "not UTF-8 text (byte 0xe9 at offset 0)" in error_of(tmp_path / "latin.csv")


# ---------------------------------------------------------------------------------------------
# Folders of images
# ---------------------------------------------------------------------------------------------


def save(path: Path, pixels: np.ndarray, **kwargs) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)
    return pixels


def test_flat_folder_of_grey_images(tmp_path):
    rng = np.random.default_rng(0)
    a = save(tmp_path / "imgs" / "b.png", rng.integers(0, 256, (4, 3), dtype=np.uint8))
    b = save(tmp_path / "imgs" / "a.PNG", rng.integers(0, 256, (4, 3), dtype=np.uint8))
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    save(tmp_path / "imgs" / ".hidden" / "c.png", rng.integers(0, 256, (9, 9), dtype=np.uint8))
    with pytest.warns(VaekitWarning, match=r"skipped 1 file that is not a PNG or JPEG image: notes\.txt$"):
        ds = load_file(tmp_path / "imgs")
    assert ds.skipped == ["notes.txt"]  # the hidden folder is neither read nor counted
    assert ds.kind == "image" and ds.test is None and ds.train_labels is None and ds.classes is None
    assert ds.train.shape == (2, 1, 4, 3)  # sorted by name: a.PNG, then b.png
    np.testing.assert_array_equal(ds.train[:, 0].numpy(), np.stack([b, a]).astype(np.float32) / 255)


def test_class_subfolders_rgb(tmp_path):
    rng = np.random.default_rng(0)
    pix = {}
    for name in ("zebra/1.png", "cat/x/2.png", "cat/1.png", "zebra/0.png"):
        pix[name] = save(tmp_path / "imgs" / name, rng.integers(0, 256, (5, 4, 3), dtype=np.uint8))
    ds = load_file(tmp_path / "imgs")
    order = ["cat/1.png", "cat/x/2.png", "zebra/0.png", "zebra/1.png"]
    assert ds.classes == ["cat", "zebra"] and ds.train_labels.tolist() == [0, 0, 1, 1]
    assert ds.train.shape == (4, 3, 5, 4)
    expected = np.stack([pix[n] for n in order]).transpose(0, 3, 1, 2).astype(np.float32) / 255
    np.testing.assert_array_equal(ds.train.numpy(), expected)


def test_mixed_grey_and_colour_read_as_rgb_or_grayscale(tmp_path):
    grey = save(tmp_path / "imgs" / "a.png", np.full((2, 2), 100, np.uint8))
    save(tmp_path / "imgs" / "b.png", np.zeros((2, 2, 3), np.uint8) + np.array([255, 0, 0], np.uint8))
    ds = load_file(tmp_path / "imgs")
    assert ds.train.shape == (2, 3, 2, 2)
    assert torch.all(ds.train[0] == 100 / 255)  # grey spread over three channels
    assert ds.train[1, :, 0, 0].tolist() == [1.0, 0.0, 0.0]
    ds = load_file(tmp_path / "imgs", grayscale=True)
    assert ds.train.shape == (2, 1, 2, 2)
    np.testing.assert_array_equal(ds.train[0, 0].numpy(), grey.astype(np.float32) / 255)
    # ITU-R 601 luma of pure red: 299/1000 * 255, rounded by Pillow.
    assert abs(float(ds.train[1, 0, 0, 0]) - 0.299) < 1 / 255


def test_jpeg_and_rgba(tmp_path):
    save(tmp_path / "imgs" / "a.jpg", np.full((6, 6, 3), 128, np.uint8), quality=95)
    save(tmp_path / "imgs" / "b.png", np.full((6, 6, 4), 128, np.uint8))
    ds = load_file(tmp_path / "imgs")
    assert ds.train.shape == (2, 3, 6, 6)
    assert torch.allclose(ds.train, torch.full_like(ds.train, 128 / 255), atol=3 / 255)


def test_image_size_resizes_bilinear(tmp_path):
    save(tmp_path / "imgs" / "a.png", np.full((8, 6), 200, np.uint8))
    save(tmp_path / "imgs" / "b.png", np.full((4, 10), 50, np.uint8))
    message = error_of(tmp_path / "imgs")
    assert message == (
        f"{tmp_path / 'imgs'}: images differ in size: a.png is 8x6 and b.png is 4x10 (height x width); "
        "pass --image-size H W to resize them"
    )
    ds = load_file(tmp_path / "imgs", image_size=(3, 5))
    assert ds.train.shape == (2, 1, 3, 5)
    np.testing.assert_allclose(ds.train[0].numpy(), 200 / 255, atol=1e-6)  # constant images stay constant
    np.testing.assert_allclose(ds.train[1].numpy(), 50 / 255, atol=1e-6)


def test_image_size_matches_pillow_bilinear(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    save(tmp_path / "imgs" / "a.png", pixels)
    ds = load_file(tmp_path / "imgs", image_size=(4, 6))
    expected = np.asarray(Image.fromarray(pixels).resize((6, 4), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(ds.train[0, 0].numpy(), expected.astype(np.float32) / 255)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    save(tmp_path / "imgs" / "a.png", np.array([[0, 65535], [32896, 1000]], np.uint16))
    ds = load_file(tmp_path / "imgs")
    assert ds.train.shape == (1, 1, 2, 2)
    np.testing.assert_allclose(ds.train[0, 0].numpy(), [[0, 1], [128 / 255, 4 / 255]], atol=1e-6)


def test_image_folder_refusals(tmp_path):
    (tmp_path / "empty").mkdir()
    assert error_of(tmp_path / "empty") == f"{tmp_path / 'empty'}: no PNG or JPEG images found"
    (tmp_path / "gifs").mkdir()
    (tmp_path / "gifs" / "a.gif").write_bytes(b"GIF89a")
    assert error_of(tmp_path / "gifs").endswith("no PNG or JPEG images found (it holds 1 other files, e.g. a.gif)")

    save(tmp_path / "bad" / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "bad" / "b.png").write_bytes(b"not a png at all")
    with pytest.raises(VaekitError) as info:
        load_file(tmp_path / "bad")
    assert str(info.value) == f"{tmp_path / 'bad' / 'b.png'}: cannot read image (not a PNG or JPEG file, or corrupt)"

    save(tmp_path / "cut" / "a.png", np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    data = (tmp_path / "cut" / "a.png").read_bytes()
    (tmp_path / "cut" / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(VaekitError) as info:
        load_file(tmp_path / "cut")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'cut' / 'a.png'}: cannot read image (") and "\n" not in message

    save(tmp_path / "ok" / "a.png", np.zeros((4, 4), np.uint8))
    assert "--image-size takes two positive integers H W" in error_of(tmp_path / "ok", image_size=(0, 4))
    assert error_of(tmp_path / "ok", label_column="x").endswith("--label-column applies to .csv files and .tsv files")
    assert error_of(tmp_path / "ok", memmap=True).endswith("--memmap applies to .npy files")


# ---------------------------------------------------------------------------------------------
# load_file dispatch
# ---------------------------------------------------------------------------------------------


def test_sources_registry_and_unknown_suffix(tmp_path):
    assert set(sources.SOURCES) == {".npy", ".npz", ".csv", ".tsv", "images"}
    assert error_of(tmp_path / "absent.csv") == f"{tmp_path / 'absent.csv'}: no such file or folder"
    write(tmp_path / "x.parquet", "PAR1")
    assert error_of(tmp_path / "x.parquet") == (
        f"{tmp_path / 'x.parquet'}: cannot read .parquet; give a .npy, .npz, .csv, .tsv file or a folder of images"
    )
    save(tmp_path / "one.png", np.zeros((2, 2), np.uint8))
    assert error_of(tmp_path / "one.png").endswith("; for images, give the folder that holds them")
    # Suffixes in any case.
    np.save(tmp_path / "u.npy", np.ones((2, 2)))
    (tmp_path / "u.npy").rename(tmp_path / "U.NPY")
    assert load_file(tmp_path / "U.NPY").shape == (2,)
