"""Tests for vaekit.data.builtin on tiny synthetic files (no network, no real MNIST)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.data import builtin as datasets
from vaekit.data.builtin import (
    DATASETS,
    IDX_FILES,
    Dataset,
    binarize,
    cache_dir,
    is_path,
    load_array,
    load_dataset,
    register_dataset,
)
from vaekit.data import files, types
from vaekit.errors import VaekitError

H, W = 4, 3  # not square, so a swapped height and width would show


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test reads the user's data or cache, or touches the network."""
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", [(tmp_path / "nowhere").as_uri() + "/"])
    monkeypatch.setattr(datasets, "FASHION_MNIST_MIRRORS", [(tmp_path / "nowhere").as_uri() + "/"])


def error_of(fn, *args, **kwargs) -> str:
    """The VaekitError message raised by ``fn``, checked to be a single line."""
    with pytest.raises(VaekitError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------
# Tiny IDX files
# ---------------------------------------------------------------------------------------------


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX: magic 0x000008<ndim>, big-endian uint32 dims, then data."""
    header = (0x0800 | arr.ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def toy_arrays(n_train: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, H, W), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, H, W), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_idx_set(folder: Path, arrays: dict[str, np.ndarray], gz: bool | str = True) -> dict[str, str]:
    """Write the four files (all gzipped, all plain, or ``"mixed"``); return their checksums."""
    folder.mkdir(parents=True, exist_ok=True)
    checksums = {}
    for i, (fname, arr) in enumerate(arrays.items()):
        data = idx_bytes(arr)
        checksums[fname] = hashlib.sha256(data).hexdigest()
        zipped = gz if gz != "mixed" else i % 2 == 0
        if zipped:
            (folder / f"{fname}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / fname).write_bytes(data)
    return checksums


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A folder of tiny gzipped MNIST-format files whose checksums stand in for MNIST's."""
    arrays = toy_arrays()
    folder = tmp_path / "toy"
    checksums = write_idx_set(folder, arrays)
    monkeypatch.setattr(datasets, "MNIST_SHA256", checksums)
    return folder, arrays, checksums


def assert_matches(ds: Dataset, arrays: dict[str, np.ndarray]) -> None:
    for split, images, labels in (
        ("train", ds.train, ds.train_labels),
        ("t10k", ds.test, ds.test_labels),
    ):
        raw = arrays[f"{split}-images-idx3-ubyte"]
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        assert images.shape == (len(raw), 1, H, W)
        torch.testing.assert_close(images, torch.from_numpy(raw[:, None].astype(np.float32) / 255), rtol=0, atol=0)
        assert labels.tolist() == arrays[f"{split}-labels-idx1-ubyte"].tolist()
    assert ds.shape == (1, H, W)


# ---------------------------------------------------------------------------------------------
# Registry and digits
# ---------------------------------------------------------------------------------------------


def test_registry_lists_builtin_datasets():
    assert {"digits", "mnist", "fashion-mnist"} <= set(DATASETS)


def test_unknown_dataset_names_the_choices_and_the_file_kinds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = error_of(load_dataset, "cifar")
    assert message == (
        "unknown dataset 'cifar'; choose one of: digits, fashion-mnist, mnist; "
        "or give a path to a .npy, .npz, .csv, .tsv file or a folder of images"
    )


@pytest.mark.parametrize("name", ["data/x.csv", "x.npy", "x.CSV"])
def test_a_missing_path_is_named_as_a_file(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    assert error_of(load_dataset, name) == f"{name}: no such file or folder"


# ---------------------------------------------------------------------------------------------
# is_path: the one rule telling a dataset name from a path
# ---------------------------------------------------------------------------------------------


def test_is_path_a_registered_name_is_never_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not is_path("digits") and not is_path("fashion-mnist")
    # Not even when a file or folder of that name exists: the registered dataset wins.
    (tmp_path / "digits").write_text("1,2\n")
    (tmp_path / "mnist").mkdir()
    assert not is_path("digits") and not is_path("mnist")
    assert load_dataset("digits").test is not None


def test_is_path_an_existing_file_or_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes").write_text("1,2\n")  # a bare word, no known suffix: it exists
    (tmp_path / "pictures").mkdir()
    assert is_path("notes") and is_path("pictures")
    assert is_path(tmp_path / "notes") and is_path(str(tmp_path / "pictures"))


@pytest.mark.parametrize("name", ["x.npy", "x.npz", "x.csv", "x.tsv", "x.CSV", "data/x", "./x", "data/x.png"])
def test_is_path_a_missing_file_that_looks_like_one(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    assert is_path(name)
    assert error_of(load_dataset, name) == f"{name}: no such file or folder"


@pytest.mark.parametrize("name", ["cifar", "mnits", "x.png", "x.txt", ""])
def test_is_path_an_unknown_bare_word_is_a_dataset_name(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    assert not is_path(name)
    assert error_of(load_dataset, name).startswith(f"unknown dataset {name!r}; ")


def test_is_path_follows_the_registered_readers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(files, "SOURCES", {**files.SOURCES, ".parquet": files.SOURCES[".csv"]})
    assert files.file_suffixes() == [".npy", ".npz", ".csv", ".tsv", ".parquet"]
    assert is_path("x.parquet")


def test_load_dataset_reads_a_path_through_sources(tmp_path):
    arr = np.random.default_rng(0).random((6, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", arr)
    ds = load_dataset(str(tmp_path / "x.npy"))
    assert ds.name == str(tmp_path / "x.npy") and ds.test is None and ds.kind == "array"
    np.testing.assert_array_equal(ds.train.numpy(), arr)
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,u\n3,4,v\n")
    ds = load_dataset(str(tmp_path / "t.csv"), label_column="y", image_size=None, grayscale=False, memmap=None)
    assert ds.columns == ["a", "b"] and ds.classes == ["u", "v"] and ds.train_labels.tolist() == [0, 1]


def test_load_dataset_refuses_options_that_do_not_apply(tmp_path):
    assert error_of(load_dataset, "digits", image_size=(8, 8)) == (
        "digits: --image-size applies to your own files, not to the built-in dataset digits"
    )
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    message = error_of(load_dataset, str(tmp_path / "x.npy"), data_dir=tmp_path)
    assert message == f"{tmp_path / 'x.npy'}: --data-dir applies to the built-in datasets, not to a file or folder"
    message = error_of(load_dataset, str(tmp_path / "x.npy"), label_column="y")
    assert message == f"{tmp_path / 'x.npy'}: --label-column applies to .csv files and .tsv files"


def test_dataset_defaults_keep_old_constructors_working():
    ds = Dataset("ones", torch.ones(4, 2), torch.ones(1, 2))
    assert ds.kind == "image" and ds.columns is None and ds.classes is None and ds.shape == (2,)


def test_register_dataset_adds_a_loader(monkeypatch):
    monkeypatch.setattr(datasets, "DATASETS", dict(DATASETS))

    @register_dataset("ones")
    def _ones(data_dir=None):
        return Dataset("ones", torch.ones(4, 2), torch.ones(1, 2), None, None)

    ds = load_dataset("ones")
    assert ds.shape == (2,) and ds.train_labels is None


def test_digits_shapes_values_and_labels():
    ds = load_dataset("digits")
    assert ds.name == "digits" and ds.shape == (1, 8, 8)
    assert ds.train.dtype == torch.float32 and ds.train_labels.dtype == torch.int64
    assert len(ds.train) == len(ds.train_labels) and len(ds.test) == len(ds.test_labels)
    for x in (ds.train, ds.test):
        assert x.min() == 0.0 and x.max() == 1.0  # 0..16 divided by 16
    assert set(ds.train_labels.tolist()) == set(range(10)) == set(ds.test_labels.tolist())


def test_digits_split_is_fixed_stratified_and_a_partition():
    from sklearn.datasets import load_digits

    a, b = load_dataset("digits"), load_dataset("digits")
    torch.testing.assert_close(a.train, b.train, rtol=0, atol=0)
    torch.testing.assert_close(a.test, b.test, rtol=0, atol=0)
    assert torch.equal(a.train_labels, b.train_labels) and torch.equal(a.test_labels, b.test_labels)
    assert len(a.train) + len(a.test) == 1797

    # Train and test together are exactly the 1797 examples, each once (counts of duplicates kept).
    x, y = load_digits(return_X_y=True)
    full = np.column_stack([x / 16.0, y]).astype(np.float32)
    ours = np.concatenate([
        np.column_stack([a.train.reshape(-1, 64).numpy(), a.train_labels.numpy()]),
        np.column_stack([a.test.reshape(-1, 64).numpy(), a.test_labels.numpy()]),
    ])
    for arr in (full, ours):
        arr[:] = arr[np.lexsort(arr.T[::-1])]
    np.testing.assert_array_equal(full, ours)

    # Stratified: every class gives 20 % (rounded) of its examples to the test set.
    per_class = np.bincount(y)
    expected_test = np.round(0.2 * per_class).astype(int)
    assert a.test_labels.bincount(minlength=10).tolist() == expected_test.tolist()


# ---------------------------------------------------------------------------------------------
# IDX round trips
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False, "mixed"])
def test_idx_round_trip(tmp_path, gz):
    arrays = toy_arrays()
    checksums = write_idx_set(tmp_path / "toy", arrays, gz=gz)
    ds = datasets._load_idx_dataset("toy", checksums, [], tmp_path / "toy")
    assert ds.name == "toy"
    assert_matches(ds, arrays)


def test_mnist_from_data_dir(toy):
    folder, arrays, _ = toy
    ds = load_dataset("mnist", data_dir=folder)
    assert_matches(ds, arrays)
    assert ds.name == "mnist"


def test_gzipped_content_without_gz_suffix_loads(tmp_path):
    arrays = toy_arrays()
    checksums = write_idx_set(tmp_path / "d", arrays, gz=True)
    for f in IDX_FILES:
        (tmp_path / "d" / f"{f}.gz").rename(tmp_path / "d" / f)
    assert_matches(datasets._load_idx_dataset("toy", checksums, [], tmp_path / "d"), arrays)


# ---------------------------------------------------------------------------------------------
# IDX errors: each names the file and the problem
# ---------------------------------------------------------------------------------------------


def test_missing_file_in_explicit_data_dir_is_an_error_not_a_download(toy, tmp_path, monkeypatch):
    folder, arrays, _ = toy
    # A working mirror: if the loader downloaded instead of failing, this test would notice.
    mirror = tmp_path / "mirror"
    write_idx_set(mirror, arrays)
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", [mirror.as_uri()])
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()

    message = error_of(load_dataset, "mnist", folder)
    assert str(folder) in message and "lacks t10k-labels-idx1-ubyte" in message
    assert "train-images-idx3-ubyte," not in message.split("lacks")[1].split(";")[0]  # only the missing one
    assert not (tmp_path / "cache").exists()


def test_data_dir_that_does_not_exist(tmp_path):
    message = error_of(load_dataset, "mnist", tmp_path / "absent")
    assert str(tmp_path / "absent") in message and "does not exist" in message


def test_data_dir_pointing_at_the_root_suggests_the_subfolder(tmp_path, monkeypatch):
    checksums = write_idx_set(tmp_path / "root" / "mnist", toy_arrays())
    monkeypatch.setattr(datasets, "MNIST_SHA256", checksums)
    message = error_of(load_dataset, "mnist", tmp_path / "root")
    assert f"{tmp_path / 'root' / 'mnist'} holds them" in message


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx(tmp_path, gz):
    arrays = toy_arrays()
    checksums = write_idx_set(tmp_path / "d", arrays, gz=False)
    path = tmp_path / "d" / "train-images-idx3-ubyte"
    data = path.read_bytes()
    path.unlink()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data[:30]))
    else:
        path.write_bytes(data[:30])
    message = error_of(datasets._load_idx_dataset, "toy", checksums, [], tmp_path / "d")
    assert message.startswith(f"{path}: truncated IDX file")
    assert f"header says {16 + 5 * H * W} bytes, found 30" in message


def test_idx_with_trailing_bytes(tmp_path):
    checksums = write_idx_set(tmp_path / "d", toy_arrays(), gz=False)
    path = tmp_path / "d" / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\0\0")
    message = error_of(datasets._load_idx_dataset, "toy", checksums, [], tmp_path / "d")
    assert message.startswith(f"{path}: IDX file has 2 bytes beyond")


def test_wrong_magic(tmp_path):
    arrays = toy_arrays()
    checksums = write_idx_set(tmp_path / "d", arrays, gz=False)
    # A labels file where the images should be: a valid IDX file of the wrong kind.
    path = tmp_path / "d" / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(arrays["train-labels-idx1-ubyte"]))
    message = error_of(datasets._load_idx_dataset, "toy", checksums, [], tmp_path / "d")
    assert message.startswith(f"{path}: ")
    assert "magic number 0x00000801, expected 0x00000803" in message


@pytest.mark.parametrize("damage", ["cut", "not-gzip"])
def test_corrupt_gzip(tmp_path, damage):
    checksums = write_idx_set(tmp_path / "d", toy_arrays(), gz=True)
    path = tmp_path / "d" / "train-labels-idx1-ubyte.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if damage == "cut" else b"this is not gzip")
    message = error_of(datasets._load_idx_dataset, "toy", checksums, [], tmp_path / "d")
    assert message.startswith(f"{path}: corrupt gzip file")


def test_checksum_mismatch(tmp_path):
    arrays = toy_arrays()
    checksums = write_idx_set(tmp_path / "d", arrays, gz=True)
    arrays["t10k-images-idx3-ubyte"][0, 0, 0] ^= 1  # one bit in one pixel
    write_idx_set(tmp_path / "d", arrays, gz=True)
    path = tmp_path / "d" / "t10k-images-idx3-ubyte.gz"
    actual = hashlib.sha256(idx_bytes(arrays["t10k-images-idx3-ubyte"])).hexdigest()
    message = error_of(datasets._load_idx_dataset, "toy", checksums, [], tmp_path / "d")
    assert message.startswith(f"{path}: SHA-256 mismatch")
    assert checksums["t10k-images-idx3-ubyte"][:16] in message and actual[:16] in message


def test_images_and_labels_disagree_in_count(tmp_path):
    arrays = toy_arrays()
    arrays["train-labels-idx1-ubyte"] = arrays["train-labels-idx1-ubyte"][:4]
    checksums = write_idx_set(tmp_path / "d", arrays)
    message = error_of(datasets._load_idx_dataset, "toy", checksums, [], tmp_path / "d")
    assert "holds 5 images" in message and "holds 4 labels" in message


# ---------------------------------------------------------------------------------------------
# Download into the cache
# ---------------------------------------------------------------------------------------------


def test_cache_dir_resolution(tmp_path, monkeypatch):
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("VAEKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "vaekit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "vaekit"


def test_download_into_cache(tmp_path, monkeypatch):
    arrays = toy_arrays()
    mirror = tmp_path / "mirror"
    checksums = write_idx_set(mirror, arrays, gz=True)
    monkeypatch.setattr(datasets, "MNIST_SHA256", checksums)
    # The first mirror fails; the loader must go on to the second.
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", [(tmp_path / "nowhere").as_uri(), mirror.as_uri() + "/"])

    ds = load_dataset("mnist")
    assert_matches(ds, arrays)
    cached = tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in cached.iterdir()) == sorted(f"{f}.gz" for f in IDX_FILES)
    for f in IDX_FILES:
        assert hashlib.sha256(gzip.decompress((cached / f"{f}.gz").read_bytes())).hexdigest() == checksums[f]

    # Second time the cache serves it: no mirror needed.
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", [])
    assert_matches(load_dataset("mnist"), arrays)


def test_download_fetches_only_missing_files(tmp_path, monkeypatch):
    arrays = toy_arrays()
    mirror = tmp_path / "mirror"
    checksums = write_idx_set(mirror, arrays, gz=True)
    write_idx_set(tmp_path / "cache" / "mnist", {"train-images-idx3-ubyte": arrays["train-images-idx3-ubyte"]}, gz=False)
    monkeypatch.setattr(datasets, "MNIST_SHA256", checksums)
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", [mirror.as_uri()])
    assert_matches(load_dataset("mnist"), arrays)
    names = {p.name for p in (tmp_path / "cache" / "mnist").iterdir()}
    assert "train-images-idx3-ubyte" in names and "train-images-idx3-ubyte.gz" not in names


def test_offline_says_where_to_put_the_files_and_leaves_nothing(tmp_path, toy):
    message = error_of(load_dataset, "mnist")
    cached = tmp_path / "cache" / "mnist"
    assert message.startswith("mnist: could not download train-images-idx3-ubyte.gz (offline?")
    assert f"in {cached}," in message and "--data-dir DIR" in message and "VAEKIT_DATA=ROOT" in message
    for f in IDX_FILES:
        assert f in message
    assert list(cached.iterdir()) == []


def test_corrupt_download_is_rejected_and_removed(tmp_path, monkeypatch):
    arrays, damaged = toy_arrays(), toy_arrays()
    good, bad = tmp_path / "good", tmp_path / "bad"
    checksums = write_idx_set(good, arrays)
    damaged["train-images-idx3-ubyte"][0, 0, 0] ^= 1
    write_idx_set(bad, damaged)
    monkeypatch.setattr(datasets, "MNIST_SHA256", checksums)
    cached = tmp_path / "cache" / "mnist"

    monkeypatch.setattr(datasets, "MNIST_MIRRORS", [bad.as_uri()])
    message = error_of(load_dataset, "mnist")
    assert "could not download train-images-idx3-ubyte.gz" in message and "SHA-256 mismatch" in message
    assert list(cached.iterdir()) == []

    # A bad mirror followed by a good one: the good copy wins.
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", [bad.as_uri(), good.as_uri()])
    assert_matches(load_dataset("mnist"), arrays)
    assert all(not p.name.startswith(".") for p in cached.iterdir())


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST: the same files and lookup as MNIST, its own checksums and mirrors
# ---------------------------------------------------------------------------------------------


def test_fashion_mnist_from_data_dir(tmp_path, monkeypatch):
    arrays = toy_arrays()
    checksums = write_idx_set(tmp_path / "f", arrays)
    monkeypatch.setattr(datasets, "FASHION_MNIST_SHA256", checksums)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path / "f")
    assert_matches(ds, arrays)
    assert ds.name == "fashion-mnist" and ds.classes[0] == "T-shirt/top" and len(ds.classes) == 10


