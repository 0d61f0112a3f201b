"""MNIST from IDX files and Larochelle's statically binarized MNIST from ``.amat`` files.

Both loaders read offline files from a root folder (see :func:`resolve_root`).
MNIST can also be fetched with torchvision's downloader when torchvision works
and the network is reachable (``download=True``).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from pyro_lvm.data._checks import check_labels, grey_levels_to_unit
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


def _read_bytes(path: Path) -> tuple[bytes, str]:
    """Return the (decompressed, for ``.gz``) bytes of ``path`` and ``""``, or what is wrong with its gzip stream.

    A truncated stream returns the bytes it held before it ended, so that the caller can say
    how many it expected.

    :raises ValueError: naming the file when its gzip stream is corrupt.
    """
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw, ""
    parts = []
    while raw:  # a gzip file may hold several members, each a complete stream
        stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            parts.append(stream.decompress(raw))
        except zlib.error as e:
            raise ValueError(f"{path} is truncated or corrupt: its gzip stream cannot be decompressed ({e})") from e
        if not stream.eof:
            return b"".join(parts), " (its gzip stream ends before its end marker)"
        raw = stream.unused_data.lstrip(b"\0")  # gzip's trailing zero padding, as gzip.open skips it
    return b"".join(parts), ""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a numpy array of its stored shape and dtype.

    :raises ValueError: naming the file when it is not an IDX file, or when it is truncated or
        corrupt (its size is not the one its header gives, or its gzip stream is damaged).
    """
    path = Path(path)
    data, truncated = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file: bad magic number {data[:4]!r}{truncated}")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(
            f"{path} is truncated or corrupt: an IDX header of {ndim} dims needs {4 + 4 * ndim} bytes, "
            f"file has {len(data)}{truncated}"
        )
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = data[4 + 4 * ndim :]
    if len(body) != expected or truncated:
        raise ValueError(
            f"{path} is truncated or corrupt: IDX header says shape {shape} ({expected} bytes), "
            f"file has {len(body)}{truncated}"
        )
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
        raise MissingDataError(f"download=True needs a working torchvision ({type(e).__name__}: {e}). {_MNIST_HOW}") from e
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
        Integer IDX images (MNIST's uint8) are divided by 255; float IDX images are taken as
        they are when all their values lie in [0, 1] and divided by 255 when they lie in
        [0, 255] with a maximum above 1 (IDX does not record the scale).
    :raises ValueError: naming the file when it is truncated or corrupt, its images are not
        (N, 28, 28) with N >= 1 and grey levels in [0, 255], or a label is not an integer in [0, 10).
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
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{paths[0]}: MNIST images must have shape (N, 28, 28), got {images.shape}")
    if len(images) == 0:
        raise ValueError(f"{paths[0]} holds no images (shape {images.shape}); expected (N, 28, 28) with N >= 1")
    if labels.shape != images.shape[:1]:
        raise ValueError(
            f"MNIST files disagree: {paths[0]} holds {len(images)} images, "
            f"{paths[1]} holds {labels.shape[0] if labels.ndim == 1 else labels.shape} labels (expected shape (N,))"
        )
    return (
        torch.from_numpy(grey_levels_to_unit(images, str(paths[0]))),
        torch.from_numpy(check_labels(labels, str(paths[1]), 10)),
    )


def load_binarized_mnist(root: str | os.PathLike | None = None, split: str = "train") -> torch.Tensor:
    """Load Larochelle's statically binarized MNIST (``.amat`` or ``.amat.gz``).

    :param split: ``"train"`` (50000), ``"valid"`` (10000) or ``"test"`` (10000).
    :returns: float32 tensor of 0/1 values, shape (N, 28, 28).
    :raises ValueError: naming the file (and line) when it is truncated or corrupt, empty,
        has a line without 784 values or a value other than 0 or 1.
    """
    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
    root = resolve_root(root)
    stem = f"binarized_mnist_{split}.amat"
    path = find_file(root, "binarized_mnist", [stem + ".gz", stem], _BINARIZED_HOW)
    data, truncated = _read_bytes(path)
    if truncated:
        raise ValueError(f"{path} is truncated or corrupt{truncated}")
    return torch.from_numpy(_parse_amat(data, path))


def _parse_amat(data: bytes, path: Path) -> np.ndarray:
    """Parse a binarized MNIST ``.amat``: lines of 784 values 0 or 1 separated by whitespace.

    Lines with no values (blank lines) are skipped.

    :returns: float32 array of shape (N, 28, 28).
    :raises ValueError: naming the file and line of the first value other than 0 or 1 or of
        the first line without 784 values, or when the file holds no lines of values.
    """
    chars = np.frombuffer(data, dtype=np.uint8)
    value = chars > ord(" ")  # whitespace is space and \t \n \v \f \r (9-13); other control bytes are bad
    bad = (value & ((chars < ord("0")) | (chars > ord("1")))) | ((chars < ord(" ")) & ((chars < 9) | (chars > 13)))
    bad[1:] |= value[1:] & value[:-1]  # a value is one character, with whitespace on both sides
    if bad.any():
        at = int(bad.argmax())
        start, end = data.rfind(b"\n", 0, at) + 1, data.find(b"\n", at)
        token = next(t for t in data[start : end if end >= 0 else None].split() if t not in (b"0", b"1"))
        line = data.count(b"\n", 0, at) + 1
        raise ValueError(
            f"{path}, line {line}: value {token.decode(errors='replace')!r} is not 0 or 1; "
            "expected 784 values of 0 or 1 per line"
        )
    starts = np.concatenate(([0], np.flatnonzero(chars == ord("\n")) + 1))
    starts = starts[starts < len(chars)]
    counts = np.add.reduceat(value, starts, dtype=np.intp) if len(starts) else np.zeros(0, np.intp)
    wrong = (counts != 0) & (counts != 784)
    if wrong.any():
        line = int(wrong.argmax())
        raise ValueError(f"{path}, line {line + 1}: {counts[line]} values, expected 784 (28 x 28 pixels) per line")
    if not counts.any():
        raise ValueError(f"{path} holds no images (no line of values); expected lines of 784 values of 0 or 1")
    return (chars[value] - ord("0")).reshape(-1, 28, 28).astype(np.float32)
