"""Checks that loaders and generators share: class labels, grey levels, counts and sizes."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["check_int", "check_labels", "check_nonnegative", "grey_levels_to_unit"]


def check_labels(labels: np.ndarray, source: str, num_classes: int) -> np.ndarray:
    """Return ``labels`` as int64 after checking that every one is an integer in ``[0, num_classes)``.

    Float labels are accepted when they hold whole numbers (NaN is never one).

    :param labels: (N,) class labels.
    :param source: what the labels are (a file, an argument), named in the error.
    :raises ValueError: naming ``source``, the first bad label, its index and the range expected.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iuf":
        raise ValueError(f"{source}: labels must be integers in [0, {num_classes}), got dtype {labels.dtype}")
    with np.errstate(invalid="ignore"):
        bad = ~((labels >= 0) & (labels < num_classes) & (labels == np.floor(labels)))
    if bad.any():
        first = int(bad.argmax())
        raise ValueError(
            f"{source}: label {labels.flat[first].item()} at index {first} ({int(bad.sum())} bad labels); "
            f"expected integers in [0, {num_classes})"
        )
    return labels.astype(np.int64)


def grey_levels_to_unit(images: np.ndarray, source: str) -> np.ndarray:
    """Return grey levels as float32 in [0, 1].

    Integer images (IDX type codes 0x08-0x0C) hold levels 0..255 and are divided by 255.
    The IDX format does not say the scale of float images (0x0D, 0x0E): float images
    whose values all lie in [0, 1] are taken as they are, float images in [0, 255] with
    a maximum above 1 are divided by 255.

    :param source: the file the images come from, named in the error.
    :raises ValueError: for NaN or infinite values, or values outside [0, 255].
    """
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        raise ValueError(f"{source}: images hold NaN or infinite values; expected grey levels in [0, 1] or [0, 255]")
    lo, hi = (images.min(), images.max()) if images.size else (0, 0)
    if lo < 0:
        raise ValueError(f"{source}: grey level {lo.item()} is below 0; expected grey levels in [0, 1] or [0, 255]")
    if hi > 255:
        raise ValueError(f"{source}: grey level {hi.item()} is above 255; expected grey levels in [0, 1] or [0, 255]")
    if images.dtype.kind == "f" and hi <= 1:
        return images.astype(np.float32)
    return images.astype(np.float32) / np.float32(255.0)


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an integer (not a bool) >= ``minimum``.

    :raises TypeError: naming ``name`` when ``value`` is not an integer.
    :raises ValueError: naming ``name`` when it is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_nonnegative(name: str, value: float) -> float:
    """Return ``value`` if it is a finite number >= 0, else raise ``ValueError`` naming ``name``."""
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)
