"""The split of a labelled data set into a few labelled and many unlabelled examples (semi-supervised learning).

Kingma et al. (2014) train M2 on MNIST with 100, 600, 1000 or 3000 labels, the rest of the
60000 training images unlabelled. :func:`labelled_split` picks the labelled examples stratified by
class (scikit-learn's ``train_test_split(stratify=...)``), the same ones for the same seed.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from pyro_lvm.data._checks import check_labels

__all__ = ["labelled_split"]


def labelled_split(labels: torch.Tensor, num_labelled: int, num_classes: int = 10,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of ``num_labelled`` examples to keep labelled and of the others, stratified by class.

    :param labels: (N,) class labels, integers in ``[0, num_classes)``.
    :param num_labelled: how many examples keep their label; at least ``num_classes`` (one per
        class) and fewer than N.
    :param num_classes: C, the number of classes.
    :param seed: the split's seed (the same seed, the same split).
    :returns: ``labelled`` (num_labelled,) and ``unlabelled`` (N - num_labelled,) int64 indices, sorted.
    :raises ValueError: labels out of range (naming the first), or a ``num_labelled`` out of range.
    """
    labels = check_labels(torch.as_tensor(labels).cpu().numpy(), "labels", num_classes)
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (N,), got {labels.shape}")
    if isinstance(num_labelled, bool) or not isinstance(num_labelled, int) or not num_classes <= num_labelled < len(labels):
        raise ValueError(f"num_labelled must be an int in [{num_classes}, {len(labels)}) (at least one per class, fewer than "
                         f"the {len(labels)} examples), got {num_labelled!r}")
    index = np.arange(len(labels))
    labelled, unlabelled = train_test_split(index, train_size=num_labelled, stratify=labels, random_state=seed)
    return torch.as_tensor(np.sort(labelled)), torch.as_tensor(np.sort(unlabelled))