def test_fashion_mnist_has_its_own_checksums(tmp_path, monkeypatch):
    # MNIST's digests accept the files; Fashion-MNIST's must still be the ones checked.
    checksums = write_idx_set(tmp_path / "f", toy_arrays())
    monkeypatch.setattr(datasets, "MNIST_SHA256", checksums)
    monkeypatch.setattr(datasets, "FASHION_MNIST_SHA256", {f: "0" * 64 for f in IDX_FILES})
    assert "SHA-256 mismatch" in error_of(load_dataset, "fashion-mnist", tmp_path / "f")


def test_fashion_mnist_without_digests_checks_the_structure(tmp_path, monkeypatch):
    # TODO(checksums): while FASHION_MNIST_SHA256 holds None, shapes and labels are checked.
    arrays = toy_arrays()
    write_idx_set(tmp_path / "f", arrays)
    monkeypatch.setattr(datasets, "FASHION_MNIST_SHA256", dict.fromkeys(IDX_FILES))
    message = error_of(load_dataset, "fashion-mnist", tmp_path / "f")
    assert message.startswith(f"{tmp_path / 'f' / 'train-images-idx3-ubyte.gz'}: holds an array of shape (5, {H}, {W}), expected (60000, 28, 28)")

    shapes = {f: a.shape for f, a in arrays.items()}
    monkeypatch.setattr(datasets, "IDX_SHAPES", shapes)
    assert_matches(load_dataset("fashion-mnist", data_dir=tmp_path / "f"), arrays)

    arrays["t10k-labels-idx1-ubyte"][1] = 10
    write_idx_set(tmp_path / "f", arrays)
    message = error_of(load_dataset, "fashion-mnist", tmp_path / "f")
    assert message.startswith(f"{tmp_path / 'f' / 't10k-labels-idx1-ubyte.gz'}: holds label 10, expected 0..9")


