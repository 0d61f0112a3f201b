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
    load_cifar10_subset,
    load_digits,
    load_mnist,
    make_shapes,
    read_idx,
    write_idx,
)
from pyro_lvm.data.digit_strings import make_digit_strings


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


# --- bad and edge inputs (issue 13): the right numbers or an error naming the file, the value, the expectation


def _write_mnist(folder, images, labels, suffix=""):
    """Write ``images`` and ``labels`` as the MNIST test split's IDX files in ``folder/mnist``."""
    (folder / "mnist").mkdir(parents=True, exist_ok=True)
    write_idx(folder / "mnist" / f"t10k-images-idx3-ubyte{suffix}", images)
    write_idx(folder / "mnist" / f"t10k-labels-idx1-ubyte{suffix}", labels)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mnist_grey_levels_follow_the_idx_type_code(tmp_path, suffix):
    gen = np.random.default_rng(0)
    grey = gen.integers(0, 256, size=(4, 28, 28)).astype(np.uint8)
    labels = np.array([0, 3, 9, 1], dtype=np.uint8)
    expected = grey.astype(np.float64) / 255.0  # the published scaling of the uint8 files
    for stored in (grey, grey.astype(np.float32), (grey / 255.0).astype(np.float32), (grey / 255.0).astype(np.float64)):
        _write_mnist(tmp_path, stored, labels, suffix)
        images, got_labels = load_mnist(tmp_path, "test")
        assert images.dtype == torch.float32
        np.testing.assert_allclose(images.numpy(), expected, atol=1e-6, rtol=0)  # [0, 1] data is not divided again
        assert got_labels.tolist() == [0, 3, 9, 1]
    for bad, what in ((grey.astype(np.float32) * 2.0, "above 255"), (grey.astype(np.float32) - 1.0, "below 0")):
        _write_mnist(tmp_path, bad, labels, suffix)
        with pytest.raises(ValueError, match=f"t10k-images-idx3-ubyte{suffix}.*{what}"):
            load_mnist(tmp_path, "test")
    nan = (grey / 255.0).astype(np.float32)
    nan[2, 3, 4] = np.nan
    _write_mnist(tmp_path, nan, labels, suffix)
    with pytest.raises(ValueError, match=f"t10k-images-idx3-ubyte{suffix}.*NaN or infinite"):
        load_mnist(tmp_path, "test")


@pytest.mark.parametrize("bad_labels", [np.array([0, 200, 1, 2], np.uint8), np.array([0, 1, 2, -1], np.int32),
                                        np.array([0, 1, np.nan, 2], np.float32), np.array([0, 1.5, 2, 3], np.float64)])
def test_mnist_labels_outside_0_to_9_are_an_error(tmp_path, bad_labels):
    _write_mnist(tmp_path, np.zeros((4, 28, 28), np.uint8), bad_labels)
    bad = bad_labels[~np.isin(bad_labels, np.arange(10))][0]
    with pytest.raises(ValueError, match=rf"t10k-labels-idx1-ubyte.*label {bad:g} at index \d.*integers in \[0, 10\)"):
        load_mnist(tmp_path, "test")


