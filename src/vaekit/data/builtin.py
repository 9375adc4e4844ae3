"""The built-in datasets (digits, MNIST, Fashion-MNIST) and :func:`load_dataset`, the way in.

This module holds the registry of built-in datasets (:data:`DATASETS`, filled by
:func:`register_dataset`, so the command line can list them and a new one is one function),
their loaders, the reading of MNIST-style IDX files (gzip, parsing, SHA-256 or structure
checks), the download cache (:func:`cache_dir`) and :func:`binarize`. Every built-in dataset is
a :class:`~vaekit.data.types.Dataset` of float32 tensors with a fixed train/test split; images
are ``(N, C, H, W)`` scaled to [0, 1].

:func:`load_dataset` takes a registered name or the path of a user's file or folder;
:func:`is_path` is the one rule that tells them apart. A path is read by
:func:`vaekit.data.files.load_file` into a dataset with no test split. This module imports
:mod:`vaekit.data.files`, never the other way round; ``Dataset``, ``PathLike`` and
``load_array`` stay importable from here.

Bad input of any kind (a missing or corrupt file, a wrong checksum, an unknown name) raises
:class:`~vaekit.errors.VaekitError` with one line that names the file or dataset and says what
is wrong; the errors of numpy, gzip and urllib never reach the user.

Example
-------
>>> ds = load_dataset("digits")
>>> ds.shape, ds.train.shape[0] + ds.test.shape[0]
((1, 8, 8), 1797)
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import pathlib
import shutil
import sys
import tempfile
import urllib.request
import zlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..errors import VaekitError
from .files import file_suffixes, load_file
from .files import load_array  # noqa: F401  (importable here, where it lived before)
from .types import Dataset, PathLike, one_line, read_bytes

#: A loader takes the folder holding the files (or None) and returns the dataset.
Loader = Callable[[PathLike | None], Dataset]

DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator adding ``loader(data_dir) -> Dataset`` to :data:`DATASETS` under ``name``.

    Example
    -------
    >>> @register_dataset("ones")  # doctest: +SKIP
    ... def _ones(data_dir=None):
    ...     return Dataset("ones", torch.ones(10, 3), torch.ones(2, 3))
    """

    def wrap(loader: Loader) -> Loader:
        DATASETS[name] = loader
        return loader

    return wrap


def load_dataset(name: PathLike, data_dir: PathLike | None = None, **options: Any) -> Dataset:
    """Load the dataset registered as ``name``, or the user's file or folder at that path.

    Parameters
    ----------
    name : str or path
        A key of :data:`DATASETS`, or the path of a ``.npy``, ``.npz``, ``.csv``, ``.tsv``
        file or a folder of images (read by :func:`vaekit.data.files.load_file`). A registered
        name wins over a file of the same name.
    data_dir : path, optional
        The folder that directly holds a registered dataset's files (the command line's
        ``--data-dir``). Datasets shipped inside a package (``digits``) ignore it; a path
        refuses it.
    **options
        For a path: ``label_column``, ``id_column``, ``image_size``, ``grayscale``, ``memmap``, as
        :func:`vaekit.data.files.load_file` takes them. Refused for a registered dataset.

    Raises
    ------
    VaekitError
        For an unknown name, an option that does not apply, or input that is missing, corrupt
        or fails its checksum.

    Example
    -------
    >>> load_dataset("digits").train.shape
    torch.Size([1438, 1, 8, 8])
    """
    name = os.fspath(name)
    given = [k for k, v in options.items() if v is not None and v is not False]
    if not is_path(name):
        if name not in DATASETS:
            raise VaekitError(
                f"unknown dataset {name!r}; choose one of: {', '.join(sorted(DATASETS))}; "
                f"or give a path to a {', '.join(file_suffixes())} file or a folder of images"
            )
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise VaekitError(f"{name}: {flag} applies to your own files, not to the built-in dataset {name}")
        return DATASETS[name](data_dir)
    if not os.path.exists(name):
        raise VaekitError(f"{name}: no such file or folder")
    if data_dir is not None:
        raise VaekitError(f"{name}: --data-dir applies to the built-in datasets, not to a file or folder")
    return load_file(name, **options)