def test_fashion_mnist_missing_file_says_where_to_put_them(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "f", toy_arrays())
    (tmp_path / "f" / "train-labels-idx1-ubyte.gz").unlink()
    message = error_of(load_dataset, "fashion-mnist", tmp_path / "f")
    assert message.startswith(f"fashion-mnist: data directory {tmp_path / 'f'} lacks train-labels-idx1-ubyte")
    assert "put the four fashion-mnist files" in message

    # No data dir: the download fails (no network in tests) and the line says where to put them.
    message = error_of(load_dataset, "fashion-mnist")
    cached = tmp_path / "cache" / "fashion-mnist"
    assert message.startswith("fashion-mnist: could not download train-images-idx3-ubyte.gz")
    assert "put the four fashion-mnist files" in message and f"in {cached}," in message
    assert "VAEKIT_DATA=ROOT with them in ROOT/fashion-mnist" in message


def test_fashion_mnist_under_vaekit_data(tmp_path, monkeypatch):
    arrays = toy_arrays()
    monkeypatch.setattr(datasets, "FASHION_MNIST_SHA256", write_idx_set(tmp_path / "data" / "fashion-mnist", arrays))
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "data"))
    assert_matches(load_dataset("fashion-mnist"), arrays)
    assert not (tmp_path / "cache").exists()


