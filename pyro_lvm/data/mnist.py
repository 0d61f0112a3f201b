"""MNIST from IDX files and Larochelle's statically binarized MNIST from ``.amat`` files.

Both loaders read offline files from a root folder (see :func:`resolve_root`).
MNIST can also be fetched with torchvision's downloader when torchvision works
and the network is reachable (``download=True``).
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from pyro_lvm.data._root import MissingDataError, find_file, resolve_root

__all__ = ["read_idx", "write_idx", "load_mnist", "load_binarized_mnist"]

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MNIST_HOW = (
    "Get the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) from the MNIST site or with "
    "torchvision.datasets.MNIST(root, download=True), and put them in <root>/mnist."
)
_BINARIZED_HOW = (
    "Get binarized_mnist_{train,valid,test}.amat (optionally gzipped) from Larochelle's "
    "site (Larochelle & Murray, 2011) and put them in <root>/binarized_mnist."
)


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a numpy array of its stored shape and dtype."""
    path = Path(path)
    with _open(path) as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file: bad magic number {data[:4]!r}")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = data[4 + 4 * ndim :]
    if len(body) != expected:
        raise ValueError(f"{path}: IDX header says shape {shape} ({expected} bytes), file has {len(body)}")
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped when ``path`` ends in ``.gz``)."""
    path = Path(path)
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    code = codes.get(array.dtype)
    if code is None:
        raise ValueError(f"array dtype {array.dtype} has no IDX code; expected one of {list(codes)}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = array.astype(np.dtype(_IDX_DTYPES[code])).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + body)


def _download_mnist(root: Path) -> None:
    try:  # torchvision's CUDA wheel raises RuntimeError (not ImportError) with a CPU torch
        from torchvision.datasets import MNIST
    except Exception as e:  # noqa: BLE001
        raise MissingDataError(f"download=True needs a working torchvision ({type(e).__name__}: {e}). {_MNIST_HOW}")
    MNIST(str(root), download=True)  # writes root/MNIST/raw/*.gz


def load_mnist(
    root: str | os.PathLike | None = None, split: str = "train", download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST images and labels from IDX files.

    Looks in ``root/mnist``, ``root`` and ``root/MNIST/raw`` (torchvision's layout)
    for gzipped or plain IDX files.

    :param root: data folder; default ``$PYRO_LVM_DATA``.
    :param split: ``"train"`` (60000 images) or ``"test"`` (10000).
    :param download: try torchvision's downloader when the files are missing.
    :returns: ``images`` float32 in [0, 1] of shape (N, 28, 28), ``labels`` int64 of shape (N,).
    """
    if split not in _MNIST_FILES:
        raise ValueError(f"split must be one of {sorted(_MNIST_FILES)}, got {split!r}")
    root = resolve_root(root)
    paths = []
    for stem in _MNIST_FILES[split]:
        names = [stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")]
        try:
            paths.append(find_file(root, "mnist", names, _MNIST_HOW))
        except MissingDataError:
            try:
                paths.append(find_file(root, "MNIST/raw", names, _MNIST_HOW))
            except MissingDataError:
                if not download:
                    raise
                _download_mnist(root)
                paths.append(find_file(root, "MNIST/raw", names, _MNIST_HOW))
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"MNIST files disagree: images {images.shape}, labels {labels.shape}")
    return torch.from_numpy(images.astype(np.float32) / 255.0), torch.from_numpy(labels.astype(np.int64))


def load_binarized_mnist(root: str | os.PathLike | None = None, split: str = "train") -> torch.Tensor:
    """Load Larochelle's statically binarized MNIST (``.amat`` or ``.amat.gz``).

    :param split: ``"train"`` (50000), ``"valid"`` (10000) or ``"test"`` (10000).
    :returns: float32 tensor of 0/1 values, shape (N, 28, 28).
    """
    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
    root = resolve_root(root)
    stem = f"binarized_mnist_{split}.amat"
    path = find_file(root, "binarized_mnist", [stem + ".gz", stem], _BINARIZED_HOW)
    with _open(path) as f:
        flat = np.frombuffer(f.read().replace(b"\n", b" ").replace(b" ", b""), dtype=np.uint8) - ord("0")
    if flat.size % 784 != 0 or flat.max(initial=0) > 1:
        raise ValueError(f"{path} is not a binarized MNIST .amat file (784 values of 0/1 per line)")
    return torch.from_numpy(flat.reshape(-1, 28, 28).astype(np.float32))
