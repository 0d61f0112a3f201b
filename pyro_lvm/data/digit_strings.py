"""Strings of handwritten digits side by side, with the column span of every digit known.

Frames are pixel columns read left to right, so a CTC model over the columns of such an
image has a ground-truth alignment: each digit occupies its own span of columns and the
columns between digits are blank. Digits are cropped to their inked columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pyro_lvm.data._checks import check_int, check_labels

__all__ = ["DigitStrings", "make_digit_strings", "span_alignment_accuracy"]


@dataclass
class DigitStrings:
    """Images of digit strings and their ground truth.

    :ivar images: (N, H, W) float images, zero past each string's width.
    :ivar widths: (N,) columns in use (the input lengths).
    :ivar targets: (N, max_digits) labels ``digit + 1`` (class 0 is the blank), padded with -1.
    :ivar target_lengths: (N,) digits per string.
    :ivar spans: (N, max_digits, 2) column span ``[start, end)`` of each digit, -1 padded.
    :ivar frame_labels: (N, W) the label of each column (``digit + 1`` inside a span, 0 between
        digits, -1 past the width).
    """

    images: torch.Tensor
    widths: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor
    spans: torch.Tensor
    frame_labels: torch.Tensor

    def __len__(self) -> int:
        return self.images.size(0)

    def to(self, device: str | torch.device) -> DigitStrings:
        return DigitStrings(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def make_digit_strings(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_strings: int,
    min_digits: int = 1,
    max_digits: int = 5,
    min_gap: int = 1,
    max_gap: int = 4,
    ink_threshold: float = 0.1,
    seed: int = 0,
) -> DigitStrings:
    """Place ``1..5`` randomly chosen digit images side by side with random gaps.

    :param images: (M, H, W0) grey digit images in [0, 1] (e.g. from
        :func:`~pyro_lvm.data.load_mnist` or :func:`~pyro_lvm.data.load_digits`).
    :param labels: (M,) digit classes 0..9.
    :param num_strings: strings to make.
    :param min_digits, max_digits: digits per string, drawn uniformly.
    :param min_gap, max_gap: blank columns between digits (and at both ends), drawn uniformly.
    :param ink_threshold: columns whose maximum is at or below it are cropped from each digit.
    :param seed: seed of the draws (the same seed gives the same strings).
    :returns: a :class:`DigitStrings`; all strings are padded to the widest one.
    :raises TypeError: when a count is not an integer.
    :raises ValueError: naming the argument that is out of its range (empty or non-[0, 1]
        images, labels outside 0..9, counts below 1, gaps below 0).
    """
    if images.dim() != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"images must be (M, H, W) with labels (M,), got {tuple(images.shape)} and {tuple(labels.shape)}")
    if images.numel() == 0:
        raise ValueError(f"images holds no digits (shape {tuple(images.shape)}); expected (M, H, W) with M, H, W >= 1")
    if not images.is_floating_point() or not (images.min() >= 0 and images.max() <= 1):  # NaN fails both
        raise ValueError(f"images must hold grey levels in [0, 1], got dtype {images.dtype}, range "
                         f"[{float(images.min()):.4g}, {float(images.max()):.4g}]")
    check_labels(labels.cpu().numpy(), "labels", 10)
    check_int("num_strings", num_strings, 1)
    check_int("min_digits", min_digits, 1)
    if check_int("max_digits", max_digits, 1) < min_digits:
        raise ValueError(f"max_digits must be >= min_digits, got max_digits={max_digits}, min_digits={min_digits}")
    check_int("min_gap", min_gap, 0)
    if check_int("max_gap", max_gap, 0) < min_gap:
        raise ValueError(f"max_gap must be >= min_gap, got max_gap={max_gap}, min_gap={min_gap}")
    g = torch.Generator().manual_seed(seed)
    images, labels = images.cpu(), labels.cpu()
    counts = torch.randint(min_digits, max_digits + 1, (num_strings,), generator=g)
    picks = torch.randint(0, images.size(0), (num_strings, max_digits), generator=g)
    gaps = torch.randint(min_gap, max_gap + 1, (num_strings, max_digits + 1), generator=g)
    inked = images.amax(1) > ink_threshold  # (M, W0)
    pieces, spans = [], torch.full((num_strings, max_digits, 2), -1, dtype=torch.long)
    for i in range(num_strings):
        columns, col = [], 0
        for k in range(int(counts[i])):
            cols = inked[picks[i, k]].nonzero().flatten()
            digit = images[picks[i, k], :, int(cols[0]) : int(cols[-1]) + 1] if len(cols) else images[picks[i, k]]
            columns += [torch.zeros(images.size(1), int(gaps[i, k])), digit]
            col += int(gaps[i, k])
            spans[i, k] = torch.tensor([col, col + digit.size(1)])
            col += digit.size(1)
        columns.append(torch.zeros(images.size(1), int(gaps[i, -1])))
        pieces.append(torch.cat(columns, 1))
    widths = torch.tensor([p.size(1) for p in pieces])
    out = torch.zeros(num_strings, images.size(1), int(widths.max()))
    for i, p in enumerate(pieces):
        out[i, :, : p.size(1)] = p
    inside = torch.arange(max_digits) < counts.unsqueeze(-1)
    targets = torch.where(inside, labels[picks] + 1, torch.full_like(picks, -1))
    frame_labels = torch.zeros(num_strings, out.size(2), dtype=torch.long)
    cols = torch.arange(out.size(2))
    for k in range(max_digits):
        in_span = (cols >= spans[:, k, :1]) & (cols < spans[:, k, 1:])
        frame_labels = torch.where(in_span, targets[:, k : k + 1], frame_labels)
    frame_labels = frame_labels.masked_fill(cols >= widths.unsqueeze(-1), -1)
    return DigitStrings(out, widths, targets, counts, spans, frame_labels)


def span_alignment_accuracy(alignments: torch.Tensor, spans: torch.Tensor, blank: int = 0, tolerance: int = 0) -> float:
    """Share of the labelled (non-blank) frames of alignments that lie inside the true column span
    of the digit they emit (widened by ``tolerance`` columns on both sides).

    The ``k``-th label emitted by an alignment (a non-blank frame that starts a new label: after a
    blank or a different label) and the frames that repeat it belong to the ``k``-th digit.

    :param alignments: (N, T) frame labels, -1 past each length, each collapsing to its target.
    :param spans: (N, max_digits, 2) true ``[start, end)`` spans.
    :returns: a fraction in [0, 1] (NaN when no frame is labelled).
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 columns, got {tolerance}")
    labelled = (alignments >= 0) & (alignments != blank)
    prev = torch.cat([torch.full_like(alignments[:, :1], blank), alignments[:, :-1]], 1)
    starts = labelled & (alignments != prev)
    symbol = (starts.cumsum(1) - 1).clamp(min=0, max=spans.size(1) - 1)  # (N, T)
    lo, hi = spans[..., 0].gather(1, symbol), spans[..., 1].gather(1, symbol)
    t = torch.arange(alignments.size(1), device=alignments.device)
    hit = labelled & (t >= lo - tolerance) & (t < hi + tolerance)
    return float(hit.sum() / labelled.sum()) if labelled.any() else float("nan")
