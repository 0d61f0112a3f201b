"""Input checks shared by the chain front ends (:mod:`pyro_lvm.ops.ctc`, :mod:`pyro_lvm.ops.hmm`):
value checks over a batch, reported together with one device sync, and the checks of a
lengths argument (integers, shape (N,), values in a range)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch


class Problem(NamedTuple):
    """A value check over a batch: where it fails and what to say about the first failure."""

    mask: torch.Tensor  # True where the input is wrong
    describe: Callable[..., str]  # the message, from the index of the first True entry
    warn: bool = False  # a RuntimeWarning instead of a ValueError


def report(problems: list[Problem]) -> None:
    """Raise a ValueError for the first problem found (in list order), else warn for each warning
    found; one device sync for all of them."""
    found = torch.stack([p.mask.any() for p in problems]).tolist()
    messages = [(p.warn, p.describe(*(int(v) for v in p.mask.nonzero()[0]))) for p, hit in zip(problems, found) if hit]
    errors = [message for warn, message in messages if not warn]
    if errors:
        raise ValueError(errors[0])
    for _, message in messages:
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def as_lengths(value, name: str, n: int, device: torch.device) -> torch.Tensor:
    """``value`` as a LongTensor of shape (N,) on ``device``; a ValueError naming ``name`` if it
    does not hold integers or has another shape."""
    lengths = torch.as_tensor(value, device=device)
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers, got dtype {lengths.dtype}")
    if lengths.shape != (n,):
        raise ValueError(f"{name} must have shape (N,) = ({n},), got {tuple(lengths.shape)}")
    return lengths.long()


def length_range(lengths: torch.Tensor, name: str, what: str, low: int, high: int, high_name: str, note: str = "") -> Problem:
    """The check ``low <= lengths[i] <= high`` of (N,) ``lengths``; its message reads
    ``{name}[i] = v is out of range: expected {low} <= {what} <= {high_name} = {high}{note}``."""
    return Problem(
        (lengths < low) | (lengths > high),
        lambda i: f"{name}[{i}] = {int(lengths[i])} is out of range: expected {low} <= {what} <= {high_name} = {high}{note}",
    )
