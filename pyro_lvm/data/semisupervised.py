"""The split of a labelled data set into a few labelled and many unlabelled examples (semi-supervised learning).

Kingma et al. (2014) train M2 on MNIST with 100, 600, 1000 or 3000 labels, the rest of the
60000 training images unlabelled. :func:`labelled_split` picks the labelled examples stratified by
class (scikit-learn's ``train_test_split(stratify=...)``), the same ones for the same seed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from pyro_lvm.data._checks import check_labels

__all__ = ["SemiSupervisedBatches", "labelled_split"]


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


class SemiSupervisedBatches:
    """An epoch of semi-supervised minibatches: every unlabelled batch ``(x_u,)`` followed by a labelled one ``(x_l, y_l)``.

    The unlabelled examples are shuffled and seen once per epoch; the labelled ones are drawn
    in turn from a shuffled cycle over the (fewer) labelled examples, so each of the two terms of
    Kingma et al.'s objective gets one step per unlabelled batch. Re-iterable (one epoch per
    iteration) and seeded: the same seed gives the same batches.

    :param x: (N, ...) examples; ``labels`` (N,) their labels (only the labelled ones are read).
    :param labelled: indices of the labelled examples; ``unlabelled``: of the others.
    :param batch_size: examples per batch (both kinds; a labelled set smaller than it is one batch).
    :param seed: the shuffles' seed.
    :raises ValueError: empty index sets, a bad ``batch_size``, labelled labels that are not (N,).
    """

    def __init__(self, x: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor, unlabelled: torch.Tensor,
                 batch_size: int = 100, seed: int = 0) -> None:
        if len(labelled) == 0 or len(unlabelled) == 0:
            raise ValueError(f"labelled and unlabelled must both hold indices, got {len(labelled)} and {len(unlabelled)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if labels.shape != (len(x),):
            raise ValueError(f"labels must have shape ({len(x)},), one per example of x, got {tuple(labels.shape)}")
        self.x, self.labels, self.batch_size = x, labels, batch_size
        self.labelled, self.unlabelled = torch.as_tensor(labelled), torch.as_tensor(unlabelled)
        self.generator = torch.Generator().manual_seed(seed)
        self._cycle = self.labelled[:0]

    def __len__(self) -> int:
        """Batches per epoch: twice the number of unlabelled batches."""
        return 2 * -(-len(self.unlabelled) // self.batch_size)

    def _labelled_batch(self) -> torch.Tensor:
        """The next ``batch_size`` labelled indices of the shuffled cycle (reshuffled when used up)."""
        size = min(self.batch_size, len(self.labelled))
        while len(self._cycle) < size:
            self._cycle = torch.cat([self._cycle, self.labelled[torch.randperm(len(self.labelled), generator=self.generator)]])
        batch, self._cycle = self._cycle[:size], self._cycle[size:]
        return batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.unlabelled[torch.randperm(len(self.unlabelled), generator=self.generator)]
        for start in range(0, len(order), self.batch_size):
            yield (self.x[order[start : start + self.batch_size]],)
            ids = self._labelled_batch()
            yield self.x[ids], self.labels[ids]