def test_fashion_mnist_downloads_from_its_own_mirrors(tmp_path, monkeypatch):
    arrays = toy_arrays()
    mirror = tmp_path / "mirror"
    checksums = write_idx_set(mirror, arrays)
    monkeypatch.setattr(datasets, "FASHION_MNIST_SHA256", checksums)
    monkeypatch.setattr(datasets, "FASHION_MNIST_MIRRORS", [mirror.as_uri()])
    assert_matches(load_dataset("fashion-mnist"), arrays)
    assert sorted(p.name for p in (tmp_path / "cache" / "fashion-mnist").iterdir()) == sorted(f"{f}.gz" for f in IDX_FILES)
    assert not (tmp_path / "cache" / "mnist").exists()


# ---------------------------------------------------------------------------------------------
# VAEKIT_DATA
# ---------------------------------------------------------------------------------------------


def test_vaekit_data_root(tmp_path, monkeypatch):
    arrays = toy_arrays()
    checksums = write_idx_set(tmp_path / "data" / "mnist", arrays, gz="mixed")
    monkeypatch.setattr(datasets, "MNIST_SHA256", checksums)
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "data"))
    assert_matches(load_dataset("mnist"), arrays)
    assert not (tmp_path / "cache").exists()


def test_vaekit_data_without_the_files_fails_without_download(tmp_path, monkeypatch):
    arrays = toy_arrays()
    mirror = tmp_path / "mirror"
    monkeypatch.setattr(datasets, "MNIST_SHA256", write_idx_set(mirror, arrays))
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", [mirror.as_uri()])
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "data"))
    message = error_of(load_dataset, "mnist")
    assert message.startswith(f"mnist: VAEKIT_DATA={tmp_path / 'data'} but {tmp_path / 'data' / 'mnist'} does not exist")
    assert not (tmp_path / "cache").exists()


