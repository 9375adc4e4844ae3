"""Real-data checks of the MNIST loader, on the files kept beside the repository.

The files live in ``shared/data/mnist`` next to the repository root (on the development
machine only); the tests skip where that folder is absent. The library itself never looks
there: these tests hand it the folder through ``data_dir`` and through ``VAEKIT_DATA``.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest
import torch

from vaekit.data import builtin as datasets
from vaekit.data.builtin import IDX_FILES, MNIST_SHA256, load_dataset

# tests/ -> repository root -> its parent, which holds shared/
DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST_DIR = DATA_ROOT / "mnist"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all(datasets._find_idx_file(MNIST_DIR, f) for f in IDX_FILES),
        reason=f"the MNIST files are not in {MNIST_DIR}",
    ),
]


@pytest.fixture(autouse=True)
def no_download(tmp_path, monkeypatch):
    """An empty cache and no mirrors: a test passes only if the data came from shared/."""
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", [])


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", data_dir=MNIST_DIR)


def test_sizes_shapes_and_values(mnist):
    assert mnist.name == "mnist" and mnist.shape == (1, 28, 28)
    assert mnist.train.shape == (60000, 1, 28, 28) and mnist.test.shape == (10000, 1, 28, 28)
    assert mnist.train.dtype == torch.float32 and mnist.train_labels.dtype == torch.int64
    for x in (mnist.train, mnist.test):
        assert x.min() == 0.0 and x.max() == 1.0
    # Grey levels are k/255: scaling back gives integers.
    k = mnist.test[:100] * 255
    torch.testing.assert_close(k, k.round(), rtol=0, atol=1e-4)


def test_label_counts(mnist):
    train_counts = torch.bincount(mnist.train_labels, minlength=10).tolist()
    test_counts = torch.bincount(mnist.test_labels, minlength=10).tolist()
    # The published class sizes of MNIST.
    assert train_counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert test_counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_checksum_table_matches_the_files():
    for f in IDX_FILES:
        path = datasets._find_idx_file(MNIST_DIR, f)
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        assert hashlib.sha256(data).hexdigest() == MNIST_SHA256[f], f
    sums = MNIST_DIR / "SHA256SUMS.raw"
    if sums.exists():
        listed = dict(reversed(line.split()) for line in sums.read_text().splitlines() if line.strip())
        assert listed == MNIST_SHA256


def test_vaekit_data_route(mnist, monkeypatch, tmp_path):
    monkeypatch.setenv("VAEKIT_DATA", str(DATA_ROOT))
    again = load_dataset("mnist")
    assert torch.equal(again.train, mnist.train) and torch.equal(again.test_labels, mnist.test_labels)
    assert not (tmp_path / "cache").exists()
