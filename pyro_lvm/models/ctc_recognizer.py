"""A CTC recognizer for images read column by column, as a Pyro model.

``p(z_t | x)`` comes from a small convolutional encoder over columns: each pixel column is a
feature vector, and 1-D convolutions (dilated, batch-normalized) see about 29 columns around
it. The label string ``y`` is the collapse ``B(z)`` of the latent frame labels ``z`` (merge
repeats, drop blanks).

Two stories, one per way to train:

- :meth:`ColumnCTC.forward`, the story, scores ``y`` under :class:`~pyro_lvm.distributions.CTC`,
  which sums the alignment out exactly: loss ``-log p(y | x)`` (soft training, empty guide,
  ``Trace_ELBO``);
- :meth:`ColumnCTC.viterbi_story` observes the Viterbi alignment ``z*`` of ``y`` (found without
  gradient) under the per-frame categoricals: loss ``-log p(z* | x)``, Viterbi training.

Viterbi training is hard EM on the alignment, and :class:`~pyro_lvm.infer.HardEM` on the
enumerated alignment program (:func:`~pyro_lvm.models.ctc_alignment_model`) gives the same loss
and gradients; but that program has one sample site per frame and ``infer_discrete`` walks them
one by one, where :meth:`~ColumnCTC.viterbi_story` finds ``z*`` with one vectorized Viterbi pass
(:func:`~pyro_lvm.ops.ctc_viterbi`). So Viterbi training is its own, named story, not a flag.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import pyro_method
from torch import nn

from pyro_lvm.distributions.ctc import CTC
from pyro_lvm.models.base import LatentVariableModel
from pyro_lvm.ops.ctc import ctc_collapse, ctc_greedy_decode, ctc_posterior_marginals, ctc_viterbi

__all__ = ["ColumnCTC"]

Lengths = torch.Tensor | Sequence[int]


class ColumnCTC(LatentVariableModel):
    """Frame label probabilities for the columns of an image, and the CTC stories over them.

    :param height: image height H (rows).
    :param num_labels: label classes; the model has ``num_labels + 1`` classes with the blank
        at index ``blank`` (``latent_size``, the values a frame label takes).
    :param hidden: features per column of the 1-D convolutions.
    :param blank: index of the blank class.
    :param method: how the story marginalizes alignments (``"native"`` or ``"enum"``).

    The stories take images (N, H, W), widths (N,), targets (N, S) and target_lengths (N,),
    batched over ``pyro.plate("strings", N, dim=-1)``. The alignment is latent but has no sample
    site in :meth:`forward` (``latent_sites`` is empty): the CTC distribution sums it out, so the
    guide is empty. :meth:`posterior` and :meth:`map_latents` answer about it.
    """

    max_plate_nesting = 1
    latent_sites = ()

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
            conv = nn.Conv1d(width, hidden, kernel, padding=dilation * (kernel // 2), dilation=dilation)
            layers += [conv, nn.BatchNorm1d(hidden), nn.ReLU()]
            width = hidden
        self.columns = nn.Sequential(*layers, nn.Conv1d(hidden, self.num_classes, 1))

    @property
    def latent_size(self) -> int:
        """C = num_labels + 1, the values a frame label ``z_t`` takes (the blank included)."""
        return self.num_classes

    def log_probs(self, images: torch.Tensor) -> torch.Tensor:
        """(W, N, C) log-softmax frame label probabilities for images (N, H, W)."""
        if images.dim() != 3:
            raise ValueError(f"images must have shape (N, H, W), got {tuple(images.shape)}")
        logits = self.columns(images)  # (N, C, W): pixel rows are the input channels
        return logits.permute(2, 0, 1).log_softmax(-1)

    def forward(
        self, images: torch.Tensor, widths: Lengths, targets: torch.Tensor | None = None, target_lengths: Lengths | None = None
    ) -> torch.Tensor:
        """The story: label strings ``y ~ CTC(p(z | x))``, observed as ``targets`` (sampled if None).

        :returns: the (N, S) targets, or (N, W) sampled strings padded with -1.
        """
        log_probs = self.log_probs(images)
        with pyro.plate("strings", images.size(0), dim=-1):
            return pyro.sample("y", CTC(log_probs, widths, target_lengths, self.blank, self.method), obs=targets)

    @pyro_method
    def viterbi_story(self, images: torch.Tensor, widths: Lengths, targets: torch.Tensor, target_lengths: Lengths) -> torch.Tensor:
        """Viterbi training's story: the Viterbi alignment ``z*`` of the targets (found without
        gradient) observed under the per-frame categoricals, site ``"z"`` (event shape (W,)), so the
        loss with the empty guide is ``-log p(z* | x)``.

        :returns: ``z*`` (N, W), -1 past each width.
        """
        log_probs = self.log_probs(images)
        best = ctc_viterbi(log_probs.detach(), targets, widths, target_lengths, self.blank)  # (N, W)
        with pyro.plate("strings", images.size(0), dim=-1):
            frames = dist.Categorical(logits=log_probs.transpose(0, 1)).mask(best >= 0).to_event(1)
            pyro.sample("z", frames, obs=best.clamp(min=0))
        return best

    @torch.no_grad()
    def log_likelihood(self, images: torch.Tensor, widths: Lengths, targets: torch.Tensor, target_lengths: Lengths) -> torch.Tensor:
        """``log p(y | x)`` per string, (N,) nats: the CTC sum over alignments (computed by ``method``)."""
        return CTC(self.log_probs(images), widths, target_lengths, self.blank, self.method).log_prob(targets)

    @torch.no_grad()
    def posterior(self, images: torch.Tensor, widths: Lengths, targets: torch.Tensor, target_lengths: Lengths) -> dist.Categorical:
        """The posterior marginals of the alignment, ``p(z_t = c | y, x)`` per frame.

        :returns: a ``Categorical`` with batch shape (N, W) over the C classes (``probs`` (N, W, C));
            frames past an image's width are a point mass on the blank (they emit nothing).
        :raises ValueError: for targets that no alignment of their input can produce (``p(y | x) = 0``).
        """
        marginals = ctc_posterior_marginals(self.log_probs(images), targets, widths, target_lengths, self.blank).transpose(0, 1)
        impossible = (marginals.sum((-2, -1)) == 0).nonzero().flatten().tolist()
        if impossible:
            raise ValueError(f"targets {impossible} cannot be produced by any alignment of their inputs (p(y | x) = 0): no posterior")
        past = marginals.sum(-1, keepdim=True) == 0
        blank = torch.nn.functional.one_hot(torch.tensor(self.blank, device=marginals.device), self.num_classes).to(marginals)
        return dist.Categorical(probs=torch.where(past, blank, marginals))

    @torch.no_grad()
    def map_latents(self, images: torch.Tensor, widths: Lengths, targets: torch.Tensor, target_lengths: Lengths) -> torch.Tensor:
        """The Viterbi alignments (N, W) of the targets, -1 past each width."""
        return ctc_viterbi(self.log_probs(images), targets, widths, target_lengths, self.blank)

    @torch.no_grad()
    def sample(
        self, num_samples: int, images: torch.Tensor, widths: Lengths, return_latents: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Label strings ``y = B(z)`` for alignments ``z ~ prod_t p(z_t | x)``: (num_samples, N, W),
        padded with -1; with ``return_latents`` also ``z`` (num_samples, N, W), -1 past each width."""
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        log_probs = self.log_probs(images)
        width = log_probs.size(0)
        frames = dist.Categorical(logits=log_probs.transpose(0, 1)).sample((num_samples,))  # (S, N, W)
        past = torch.arange(width, device=frames.device) >= torch.as_tensor(widths, device=frames.device).unsqueeze(-1)
        frames = frames.masked_fill(past, -1)
        strings = torch.full_like(frames, -1)
        for row, labels in zip(strings.view(-1, width), ctc_collapse(frames.view(-1, width), self.blank)):
            row[: len(labels)] = torch.tensor(labels, dtype=torch.long)
        return (strings, frames) if return_latents else strings

    @torch.no_grad()
    def decode(self, images: torch.Tensor, widths: Lengths) -> list[list[int]]:
        """Greedy (best-path) label strings, one list per image: a prediction, not a latent."""
        return ctc_greedy_decode(self.log_probs(images), widths, self.blank)