def test_data_dir_wins_over_vaekit_data(toy, tmp_path, monkeypatch):
    folder, arrays, _ = toy
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "elsewhere"))
    assert_matches(load_dataset("mnist", data_dir=folder), arrays)


# ---------------------------------------------------------------------------------------------
# load_array
# ---------------------------------------------------------------------------------------------


def test_load_array_vectors(tmp_path):
    arr = np.random.default_rng(0).random((6, 5))
    np.save(tmp_path / "x.npy", arr)
    x = load_array(tmp_path / "x.npy", expected_shape=(5,))
    assert x.dtype == torch.float32 and x.shape == (6, 5)
    np.testing.assert_array_equal(x.numpy(), arr.astype(np.float32))


def test_load_array_grey_images_get_a_channel_and_uint8_is_scaled(tmp_path):
    # uint8 is read as load_file reads it (/255), so a model sees the same values at training
    # and at evaluation.
    arr = np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8)
    np.save(tmp_path / "x.npy", arr)
    x = load_array(str(tmp_path / "x.npy"), expected_shape=(1, 8, 8))
    assert x.shape == (2, 1, 8, 8)
    np.testing.assert_array_equal(x[:, 0].numpy(), arr.astype(np.float32) / 255)


def test_load_array_channels_and_bools(tmp_path):
    np.save(tmp_path / "c.npy", np.ones((2, 3, 4, 4), dtype=np.float16))
    assert load_array(tmp_path / "c.npy").shape == (2, 3, 4, 4)
    np.save(tmp_path / "b.npy", np.array([[True, False]]))
    assert load_array(tmp_path / "b.npy").tolist() == [[1.0, 0.0]]


