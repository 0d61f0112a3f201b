"""A CIFAR-10 subset (4000 training and 1000 test images, 32x32 RGB) from one offline ``.npz`` file."""

from __future__ import annotations

import os

import numpy as np
import torch

from pyro_lvm.data._checks import check_labels
from pyro_lvm.data._root import find_file, resolve_root

__all__ = ["load_cifar10_subset", "CIFAR10_CLASSES"]

#: The ten CIFAR-10 class names, in label order.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_HOW = (
    "cifar10_subset.npz holds train_images uint8 (4000, 32, 32, 3), train_labels, test_images "
    "uint8 (1000, 32, 32, 3), test_labels and class_names (CIFAR-10 data_batch_1 images 0-3999 "
    "and test_batch images 0-999); put it in <root>/cifar10_subset."
)


def load_cifar10_subset(root: str | os.PathLike | None = None, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Load the CIFAR-10 subset from ``<root>/cifar10_subset/cifar10_subset.npz``.

    :param root: data folder; default ``$PYRO_LVM_DATA``.
    :param split: ``"train"`` (4000 images) or ``"test"`` (1000 images).
    :returns: ``images`` float32 in [0, 1] of shape (N, 3, 32, 32) (channels R, G, B) and
        ``labels`` int64 of shape (N,) indexing :data:`CIFAR10_CLASSES`.
    :raises MissingDataError: when the file is not in the data folder.
    :raises ValueError: naming the file when it lacks the split's arrays, they have the wrong
        shape or dtype, hold no images, or a label is not an integer in [0, 10).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    path = find_file(resolve_root(root), "cifar10_subset", ["cifar10_subset.npz"], _HOW)
    keys = [f"{split}_images", f"{split}_labels"]
    with np.load(path, allow_pickle=False) as archive:
        missing = [k for k in keys if k not in archive.files]
        if missing:
            raise ValueError(f"{path} has no {', '.join(missing)}; expected {', '.join(keys)} (holds {archive.files})")
        images, labels = (archive[k] for k in keys)
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or images.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"{path}: expected {split}_images uint8 (N, 32, 32, 3) and {split}_labels (N,), "
            f"got {images.dtype} {images.shape} and {labels.shape}"
        )
    if len(images) == 0:
        raise ValueError(f"{path}: {split}_images holds no images; expected (N, 32, 32, 3) with N >= 1")
    labels = check_labels(labels, f"{path}, {split}_labels", len(CIFAR10_CLASSES))
    images = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    return images, torch.from_numpy(labels)