def test_mnist_files_of_the_wrong_shape_or_empty_are_an_error(tmp_path):
    _write_mnist(tmp_path, np.zeros((4, 28, 27), np.uint8), np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.*\(N, 28, 28\), got \(4, 28, 27\)"):
        load_mnist(tmp_path, "test")
    _write_mnist(tmp_path, np.zeros((4, 28, 28), np.uint8), np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.*4 images.*t10k-labels-idx1-ubyte.*3 labels"):
        load_mnist(tmp_path, "test")
    _write_mnist(tmp_path, np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.*no images"):
        load_mnist(tmp_path, "test")


def test_truncated_idx_names_the_file_and_the_sizes(tmp_path):
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / "a.idx.gz", array)
    packed = (tmp_path / "a.idx.gz").read_bytes()
    (tmp_path / "cut.idx.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match=r"cut\.idx\.gz is truncated or corrupt.*\(2, 28, 28\) \(1568 bytes\)"):
        read_idx(tmp_path / "cut.idx.gz")
    (tmp_path / "garbled.idx.gz").write_bytes(packed[:12] + b"\xff" * 40 + packed[52:])
    with pytest.raises(ValueError, match=r"garbled\.idx\.gz is truncated or corrupt"):
        read_idx(tmp_path / "garbled.idx.gz")
    write_idx(tmp_path / "a.idx", array)
    plain = (tmp_path / "a.idx").read_bytes()
    (tmp_path / "cut.idx").write_bytes(plain[:-100])
    with pytest.raises(
        ValueError, match=r"cut\.idx is truncated or corrupt: IDX header says shape \(2, 28, 28\) \(1568 bytes\), file has 1468"
    ):
        read_idx(tmp_path / "cut.idx")
    (tmp_path / "header.idx").write_bytes(plain[:9])
    with pytest.raises(ValueError, match=r"header\.idx is truncated or corrupt: .*3 dims needs 16 bytes, file has 9"):
        read_idx(tmp_path / "header.idx")


def _amat(tmp_path, rows, gz=False):
    folder = tmp_path / "binarized_mnist"
    folder.mkdir(exist_ok=True)
    text = "".join(" ".join(map(str, row)) + " \n" for row in rows).encode()
    path = folder / ("binarized_mnist_test.amat" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_binarized_mnist_rows_of_the_wrong_length_are_an_error(tmp_path, gz):
    gen = np.random.default_rng(0)
    rows = [list(gen.integers(0, 2, 784)) for _ in range(3)]
    _amat(tmp_path, rows, gz)
    np.testing.assert_array_equal(load_binarized_mnist(tmp_path, "test").numpy(), np.array(rows).reshape(3, 28, 28))
    _amat(tmp_path, [rows[0], rows[1][:-1], rows[2] + [1]], gz)  # 783 + 785 values: same total, shifted images
    with pytest.raises(ValueError, match=r"binarized_mnist_test\.amat.*line 2: 783 values, expected 784"):
        load_binarized_mnist(tmp_path, "test")
    _amat(tmp_path, [], gz)
    with pytest.raises(ValueError, match=r"binarized_mnist_test\.amat.* holds no images"):
        load_binarized_mnist(tmp_path, "test")
    for value in ("2", "0.5", "10", "-1"):
        bad = [list(map(str, r)) for r in rows]
        bad[2][100] = value
        _amat(tmp_path, bad, gz)
        with pytest.raises(ValueError, match=rf"binarized_mnist_test\.amat.*line 3: value '{value}' is not 0 or 1"):
            load_binarized_mnist(tmp_path, "test")


def test_truncated_amat_gz_names_the_file(tmp_path):
    path = _amat(tmp_path, [[0, 1] * 392] * 20, gz=True)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(ValueError, match=r"binarized_mnist_test\.amat\.gz is truncated or corrupt"):
        load_binarized_mnist(tmp_path, "test")


def _cifar(tmp_path, images, labels):
    (tmp_path / "cifar10_subset").mkdir(exist_ok=True)
    np.savez(tmp_path / "cifar10_subset" / "cifar10_subset.npz", train_images=images, train_labels=labels,
             test_images=images, test_labels=labels)


@pytest.mark.parametrize("bad", [10, 255, np.nan, -1])
def test_cifar_labels_outside_0_to_9_are_an_error(tmp_path, bad):
    images = np.zeros((3, 32, 32, 3), np.uint8)
    labels = np.array([0, 9, bad], dtype=np.float64 if np.isnan(bad) else np.int64)
    _cifar(tmp_path, images, labels)
    with pytest.raises(ValueError, match=rf"cifar10_subset\.npz.*train_labels.*label {bad:g} at index 2.*integers in \[0, 10\)"):
        load_cifar10_subset(tmp_path)
    _cifar(tmp_path, images, np.array([0, 9, 4], np.uint8))
    got_images, got_labels = load_cifar10_subset(tmp_path, "test")
    assert got_labels.tolist() == [0, 9, 4] and got_labels.dtype == torch.int64 and got_images.shape == (3, 3, 32, 32)


def test_cifar_file_without_a_split_or_empty_is_an_error(tmp_path):
    (tmp_path / "cifar10_subset").mkdir()
    np.savez(tmp_path / "cifar10_subset" / "cifar10_subset.npz", train_images=np.zeros((3, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"cifar10_subset\.npz has no train_labels.*expected train_images, train_labels"):
        load_cifar10_subset(tmp_path)
    _cifar(tmp_path, np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match=r"cifar10_subset\.npz.*train_images holds no images"):
        load_cifar10_subset(tmp_path)


def test_generators_reject_counts_and_sizes_out_of_range():
    for kwargs, name in (({"num_images": 0}, "num_images"), ({"num_images": -3}, "num_images"),
                         ({"num_images": 2, "size": 0}, "size"), ({"num_images": 2, "max_shapes": 0}, "max_shapes"),
                         ({"num_images": 2, "noise": -1.0}, "noise"), ({"num_images": 2, "noise": float("nan")}, "noise"),
                         ({"num_images": 2, "chroma": -5.0}, "chroma"), ({"num_images": 2, "contrast": -5.0}, "contrast")):
        with pytest.raises(ValueError, match=f"^{name} must be"):
            make_shapes(**kwargs)
    with pytest.raises(TypeError, match="num_images must be an integer, got 2.5"):
        make_shapes(2.5)
    images, labels = load_digits("test")
    for kwargs, name in (({"num_strings": 0}, "num_strings"), ({"num_strings": 3, "max_digits": 0}, "max_digits"),
                         ({"num_strings": 3, "min_digits": 0}, "min_digits"), ({"num_strings": 3, "min_gap": -1}, "min_gap")):
        with pytest.raises(ValueError, match=name):
            make_digit_strings(images, labels, **kwargs)
    with pytest.raises(ValueError, match=r"images holds no digits"):
        make_digit_strings(images[:0], labels[:0], 3)
    first_zero = int((labels == 0).nonzero()[0])
    with pytest.raises(ValueError, match=rf"labels: label 10 at index {first_zero} .*integers in \[0, 10\)"):
        make_digit_strings(images, labels + 10 * (labels == 0), 3)
    with pytest.raises(ValueError, match=r"images must hold grey levels in \[0, 1\]"):
        make_digit_strings(images * 16, labels, 3)


def test_digits_test_fraction_that_leaves_a_split_empty_is_an_error():
    with pytest.raises(ValueError, match=r"test_fraction=0.0001 gives 0 test images of 1797"):
        load_digits("test", test_fraction=1e-4)
    with pytest.raises(ValueError, match=r"test_fraction=0.9999 gives 0 train images of 1797"):
        load_digits("train", test_fraction=0.9999)


def test_dynamic_binarization_edge_inputs():
    assert dynamic_binarize(torch.empty(0, 784)).shape == (0, 784)  # an empty batch is valid
    with pytest.raises(ValueError, match=r"x holds NaN or infinite values"):
        dynamic_binarize(torch.tensor([0.5, float("nan")]))
    with pytest.raises(TypeError, match=r"x must be a floating point tensor of grey levels in \[0, 1\], got dtype torch.int64"):
        dynamic_binarize(torch.tensor([0, 1]))