def test_load_array_lives_in_files_and_stays_importable_here():
    assert load_array is files.load_array


# The reader's own refusals (empty, corrupt, object, NaN, shape...) are tested once, in
# test_sources.py; load_array adds the check against the model's shape.
@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "no such file"),
        (np.zeros((3, 9, 9)), "examples have shape (1, 9, 9) but the model was trained on (1, 8, 8)"),
        (np.zeros((3, 64)), "examples have shape (64,) but the model was trained on (1, 8, 8); reshape it to (3, 1, 8, 8)"),
    ],
)
def test_load_array_refusals(tmp_path, content, expected):
    path = tmp_path / "user.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, np.ndarray):
        np.save(path, content, allow_pickle=content.dtype == object)
    elif content == "npz":
        np.savez(path.with_suffix(""), a=np.zeros((2, 2)))
        path.with_suffix(".npz").rename(path)
    elif content == "truncated":
        np.save(path, np.zeros((10, 10)))
        path.write_bytes(path.read_bytes()[:200])
    message = error_of(load_array, path, expected_shape=(1, 8, 8))
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_load_array_directory(tmp_path):
    assert "is a directory" in error_of(load_array, tmp_path)


def test_load_array_never_unpickles(tmp_path, monkeypatch):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    import pickle

    def forbidden(*args, **kwargs):
        raise AssertionError("load_array unpickled the file")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    assert "dtype object" in error_of(load_array, tmp_path / "o.npy")


