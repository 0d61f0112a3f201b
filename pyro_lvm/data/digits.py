"""The embedded default data set: scikit-learn's 8x8 handwritten digits (works on any machine)."""

from __future__ import annotations

import torch

__all__ = ["load_digits"]


def load_digits(split: str = "train", test_fraction: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Load the 1797 8x8 digits bundled with scikit-learn, split deterministically.

    :param split: ``"train"``, ``"test"`` or ``"all"``.
    :param test_fraction: share of the images held out for ``"test"``.
    :param seed: seed of the split's permutation (the same seed always gives the same split).
    :returns: ``images`` float32 in [0, 1] of shape (N, 8, 8) (grey levels 0..16 divided by 16),
        ``labels`` int64 of shape (N,).
    :raises ValueError: when ``split`` is unknown or ``test_fraction`` leaves a split empty.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    bunch = _sk_load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32) / 16.0
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    if split == "all":
        return images, labels
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(labels)))
    for name, n in (("test", n_test), ("train", len(labels) - n_test)):
        if n == 0:
            raise ValueError(f"test_fraction={test_fraction} gives 0 {name} images of {len(labels)}; "
                             f"expected a fraction that leaves at least one image in each split")
    idx = perm[:n_test] if split == "test" else perm[n_test:]
    return images[idx], labels[idx]
