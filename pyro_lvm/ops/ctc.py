"""CTC: a latent frame-level alignment, summed, maximized and sampled exactly.

The labels ``y = (y_1, ..., y_S)`` of an input with ``T`` frames are explained by an alignment
``z = (z_1, ..., z_T)`` of frame labels (labels and a blank) with ``y = B(z)``, where ``B``
merges repeats and then drops blanks, and ``p(y | x) = sum_{z: B(z) = y} prod_t p(z_t | x)``.
Every such ``z`` is one left-to-right path through the extended label sequence
``(blank, y_1, blank, y_2, ..., y_S, blank)`` of ``L = 2 S + 1`` positions: a frame stays at its
position, moves to the next one, or skips a blank between two different labels; the path
starts at one of the first two positions and ends at one of the last two. The alignment is
therefore a Markov chain over positions, written literally as a Pyro program with one
enumerated site per frame (:func:`pyro_lvm.models.ctc_alignment_model`), and computed by the vectorized
chain recursions of :mod:`pyro_lvm.ops.chain` (exactly the sum ``TraceEnum_ELBO`` forms):

* :func:`ctc_log_likelihood` -- ``log p(y | x)``, by torch's kernel (``method="native"``) or
  the chain (``method="enum"``); both equal ``torch.nn.functional.ctc_loss``;
* :func:`ctc_viterbi` -- the most probable alignment (``infer_discrete(temperature=0)``);
* :func:`ctc_sample_alignments` -- posterior alignments (``infer_discrete(temperature=1)``);
* :func:`ctc_posterior_marginals` -- ``p(z_t = c | y, x)`` per frame;
* :func:`ctc_viterbi_log_likelihood` -- ``log p(z* | x)``, the objective of Viterbi training.

Shapes follow :func:`torch.nn.functional.ctc_loss`: ``log_probs`` (T, N, C) log-softmax
outputs, ``targets`` (N, S) padded, ``input_lengths`` and ``target_lengths`` (N,).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from pyro_lvm.ops._checks import Problem, as_lengths, length_range, report
from pyro_lvm.ops.chain import (
    FLOOR,
    BandedTransition,
    chain_backtrack,
    chain_forward,
    chain_log_total,
    chain_marginals,
    chain_total,
)

__all__ = [
    "ctc_collapse",
    "ctc_greedy_decode",
    "ctc_label_error_rate",
    "ctc_log_likelihood",
    "ctc_posterior_marginals",
    "ctc_sample_alignments",
    "ctc_viterbi",
    "ctc_viterbi_log_likelihood",
]


class _Inputs(NamedTuple):
    log_probs: torch.Tensor  # (T, N, C)
    targets: torch.Tensor  # (N, S) long
    input_lengths: torch.Tensor  # (N,) long
    target_lengths: torch.Tensor  # (N,) long


def _nan_or_posinf(log_probs: torch.Tensor, frames: torch.Tensor) -> str:
    """The error for the first NaN on a frame inside an input (``frames`` (T, N)), else for the
    first +inf (called where there is one or the other)."""
    inside = frames.unsqueeze(-1)
    hits = (torch.isnan(log_probs) & inside).nonzero()
    name, hits = ("NaN", hits) if len(hits) else ("+inf", (torch.isposinf(log_probs) & inside).nonzero())
    t, i = (int(v) for v in hits[0, :2])
    return f"log_probs contains {name}: sequence {i}, frame {t} (log-probabilities must be finite or -inf)"


def _log_probs_problems(log_probs, input_lengths, blank: int, normalized: bool) -> tuple[torch.Tensor, list[Problem]]:
    """Check the shapes of ``log_probs`` (T, N, C), ``input_lengths`` (N,) and the blank (raising at
    once), and return the input lengths as a LongTensor and the checks of their values: input
    lengths in ``1..T``, no NaN or ``+inf`` on the frames inside an input and, if ``normalized``,
    a warning for frames whose probabilities do not sum to 1."""
    if not torch.is_tensor(log_probs) or not log_probs.is_floating_point() or log_probs.dim() != 3:
        raise ValueError(
            "log_probs must be a floating tensor of shape (T, N, C) (frames, sequences, classes), got "
            + (f"shape {tuple(log_probs.shape)} dtype {log_probs.dtype}" if torch.is_tensor(log_probs) else repr(type(log_probs)))
        )
    t_max, n, c = log_probs.shape
    if t_max < 1 or n < 1 or c < 2:
        raise ValueError(f"log_probs needs T >= 1 frames, N >= 1 sequences and C >= 2 classes, got shape {(t_max, n, c)}")
    if not 0 <= blank < c:
        raise ValueError(f"blank must be a class index in [0, C) = [0, {c}), got {blank}")
    input_lengths = as_lengths(input_lengths, "input_lengths", n, log_probs.device)
    with torch.no_grad():
        frames = torch.arange(t_max, device=log_probs.device).unsqueeze(-1) < input_lengths  # (T, N)
        problems = [
            length_range(input_lengths, "input_lengths", "input length", 1, t_max, "T"),
            # a frame's maximum is NaN or +inf where the frame holds one (amax propagates NaN): one
            # pass over log_probs and no (T, N, C) temporary; the message looks for the first one
            Problem(~(log_probs.amax(-1) < float("inf")) & frames, lambda *_: _nan_or_posinf(log_probs, frames)),
        ]
        if normalized:
            norm = log_probs.exp().sum(-1)  # (T, N)
            problems.append(Problem(
                ((norm - 1).abs() > 1e-3) & frames,
                lambda t, i: f"log_probs are not normalized: sequence {i}, frame {t} has probabilities summing to {float(norm[t, i]):.4g} "
                "over classes (expected 1; pass log_softmax outputs)",
                warn=True,
            ))
    return input_lengths, problems


def _check_log_probs(log_probs, input_lengths, blank: int, normalized: bool = True) -> torch.Tensor:
    """Validate ``log_probs`` and ``input_lengths`` (see :func:`_log_probs_problems`) at the
    boundary of a function that takes no targets; returns the input lengths as a LongTensor."""
    input_lengths, problems = _log_probs_problems(log_probs, input_lengths, blank, normalized)
    report(problems)
    return input_lengths


def _check(log_probs, targets, input_lengths, target_lengths, blank: int) -> _Inputs:
    """Validate CTC inputs at the boundary; every message names the argument, the sequence and the problem."""
    input_lengths, problems = _log_probs_problems(log_probs, input_lengths, blank, normalized=True)
    n, c = log_probs.shape[1:]
    targets = torch.as_tensor(targets, device=log_probs.device)
    if targets.is_floating_point() or targets.dtype == torch.bool or targets.dim() != 2 or targets.size(0) != n:
        raise ValueError(
            f"targets must be an integer tensor of shape (N, S) with N = {n}, got shape {tuple(targets.shape)} dtype {targets.dtype}"
        )
    targets = targets.long()
    target_lengths = as_lengths(target_lengths, "target_lengths", n, log_probs.device)
    s_max = targets.size(1)
    inside = torch.arange(s_max, device=log_probs.device) < target_lengths.unsqueeze(-1)
    problems += [
        length_range(target_lengths, "target_lengths", "target length", 0, s_max, "S", " (the width of targets)"),
        Problem(
            inside & ((targets < 0) | (targets >= c)),
            lambda i, j: f"targets[{i}, {j}] = {int(targets[i, j])} is outside the classes [0, C) = [0, {c}) (sequence {i})",
        ),
        Problem(
            inside & (targets == blank),
            lambda i, j: f"targets[{i}, {j}] = {int(targets[i, j])} is the blank ({blank}); targets hold labels only (sequence {i})",
        ),
    ]
    report(problems)
    return _Inputs(log_probs, targets, input_lengths, target_lengths)


class _Chain(NamedTuple):
    ext: torch.Tensor  # (N, L) class of each position of the extended label sequence
    init: torch.Tensor  # (N, L)
    emissions: torch.Tensor  # (T, N, L)
    transition: BandedTransition
    final: torch.Tensor  # (N, L)
    lengths: torch.Tensor  # (N,)


def _alignment_chain(inputs: _Inputs, blank: int) -> _Chain:
    """The alignment chain over positions of ``(blank, y_1, blank, ..., y_S, blank)``."""
    log_probs, targets, input_lengths, target_lengths = inputs
    n, s_max = targets.shape
    device = log_probs.device
    size = 2 * s_max + 1
    pos = torch.arange(size, device=device)
    inside = torch.arange(s_max, device=device) < target_lengths.unsqueeze(-1)
    labels = torch.where(inside, targets, torch.full_like(targets, blank))
    ext = torch.full((n, size), blank, dtype=torch.long, device=device)
    ext[:, 1::2] = labels
    ext_len = (2 * target_lengths + 1).unsqueeze(-1)  # (N, 1)
    valid = pos < ext_len
    zero = torch.zeros((), dtype=log_probs.dtype, device=device)
    floor = torch.full((), FLOOR, dtype=log_probs.dtype, device=device)
    stay = valid
    step = valid & (pos >= 1)
    skip = valid & (pos % 2 == 1) & (pos >= 3)
    skip[:, 3:] &= ext[:, 3:] != ext[:, 1:-2]
    band = torch.where(torch.stack([stay, step, skip], -1), zero, floor)
    init = torch.where((pos < 2) & valid, zero, floor)
    final = torch.where(((pos == ext_len - 1) | (pos == ext_len - 2)) & valid, zero, floor)
    emissions = log_probs.gather(2, ext.unsqueeze(0).expand(log_probs.size(0), -1, -1))
    return _Chain(ext, init, emissions, BandedTransition(band), final, input_lengths)


def _mask_frames(labels: torch.Tensor, input_lengths: torch.Tensor) -> torch.Tensor:
    past = torch.arange(labels.size(-1), device=labels.device) >= input_lengths.unsqueeze(-1)
    return labels.masked_fill(past, -1)


class _KernelGradientFix(torch.autograd.Function):
    """Zero in value; adds ``exp(log_probs)`` on the frames of sequences with a finite likelihood to the
    gradient, turning torch's kernel gradient (with respect to log-softmax logits) into the gradient
    in ``log_probs``."""

    @staticmethod
    def forward(ctx, log_probs, weight):
        ctx.save_for_backward(log_probs, weight)
        return log_probs.new_zeros(log_probs.size(1))

    @staticmethod
    def backward(ctx, grad):
        log_probs, weight = ctx.saved_tensors
        return log_probs.exp() * (weight * grad.unsqueeze(-1)), None


def _native_log_likelihood(inputs: _Inputs, blank: int, zero_infinity: bool) -> torch.Tensor:
    """:func:`ctc_log_likelihood` by torch's kernel, with the gradient of the chain: the posterior on
    sequences of finite likelihood, zero on the others (where torch's backward gives NaN unless
    ``zero_infinity``)."""
    log_probs = inputs.log_probs
    loss = F.ctc_loss(*inputs, blank=blank, reduction="none")
    infinite = torch.isinf(loss)
    if not (torch.is_grad_enabled() and log_probs.requires_grad):
        return -loss.masked_fill(infinite, 0.0) if zero_infinity else -loss
    if bool(infinite.any()):  # rerun with torch's zeroed gradient on those rows
        loss = F.ctc_loss(*inputs, blank=blank, reduction="none", zero_infinity=True)
        if not zero_infinity:
            loss = loss.masked_fill(infinite, float("inf"))
    frames = torch.arange(log_probs.size(0), device=log_probs.device).unsqueeze(-1) < inputs.input_lengths
    weight = (frames & ~infinite).unsqueeze(-1).to(log_probs.dtype)  # (T, N, 1)
    return -loss + _KernelGradientFix.apply(log_probs, weight)


def ctc_log_likelihood(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: torch.Tensor | Sequence[int],
    target_lengths: torch.Tensor | Sequence[int],
    blank: int = 0,
    method: str = "native",
    zero_infinity: bool = False,
) -> torch.Tensor:
    """``log p(y | x)``, the log marginal probability of each target over all its alignments.

    :param log_probs: (T, N, C) log-softmax frame probabilities ``log p(z_t = c | x)``.
    :param targets: (N, S) labels padded to width ``S`` (entries past a target's length ignored).
    :param input_lengths: (N,) frames per sequence, ``1 <= T_n <= T``.
    :param target_lengths: (N,) labels per target, ``0 <= S_n <= S``.
    :param blank: the blank class.
    :param method: ``"native"`` (torch's CTC kernel) or ``"enum"`` (the forward recursion of
        the enumerated alignment chain, vectorized over sequences, a loop over frames).
    :param zero_infinity: give 0 (and zero gradient) instead of ``-inf`` for targets no
        alignment of the input can produce, as ``torch.nn.functional.ctc_loss`` does.
    :returns: (N,) log-likelihoods; equal to ``-ctc_loss(..., reduction="none")``. Both methods
        give ``-inf`` (0 with ``zero_infinity``) and a zero gradient for targets with no alignment.

    The gradient with respect to ``log_probs`` is the posterior ``p(z_t = c | y, x)`` (frames past
    ``T_n`` get 0). Torch's kernel reports ``exp(log_probs) - p(z_t = c | y, x)`` for the loss, the
    gradient with respect to the logits of a log-softmax; ``method="native"`` corrects it by the
    ``exp(log_probs)`` term so both methods give the same (true) gradient, and through a
    log-softmax all three agree.
    """
    inputs = _check(log_probs, targets, input_lengths, target_lengths, blank)
    if method == "native":
        return _native_log_likelihood(inputs, blank, zero_infinity)
    if method != "enum":
        raise ValueError(f"method must be 'native' or 'enum', got {method!r}")
    chain = _alignment_chain(inputs, blank)
    result = chain_log_total(chain.init, chain.emissions, chain.transition, chain.lengths, chain.final)
    if zero_infinity:
        result = torch.where(torch.isinf(result), torch.zeros_like(result), result)
    return result


def ctc_viterbi(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: torch.Tensor | Sequence[int],
    target_lengths: torch.Tensor | Sequence[int],
    blank: int = 0,
) -> torch.Tensor:
    """The most probable alignment of each target, ``argmax_{z: B(z) = y} p(z | x)``.

    A max-product forward pass over the alignment chain and a backtrace along the best moves
    (what ``infer_discrete(temperature=0)`` does on :func:`~pyro_lvm.models.ctc_alignment_model`).

    :returns: LongTensor (N, T) of frame labels (blank included), ``-1`` past each input length
        and on the whole row of a target that no alignment can produce.
    """
    inputs = _check(log_probs, targets, input_lengths, target_lengths, blank)
    with torch.no_grad():
        chain = _alignment_chain(inputs, blank)
        positions, score = chain.transition.best_path(chain.init, chain.emissions, chain.lengths, chain.final)
        labels = _mask_frames(chain.ext.gather(1, positions), chain.lengths)
    return labels.masked_fill((score == float("-inf")).unsqueeze(-1), -1)


def ctc_sample_alignments(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: torch.Tensor | Sequence[int],
    target_lengths: torch.Tensor | Sequence[int],
    blank: int = 0,
    num_samples: int = 1,
) -> torch.Tensor:
    """Alignments drawn from the posterior ``p(z | y, x)`` by forward-filtering backward-sampling
    (what ``infer_discrete(temperature=1)`` does on :func:`~pyro_lvm.models.ctc_alignment_model`).

    :returns: LongTensor (num_samples, N, T) of frame labels, ``-1`` past each input length and
        on the rows of targets that no alignment can produce.
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    inputs = _check(log_probs, targets, input_lengths, target_lengths, blank)
    with torch.no_grad():
        chain = _alignment_chain(inputs, blank)
        alphas = chain_forward(chain.init, chain.emissions, chain.transition, chain.lengths)
        positions = chain_backtrack(alphas, chain.final, chain.transition, chain.lengths, 1, num_samples)
        labels = _mask_frames(chain.ext.expand(num_samples, -1, -1).gather(2, positions), chain.lengths)
        feasible = chain_total(alphas, chain.final) > float("-inf")
    return labels.masked_fill(~feasible.unsqueeze(-1), -1)


def ctc_posterior_marginals(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: torch.Tensor | Sequence[int],
    target_lengths: torch.Tensor | Sequence[int],
    blank: int = 0,
) -> torch.Tensor:
    """Per-frame posterior over labels, ``p(z_t = c | y, x)``.

    :returns: (T, N, C); each frame's row sums to 1 before the input length and is 0 after it
        (all zeros for targets that no alignment can produce).
    """
    inputs = _check(log_probs, targets, input_lengths, target_lengths, blank)
    chain = _alignment_chain(inputs, blank)
    by_position = chain_marginals(chain.init, chain.emissions, chain.transition, chain.lengths, chain.final)
    index = chain.ext.unsqueeze(0).expand_as(by_position)
    return torch.zeros_like(inputs.log_probs).scatter_add_(2, index, by_position)


def ctc_viterbi_log_likelihood(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: torch.Tensor | Sequence[int],
    target_lengths: torch.Tensor | Sequence[int],
    blank: int = 0,
) -> torch.Tensor:
    """``log p(z* | x)`` for the Viterbi alignment ``z*`` of each target (held fixed): the
    objective that Viterbi training (hard EM) maximizes, differentiable in ``log_probs``.

    :returns: (N,) log-probabilities; ``-inf`` for targets no alignment can produce.
    """
    best = ctc_viterbi(log_probs, targets, input_lengths, target_lengths, blank)  # (N, T)
    frames = best.t().unsqueeze(-1)  # (T, N, 1)
    scores = log_probs.gather(2, frames.clamp(min=0)).squeeze(-1) * (frames.squeeze(-1) >= 0)
    result = scores.sum(0)
    return torch.where(best[:, 0] >= 0, result, torch.full_like(result, float("-inf")))


def ctc_collapse(alignments: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """``B(z)``: merge repeated frame labels, then drop blanks and padding (negative entries).

    :param alignments: (..., T) frame labels.
    :returns: nested lists of labels, one list per alignment (row-major over the batch dims).
    """
    rows = alignments.reshape(-1, alignments.size(-1)).tolist()
    out = []
    for row in rows:
        labels, prev = [], None
        for z in row:
            if z >= 0 and z != prev and z != blank:
                labels.append(z)
            prev = z if z >= 0 else prev
        out.append(labels)
    return out


def ctc_greedy_decode(log_probs: torch.Tensor, input_lengths: torch.Tensor | Sequence[int], blank: int = 0) -> list[list[int]]:
    """Best-path decoding: collapse the per-frame argmax labels (frames past each length ignored).

    :param log_probs: (T, N, C) log-probabilities or logits (unnormalized is fine here); NaN or
        ``+inf`` inside an input is an error.
    :param input_lengths: (N,) frames per sequence, ``1 <= T_n <= T``.
    :returns: N lists of labels.
    """
    lengths = _check_log_probs(log_probs, input_lengths, blank, normalized=False)
    return ctc_collapse(_mask_frames(log_probs.argmax(-1).t(), lengths), blank)


def _edit_distance(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def ctc_label_error_rate(decoded: list[list[int]], targets: torch.Tensor, target_lengths: torch.Tensor | Sequence[int]) -> float:
    """Label error rate: total Levenshtein distance (substitutions, insertions, deletions) between
    the decoded strings and the targets, divided by the total target length.

    :param decoded: N label lists (e.g. from :func:`ctc_greedy_decode`).
    :param targets: (N, S) padded targets; ``target_lengths`` (N,) their lengths.
    """
    lengths = torch.as_tensor(target_lengths).tolist()
    if len(decoded) != len(lengths) or targets.size(0) != len(lengths):
        raise ValueError(f"decoded ({len(decoded)}), targets ({targets.size(0)}) and target_lengths ({len(lengths)}) differ in length")
    total = sum(lengths)
    if total == 0:
        raise ValueError("the targets are all empty; the label error rate is undefined")
    rows = targets.tolist()
    return sum(_edit_distance(d, r[:n]) for d, r, n in zip(decoded, rows, lengths)) / total