# ---------------------------------------------------------------------------------------------
# vaekit.data.types: the leaf both builtin and files import
# ---------------------------------------------------------------------------------------------


def test_types_are_the_ones_builtin_and_files_use():
    assert datasets.Dataset is types.Dataset is files.Dataset
    assert datasets.PathLike is types.PathLike is files.PathLike


def test_one_line_and_cannot_read():
    assert types.one_line(ValueError("bad\n   header\t here")) == "bad header here"
    assert types.one_line(EOFError()) == "EOFError"
    error = types.cannot_read("x.csv", PermissionError(13, "Permission denied"))
    assert isinstance(error, VaekitError) and str(error) == "x.csv: cannot read (Permission denied)"


def test_read_bytes(tmp_path):
    (tmp_path / "a").write_bytes(b"\x00\x01")
    assert types.read_bytes(tmp_path / "a") == b"\x00\x01"
    assert error_of(types.read_bytes, tmp_path / "missing") == f"{tmp_path / 'missing'}: cannot read (No such file or directory)"


def _vaekit_imports(module) -> set[str]:
    """The vaekit modules a module imports, at any level (inside functions and TYPE_CHECKING too)."""
    import ast

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = module.__name__.split(".")[: -node.level]
            stem = ".".join(base + ([node.module] if node.module else []))
            found |= {stem} if node.module else {f"{stem}.{a.name}" for a in node.names}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            found |= {n for n in names if n.split(".")[0] == "vaekit"}
    return found


def test_the_data_layer_imports_in_one_direction():
    assert _vaekit_imports(types) == {"vaekit.errors"}
    assert _vaekit_imports(files) == {"vaekit.errors", "vaekit.data.types"}
    assert "vaekit.data.files" in _vaekit_imports(datasets)


# ---------------------------------------------------------------------------------------------
# binarize
# ---------------------------------------------------------------------------------------------


def test_binarize_draws_bernoulli_with_the_given_probabilities():
    p = torch.tensor([0.0, 0.25, 0.5, 1.0]).repeat(20000, 1)
    a = binarize(p, generator=torch.Generator().manual_seed(0))
    b = binarize(p, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert a[:, 0].sum() == 0 and a[:, 3].all()
    # Mean of 20000 draws: standard error <= 0.0036, so 0.015 is over 4 standard errors.
    torch.testing.assert_close(a.mean(0), p[0], atol=0.015, rtol=0)