def is_path(name: PathLike) -> bool:
    """Whether ``name`` means a user's file or folder rather than a built-in dataset.

    The one rule, for :func:`load_dataset` and every caller that must decide before loading:
    a name registered in :data:`DATASETS` is never a path (it wins over a file of the same
    name); any other name is a path when it exists, or when it looks like one: it holds a path
    separator, or ends with a suffix a reader handles (:func:`vaekit.data.files.file_suffixes`,
    in any case). Anything else (``"mnits"``) is an unknown dataset name.

    Parameters
    ----------
    name : str or path
        A dataset name or a path, as the user gave it.

    Returns
    -------
    bool
        True for a path (existing or not), False for a registered or unknown dataset name.

    Example
    -------
    >>> is_path("digits"), is_path("missing.csv"), is_path("runs/x"), is_path("mnits")
    (False, True, True, False)
    """
    name = os.fspath(name)
    if name in DATASETS:
        return False
    if os.path.exists(name):
        return True
    if any(sep and sep in name for sep in ("/", os.sep, os.altsep)):
        return True
    return os.path.splitext(name)[1].lower() in file_suffixes()


def cache_dir() -> pathlib.Path:
    """Where downloads go: ``$VAEKIT_CACHE``, else ``$XDG_CACHE_HOME/vaekit``, else ``~/.cache/vaekit``.

    The folder is not created here; the downloader creates what it needs.
    """
    # An empty variable counts as unset, as the XDG specification says for XDG_CACHE_HOME.
    if os.environ.get("VAEKIT_CACHE"):
        return pathlib.Path(os.environ["VAEKIT_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return pathlib.Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "vaekit"
    return pathlib.Path.home() / ".cache" / "vaekit"


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One Bernoulli draw per value: grey levels in [0, 1] become 0/1 pixels.

    Drawing afresh each epoch ("dynamic binarization") is the usual protocol for MNIST
    log-likelihoods (Salakhutdinov and Murray, 2008); pass a seeded ``generator`` to make the
    draw reproducible.

    Example
    -------
    >>> binarize(torch.tensor([0.0, 1.0]))
    tensor([0., 1.])
    """
    return torch.bernoulli(x, generator=generator)


# ---------------------------------------------------------------------------------------------
# digits (scikit-learn, embedded)
# ---------------------------------------------------------------------------------------------

DIGITS_TEST_FRACTION = 0.2
# A constant, not the run seed: every run, model and comparison must see the same test set.
DIGITS_SPLIT_SEED = 0


@register_dataset("digits")
def load_digits(data_dir: PathLike | None = None) -> Dataset:
    """scikit-learn's 1797 handwritten digits (UCI), 8x8 grey levels 0..16 scaled to [0, 1].

    Shipped inside scikit-learn, so it loads offline; ``data_dir`` is ignored. The test set is
    20 % of each class, chosen by a numpy generator with the fixed seed
    :data:`DIGITS_SPLIT_SEED`, so the split is the same on every call and every machine.

    Example
    -------
    >>> load_digits().shape
    (1, 8, 8)
    """
    from sklearn.datasets import load_digits as _sk_load_digits  # sklearn is slow to import

    x, y = _sk_load_digits(return_X_y=True)  # (1797, 64) float64 in 0..16, (1797,) int
    images = (x.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    labels = y.astype(np.int64)

    # Stratified: each digit contributes the same fraction to the test set, so class balance
    # matches between the splits.
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    is_test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_test = int(round(DIGITS_TEST_FRACTION * len(idx)))
        is_test[rng.permutation(idx)[:n_test]] = True
    return Dataset(
        name="digits",
        train=torch.from_numpy(images[~is_test]),
        test=torch.from_numpy(images[is_test]),
        train_labels=torch.from_numpy(labels[~is_test]),
        test_labels=torch.from_numpy(labels[is_test]),
    )


# ---------------------------------------------------------------------------------------------
# IDX datasets (MNIST and its look-alikes)
# ---------------------------------------------------------------------------------------------

# The four files of an MNIST-format dataset (Fashion-MNIST and KMNIST use the same names) and
# the IDX magic number each must start with: two zero bytes, 0x08 for unsigned bytes, then the
# number of dimensions (3 for images N x H x W, 1 for labels N).
# Format: http://yann.lecun.com/exdb/mnist/ ("FILE FORMATS FOR THE MNIST DATABASE").
IDX_FILES: dict[str, int] = {
    "train-images-idx3-ubyte": 0x00000803,
    "train-labels-idx1-ubyte": 0x00000801,
    "t10k-images-idx3-ubyte": 0x00000803,
    "t10k-labels-idx1-ubyte": 0x00000801,
}

# SHA-256 of the *unzipped* files, so a plain copy and a gzipped one check the same.
MNIST_SHA256: dict[str, str] = {
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
}

# Tried in order; each serves NAME.gz. The original site has refused anonymous downloads at
# times, so it comes last.
MNIST_MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]

# Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017, https://github.com/zalandoresearch/fashion-mnist):
# Zalando's article images in MNIST's format, file names and split.
# TODO(checksums): the SHA-256 of the four *unzipped* files, once taken from the official
# files. Until then a None digest makes the loader check the files' structure instead (IDX
# magic, the shapes in IDX_SHAPES, labels in 0..9), which catches truncated, mixed-up and
# wrong-dataset files but not altered pixels. The published digests are MD5s of the .gz files,
# which depend on the compressor, not on the content; they are deliberately not used.
FASHION_MNIST_SHA256: dict[str, str | None] = {
    "t10k-images-idx3-ubyte": None,
    "t10k-labels-idx1-ubyte": None,
    "train-images-idx3-ubyte": None,
    "train-labels-idx1-ubyte": None,
}

FASHION_MNIST_MIRRORS: list[str] = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
]

# The label names, in label order (the dataset's README).
FASHION_MNIST_CLASSES: list[str] = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

# The shape each file of an MNIST-format dataset has: checked when no digest is recorded.
IDX_SHAPES: dict[str, tuple[int, ...]] = {
    "train-images-idx3-ubyte": (60000, 28, 28),
    "train-labels-idx1-ubyte": (60000,),
    "t10k-images-idx3-ubyte": (10000, 28, 28),
    "t10k-labels-idx1-ubyte": (10000,),
}
IDX_N_CLASSES = 10

DOWNLOAD_TIMEOUT_S = 30.0


@register_dataset("mnist")
def load_mnist(data_dir: PathLike | None = None) -> Dataset:
    """MNIST: 60000 train and 10000 test digits, (1, 28, 28) grey levels scaled to [0, 1].

    Looks for the four IDX files (gzipped or not) in ``data_dir``, else in
    ``$VAEKIT_DATA/mnist``, else in ``cache_dir()/mnist``, downloading them there if absent.
    See :func:`_load_idx_dataset`.

    Example
    -------
    >>> load_mnist("/data/mnist").shape  # doctest: +SKIP
    (1, 28, 28)
    """
    # Module globals are read at call time so tests (and users behind a proxy) can replace
    # the mirror list.
    return _load_idx_dataset("mnist", MNIST_SHA256, MNIST_MIRRORS, data_dir)


@register_dataset("fashion-mnist")
def load_fashion_mnist(data_dir: PathLike | None = None) -> Dataset:
    """Fashion-MNIST: 60000 train and 10000 test article images, (1, 28, 28) in [0, 1].

    Found and fetched exactly as :func:`load_mnist` (``data_dir``, ``$VAEKIT_DATA/fashion-mnist``,
    ``cache_dir()/fashion-mnist``); ``classes`` names the ten labels.

    Example
    -------
    >>> load_fashion_mnist("/data/fashion-mnist").classes[:2]  # doctest: +SKIP
    ['T-shirt/top', 'Trouser']
    """
    return _load_idx_dataset(
        "fashion-mnist", FASHION_MNIST_SHA256, FASHION_MNIST_MIRRORS, data_dir, classes=FASHION_MNIST_CLASSES
    )


def _load_idx_dataset(
    name: str,
    checksums: Mapping[str, str],
    mirrors: Sequence[str],
    data_dir: PathLike | None,
    classes: list[str] | None = None,
) -> Dataset:
    """Load a dataset stored as the four MNIST-style IDX files.

    Parameters
    ----------
    name : str
        The dataset name; also the sub-folder under ``$VAEKIT_DATA`` and the cache.
    checksums : mapping
        SHA-256 hex digest of each unzipped file, keyed by the names in :data:`IDX_FILES`;
        None where no digest is known, and then the file's shape (:data:`IDX_SHAPES`) and
        label range are checked instead.
    mirrors : sequence of str
        Base URLs, tried in order, each serving ``NAME.gz``.
    data_dir : path or None
        An explicit folder holding the files. When given (or when ``$VAEKIT_DATA`` is set)
        missing files are an error, never a download: the user said where the data is.
    classes : list of str, optional
        The label names, for :attr:`Dataset.classes`.
    """
    folder = _idx_folder(name, data_dir)
    missing = [f for f in IDX_FILES if _find_idx_file(folder, f) is None]
    if missing:
        _download_idx_files(name, missing, folder, checksums, mirrors)

    arrays = {}
    paths = {}
    for fname, magic in IDX_FILES.items():
        paths[fname] = _find_idx_file(folder, fname)
        arrays[fname] = _read_idx_file(paths[fname], fname, checksums[fname])

    splits = {}
    for split in ("train", "t10k"):
        images, labels = arrays[f"{split}-images-idx3-ubyte"], arrays[f"{split}-labels-idx1-ubyte"]
        if len(images) != len(labels):
            raise VaekitError(
                f"{name}: {paths[f'{split}-images-idx3-ubyte']} holds {len(images)} images but "
                f"{paths[f'{split}-labels-idx1-ubyte']} holds {len(labels)} labels"
            )
        # (N, H, W) uint8 -> (N, 1, H, W) float32 in [0, 1]
        x = torch.from_numpy(images.astype(np.float32)).div_(255.0).unsqueeze(1)
        y = torch.from_numpy(labels.astype(np.int64))
        splits[split] = (x, y)
    return Dataset(
        name=name,
        train=splits["train"][0],
        test=splits["t10k"][0],
        train_labels=splits["train"][1],
        test_labels=splits["t10k"][1],
        classes=list(classes) if classes is not None else None,
    )


def _idx_folder(name: str, data_dir: PathLike | None) -> pathlib.Path:
    """The folder to read from: ``data_dir``, ``$VAEKIT_DATA/name`` or the cache, in that order.

    The first two must already hold every file; only the cache may be filled by download.
    """
    files = ", ".join(IDX_FILES)
    if data_dir is not None:
        folder = pathlib.Path(data_dir).expanduser()
        _require_files(
            name, folder, f"{name}: data directory {folder}",
            f"put the four {name} files ({files}, gzipped or not) there",
        )
        return folder
    if os.environ.get("VAEKIT_DATA"):
        root = pathlib.Path(os.environ["VAEKIT_DATA"]).expanduser()
        folder = root / name
        _require_files(
            name, folder, f"{name}: VAEKIT_DATA={root} but {folder}",
            f"put the four {name} files ({files}, gzipped or not) there, or unset VAEKIT_DATA",
        )
        return folder
    return cache_dir() / name


def _require_files(name: str, folder: pathlib.Path, what: str, fix: str) -> None:
    if not folder.exists():
        raise VaekitError(f"{what} does not exist; {fix}")
    if not folder.is_dir():
        raise VaekitError(f"{what} is not a directory; {fix}")
    missing = [f for f in IDX_FILES if _find_idx_file(folder, f) is None]
    if missing:
        # A common slip: pointing at the root of dataset folders rather than the folder itself.
        if all(_find_idx_file(folder / name, f) is not None for f in IDX_FILES):
            raise VaekitError(f"{what} lacks the {name} files, but {folder / name} holds them: point there instead")
        raise VaekitError(f"{what} lacks {', '.join(missing)} (plain or .gz); {fix}")


def _find_idx_file(folder: pathlib.Path, fname: str) -> pathlib.Path | None:
    # The plain file first: it needs no decompression.
    for path in (folder / fname, folder / f"{fname}.gz"):
        if path.is_file():
            return path
    return None


def _read_idx_file(path: pathlib.Path, fname: str, sha256: str | None) -> np.ndarray:
    """Read, unzip, parse and verify one IDX file; returns a read-only uint8 array."""
    raw = read_bytes(path)
    data = _maybe_gunzip(raw, str(path))
    arr = _parse_idx(data, str(path), IDX_FILES[fname])
    # After parsing, so that a cut-off file is reported as truncated rather than as a bare
    # checksum mismatch.
    _verify_idx(data, arr, str(path), fname, sha256)
    return arr


def _maybe_gunzip(raw: bytes, where: str) -> bytes:
    # Decide by content as well as by name: a gzipped file saved without ".gz" still loads.
    if not (where.endswith(".gz") or raw[:2] == b"\x1f\x8b"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise VaekitError(f"{where}: corrupt gzip file ({one_line(e)}); delete it and fetch it again") from None


def _parse_idx(data: bytes, where: str, magic: int) -> np.ndarray:
    """Parse IDX bytes: a big-endian uint32 magic, one big-endian uint32 per dim, then the data."""
    if len(data) < 4:
        raise VaekitError(f"{where}: truncated IDX file: {len(data)} bytes, too short for a header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise VaekitError(f"{where}: not an IDX file of this kind: magic number 0x{found:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise VaekitError(f"{where}: truncated IDX file: its header alone needs {header} bytes, found {len(data)}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) < expected:
        raise VaekitError(f"{where}: truncated IDX file: header says {expected} bytes, found {len(data)}")
    if len(data) > expected:
        raise VaekitError(f"{where}: IDX file has {len(data) - expected} bytes beyond the {expected} its header says")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _verify_idx(data: bytes, arr: np.ndarray, where: str, fname: str, sha256: str | None) -> None:
    """The file's SHA-256; where none is recorded, its shape and label range instead."""
    if sha256 is not None:
        _check_sha256(data, where, sha256)
        return
    expected = IDX_SHAPES[fname]
    if arr.shape != expected:
        raise VaekitError(
            f"{where}: holds an array of shape {arr.shape}, expected {expected} "
            "(a different or damaged file; replace it)"
        )
    if arr.ndim == 1 and arr.size and int(arr.max()) >= IDX_N_CLASSES:
        raise VaekitError(
            f"{where}: holds label {int(arr.max())}, expected 0..{IDX_N_CLASSES - 1} (a different or damaged file; replace it)"
        )


def _check_sha256(data: bytes, where: str, expected: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise VaekitError(
            f"{where}: SHA-256 mismatch: expected {expected[:16]}..., got {actual[:16]}... "
            "(corrupt or a different file; replace it)"
        )


def _download_idx_files(
    name: str,
    fnames: Sequence[str],
    folder: pathlib.Path,
    checksums: Mapping[str, str],
    mirrors: Sequence[str],
) -> None:
    """Download ``NAME.gz`` for each of ``fnames`` into ``folder``, verified, atomically.

    Each file is streamed into a temporary file in ``folder`` (same file system, so the final
    ``os.replace`` is atomic), unzipped, parsed and checked against its SHA-256, and only then
    renamed into place. On any failure, including Ctrl-C, the temporary file is removed: the
    cache never holds a half file that a later run would trust.
    """
    put_them = (
        f"put the four {name} files ({', '.join(IDX_FILES)}, gzipped or not) in {folder}, "
        f"or pass --data-dir DIR, or set VAEKIT_DATA=ROOT with them in ROOT/{name}"
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VaekitError(f"{name}: cannot create the cache folder {folder} ({e.strerror or e}); {put_them}") from None

    for fname in fnames:
        gz_name = f"{fname}.gz"
        last_error = "no mirrors configured"
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + gz_name
            print(f"vaekit: downloading {url}", file=sys.stderr)
            try:
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{gz_name}.", suffix=".part")
            except OSError as e:
                raise VaekitError(f"{name}: cannot write to the cache folder {folder} ({e.strerror or e}); {put_them}") from None
            try:
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    shutil.copyfileobj(response, out)
                data = _maybe_gunzip(pathlib.Path(tmp).read_bytes(), url)
                _verify_idx(data, _parse_idx(data, url, IDX_FILES[fname]), url, fname, checksums[fname])
                os.replace(tmp, folder / gz_name)
                break
            except (OSError, ValueError, http.client.HTTPException, VaekitError) as e:
                # URLError and timeouts are OSErrors; a malformed URL is a ValueError.
                last_error = one_line(e)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            raise VaekitError(f"{name}: could not download {gz_name} (offline? {last_error}); {put_them}")
