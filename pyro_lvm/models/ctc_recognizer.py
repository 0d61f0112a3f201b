"""A CTC recognizer for images read column by column, as a Pyro model.

``p(z_t | x)`` comes from a small convolutional encoder over columns: each pixel column is a
feature vector, and 1-D convolutions (dilated, batch-normalized) see about 29 columns around
it. The labels are scored either by the CTC marginal over alignments (soft training,
:class:`~pyro_lvm.distributions.CTC`) or by the probability of their Viterbi alignment (hard EM /
Viterbi training).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn

from pyro_lvm.distributions.ctc import CTC
from pyro_lvm.ops.ctc import ctc_greedy_decode, ctc_posterior_marginals, ctc_viterbi

__all__ = ["ColumnCTC"]


class ColumnCTC(PyroModule):
    """Frame label probabilities for the columns of an image, and the CTC story over them.

    :param height: image height H (rows).
    :param num_labels: label classes; the model has ``num_labels + 1`` classes with the blank
        at index ``blank``.
    :param hidden: features per column of the 1-D convolutions.
    :param blank: index of the blank class.
    :param method: how the soft objective marginalizes alignments (``"native"`` or ``"enum"``).

    Called as ``model(images, widths, targets, target_lengths, hard=False)`` with images (N, H, W),
    widths (N,), targets (N, S) and target_lengths (N,), batched over
    ``pyro.plate("strings", N, dim=-1)``. With ``hard=False`` it observes the targets under
    :class:`~pyro_lvm.distributions.CTC` (loss ``-log p(y | x)`` with an empty guide and
    ``Trace_ELBO``); with ``hard=True`` it observes the Viterbi alignment ``z*`` of the
    targets (found without gradient) under the per-frame categoricals, so the loss is
    ``-log p(z* | x)``: Viterbi training.
    """

    def __init__(self, height: int, num_labels: int, hidden: int = 64, blank: int = 0, method: str = "native") -> None:
        super().__init__()
        if height < 1 or num_labels < 1:
            raise ValueError(f"need height >= 1 and num_labels >= 1, got {height}, {num_labels}")
        self.num_classes = num_labels + 1
        if not 0 <= blank < self.num_classes:
            raise ValueError(f"blank must be in [0, {self.num_classes}), got {blank}")
        self.blank, self.method = blank, method
        layers, width = [], height
        for kernel, dilation in ((3, 1), (5, 1), (5, 2), (5, 4)):  # batch norm: CTC leaves the all-blank plateau early
            layers += [nn.Conv1d(width, hidden, kernel, padding=dilation * (kernel // 2), dilation=dilation), nn.BatchNorm1d(hidden), nn.ReLU()]
            width = hidden
        self.columns = nn.Sequential(*layers, nn.Conv1d(hidden, self.num_classes, 1))

    def log_probs(self, images: torch.Tensor) -> torch.Tensor:
        """(W, N, C) log-softmax frame label probabilities for images (N, H, W)."""
        if images.dim() != 3:
            raise ValueError(f"images must have shape (N, H, W), got {tuple(images.shape)}")
        logits = self.columns(images)  # (N, C, W): pixel rows are the input channels
        return logits.permute(2, 0, 1).log_softmax(-1)

    def forward(self, images, widths, targets, target_lengths, hard: bool = False) -> None:
        log_probs = self.log_probs(images)
        with pyro.plate("strings", images.size(0), dim=-1):
            if not hard:
                pyro.sample("y", CTC(log_probs, widths, target_lengths, self.blank, self.method), obs=targets)
                return
            best = ctc_viterbi(log_probs, targets, widths, target_lengths, self.blank)  # (N, W)
            frames = dist.Categorical(logits=log_probs.transpose(0, 1)).mask(best >= 0).to_event(1)
            pyro.sample("z", frames, obs=best.clamp(min=0))

    @torch.no_grad()
    def log_likelihood(self, images, widths, targets, target_lengths) -> torch.Tensor:
        """``log p(y | x)`` per string, (N,) nats: the CTC sum over alignments (computed by ``method``)."""
        return CTC(self.log_probs(images), widths, target_lengths, self.blank, self.method).log_prob(targets)

    @torch.no_grad()
    def decode(self, images: torch.Tensor, widths) -> list[list[int]]:
        """Greedy (best-path) label strings, one list per image."""
        return ctc_greedy_decode(self.log_probs(images), widths, self.blank)

    @torch.no_grad()
    def align(self, images, widths, targets, target_lengths) -> torch.Tensor:
        """Viterbi alignments (N, W) of the targets, -1 past each width."""
        return ctc_viterbi(self.log_probs(images), targets, widths, target_lengths, self.blank)

    @torch.no_grad()
    def alignment_posterior(self, images, widths, targets, target_lengths) -> torch.Tensor:
        """Posterior over frame labels ``p(z_t = c | y, x)``, (W, N, C)."""
        return ctc_posterior_marginals(self.log_probs(images), targets, widths, target_lengths, self.blank)
