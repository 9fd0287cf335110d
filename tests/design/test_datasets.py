import gzip

import numpy as np
import pytest

from labctl.design import datasets
from labctl.design.datasets import load_dataset, read_idx
from labctl.errors import DataError
from tests.design.tinydata import synthetic_images, write_idx


def test_idx_directory_gzipped_and_plain(idx_dir):
    ds = load_dataset(str(idx_dir))
    expected_x, expected_y = synthetic_images(80, seed=1)
    assert ds.train_images.shape == (80, 28, 28) and ds.train_images.dtype == np.float32
    np.testing.assert_allclose(ds.train_images * 255, expected_x, atol=1e-4)
    np.testing.assert_array_equal(ds.train_labels, expected_y)
    assert ds.test_images.shape == (40, 28, 28) and ds.test_labels.dtype == np.int64
    assert ds.classes == [str(c) for c in range(10)]
    assert ds.test_images.min() >= 0.0 and ds.test_images.max() <= 1.0


def test_original_dotted_file_names(tmp_path):
    x, y = synthetic_images(10, seed=3)
    write_idx(tmp_path / "train-images.idx3-ubyte", x)
    write_idx(tmp_path / "train-labels.idx1-ubyte", y)
    write_idx(tmp_path / "t10k-images.idx3-ubyte", x)
    write_idx(tmp_path / "t10k-labels.idx1-ubyte", y)
    assert len(load_dataset(str(tmp_path)).test_labels) == 10


def test_bad_magic_and_truncation_are_data_errors(tmp_path):
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab"))
    with pytest.raises(DataError, match="bad.gz.*magic"):
        read_idx(bad)
    short = tmp_path / "short"
    write_idx(short, np.zeros((3, 4, 4)))
    short.write_bytes(short.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(short)
    notgz = tmp_path / "x.gz"
    notgz.write_bytes(b"plain")
    with pytest.raises(DataError, match="x.gz"):
        read_idx(notgz)


def test_missing_file_and_mismatched_labels(idx_dir):
    (idx_dir / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_dataset(str(idx_dir))
    write_idx(idx_dir / "t10k-labels-idx1-ubyte", np.zeros(7))
    with pytest.raises(DataError, match="do not match"):
        load_dataset(str(idx_dir))


def test_unknown_name_and_missing_fashion_say_how_to_get_them(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="mnist5k, fashion-mnist") as err:
        load_dataset("no-such-set")
    assert "\n" not in str(err.value)
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path / "absent")
    assert datasets.missing_install_step("fashion-mnist") == "apt-get install dataset-fashion-mnist"
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


def test_only_an_absent_system_data_set_is_missing(idx_dir, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", idx_dir)
    assert datasets.missing_install_step("fashion-mnist") is None
    assert datasets.missing_install_step("mnist5k") is None
    assert datasets.missing_install_step(str(idx_dir)) is None


def test_fashion_uses_its_class_names(idx_dir, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", idx_dir)
    ds = load_dataset("fashion-mnist")
    assert ds.name == "fashion-mnist" and ds.classes[9] == "Ankle boot"


def test_mnist5k_split_is_stratified_fixed_and_disjoint():
    a = load_dataset("mnist5k")
    assert a.train_images.shape == (4500, 28, 28) and a.test_images.shape == (500, 28, 28)
    assert np.all(np.bincount(a.test_labels) == 50) and np.all(np.bincount(a.train_labels) == 450)
    b = load_dataset("mnist5k")
    np.testing.assert_array_equal(a.test_images, b.test_images)
    train_keys = {im.tobytes() for im in a.train_images}
    assert not any(im.tobytes() in train_keys for im in a.test_images)
    assert len(set(a.test_labels[:20])) > 3  # shuffled: a prefix is not one class
