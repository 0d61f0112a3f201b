"""Loaders against the real files (../shared/data) and round trips through our own writers."""

import gzip
import hashlib

import numpy as np
import pytest
import torch

from pyro_lvm.data import (
    DATA_ENV_VAR,
    MissingDataError,
    dynamic_binarize,
    load_binarized_mnist,
    load_digits,
    load_mnist,
    read_idx,
    write_idx,
)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_idx_round_trip(tmp_path, suffix, dtype):
    array = (np.arange(2 * 3 * 5) * 7 % 251).astype(dtype).reshape(2, 3, 5)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 5)
    np.testing.assert_array_equal(back, array)


def test_idx_rejects_garbage(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    truncated = tmp_path / "short"
    truncated.write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="IDX header says shape"):
        read_idx(truncated)


def test_mnist_real_files(shared_data, tmp_path):
    images, labels = load_mnist(shared_data, "test")
    assert images.shape == (10000, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (10000,) and labels.dtype == torch.int64
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the canonical first test labels
    # written back as IDX with torchvision's gzip layout, it decompresses to the original bytes
    raw = (images.numpy() * 255).round().astype(np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", raw)
    with gzip.open(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz", "rb") as f:
        original = f.read()
    assert (tmp_path / "t10k-images-idx3-ubyte").read_bytes() == original
    train_images, train_labels = load_mnist(shared_data, "train")
    assert train_images.shape == (60000, 28, 28)
    assert train_labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert torch.bincount(train_labels).tolist()[:2] == [5923, 6742]  # published class counts


def test_binarized_mnist_real_files(shared_data):
    sizes = {"train": 50000, "valid": 10000, "test": 10000}
    means = {"train": 0.13056, "valid": 0.13113, "test": 0.13251}  # SOURCES.md, from the original files
    for split, n in sizes.items():
        x = load_binarized_mnist(shared_data, split)
        assert x.shape == (n, 28, 28)
        assert set(torch.unique(x).tolist()) == {0.0, 1.0}
        assert x.mean().item() == pytest.approx(means[split], abs=5e-6)


def test_binarized_mnist_plain_amat_equals_gz(shared_data, tmp_path):
    (tmp_path / "binarized_mnist").mkdir()
    with gzip.open(shared_data / "binarized_mnist" / "binarized_mnist_valid.amat.gz", "rb") as f:
        text = f.read()
    assert hashlib.sha256(text).hexdigest() == "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"
    (tmp_path / "binarized_mnist" / "binarized_mnist_valid.amat").write_bytes(text)
    assert torch.equal(load_binarized_mnist(tmp_path, "valid"), load_binarized_mnist(shared_data, "valid"))


def test_missing_files_name_folder_and_files(tmp_path, monkeypatch):
    with pytest.raises(MissingDataError) as e:
        load_mnist(tmp_path, "train")
    assert str(tmp_path) in str(e.value) and "train-images-idx3-ubyte" in str(e.value) and DATA_ENV_VAR in str(e.value)
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "elsewhere"))
    with pytest.raises(MissingDataError, match="binarized_mnist_test.amat.*elsewhere"):
        load_binarized_mnist(split="test")
    with pytest.raises(ValueError, match="split must be"):
        load_mnist(tmp_path, "validation")


def test_environment_variable_is_the_default_root(shared_data, monkeypatch):
    monkeypatch.setenv(DATA_ENV_VAR, str(shared_data))
    assert load_binarized_mnist(split="valid").shape == (10000, 28, 28)


def test_digits_split_is_deterministic_and_disjoint():
    train, train_y = load_digits("train")
    test, test_y = load_digits("test")
    assert train.shape == (1438, 8, 8) and test.shape == (359, 8, 8)
    assert 0.0 <= train.min() and train.max() <= 1.0
    assert torch.equal(load_digits("test")[0], test)
    all_images, _ = load_digits("all")
    def rows(x):
        return sorted(map(tuple, x.reshape(len(x), -1).tolist()))
    assert rows(torch.cat([train, test])) == rows(all_images)  # a partition of the 1797 images
    assert not torch.equal(load_digits("test", seed=1)[0], test)


def test_dynamic_binarization():
    x = torch.full((2000, 10), 0.3)
    a, b = dynamic_binarize(x), dynamic_binarize(x)
    assert set(torch.unique(a).tolist()) <= {0.0, 1.0}
    assert not torch.equal(a, b)  # a fresh draw each time
    assert a.mean().item() == pytest.approx(0.3, abs=0.01)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(dynamic_binarize(x, g1), dynamic_binarize(x, g2))
    with pytest.raises(ValueError, match=r"grey levels in \[0, 1\]"):
        dynamic_binarize(x * 255)
