"""The CTC likelihood as a Pyro distribution over label strings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions import TorchDistribution, constraints

from pyro_lvm.ops.ctc import _check_log_probs, ctc_collapse, ctc_log_likelihood

__all__ = ["CTC"]


class CTC(TorchDistribution):
    """``p(y | x) = sum_{z: B(z) = y} prod_t p(z_t | x)``: label strings given per-frame label
    probabilities, marginalized over alignments, so ``pyro.sample("y", CTC(...), obs=targets)``
    scores targets inside a model.

    A string is a row of labels padded with ``-1`` (or any padding when ``target_lengths`` is
    given, as in :func:`torch.nn.functional.ctc_loss`); strings have at most ``T`` labels.

    :param log_probs: (T, N, C) log-softmax frame probabilities (checked here: NaN or ``+inf`` on
        a frame inside an input is an error, as is an input length outside ``1..T``).
    :param input_lengths: (N,) frames per sequence, ``1 <= T_n <= T`` (default all ``T``).
    :param target_lengths: (N,) label counts of the values that will be scored; default: the
        number of non-negative entries of each value row (``-1`` padding at the end).
    :param blank: the blank class.
    :param method: ``"native"`` or ``"enum"``, see :func:`~pyro_lvm.ops.ctc.ctc_log_likelihood`.
    :param zero_infinity: score impossible strings 0 instead of ``-inf``.

    ``batch_shape = (N,)``, ``event_shape = (T,)``; :meth:`log_prob` takes values of shape
    (N, S) for any width ``S``, :meth:`sample` returns (sample_shape + (N, T)) strings padded with -1.
    """

    arg_constraints = {"log_probs": constraints.real}
    support = constraints.integer_interval(-1, 2**62)
    has_enumerate_support = False

    def __init__(
        self,
        log_probs: torch.Tensor,
        input_lengths: torch.Tensor | Sequence[int] | None = None,
        target_lengths: torch.Tensor | Sequence[int] | None = None,
        blank: int = 0,
        method: str = "native",
        zero_infinity: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        if method not in ("native", "enum"):
            raise ValueError(f"method must be 'native' or 'enum', got {method!r}")
        if input_lengths is None and torch.is_tensor(log_probs) and log_probs.dim() == 3:
            input_lengths = torch.full(log_probs.shape[1:2], log_probs.size(0), dtype=torch.long, device=log_probs.device)
        self.input_lengths = _check_log_probs(log_probs, input_lengths, blank)
        t_max, n, _ = log_probs.shape
        self.log_probs = log_probs
        self.target_lengths = None if target_lengths is None else torch.as_tensor(target_lengths, device=log_probs.device)
        self.blank, self.method, self.zero_infinity = blank, method, zero_infinity
        super().__init__(batch_shape=torch.Size([n]), event_shape=torch.Size([t_max]), validate_args=validate_args)

    def _validate_sample(self, value: torch.Tensor) -> None:
        # values are strings of any width; the full check (labels, blanks, lengths) is ctc_log_likelihood's
        if value.dim() != 2 or value.size(0) != self.batch_shape[0]:
            raise ValueError(f"CTC values must have shape (N, S) with N = {self.batch_shape[0]}, got {tuple(value.shape)}")

    def _lengths_of(self, value: torch.Tensor) -> torch.Tensor:
        if self.target_lengths is not None:
            return self.target_lengths
        present = value >= 0
        lengths = present.sum(-1)
        inner = torch.arange(value.size(-1), device=value.device) < lengths.unsqueeze(-1)
        bad = (present != inner).any(-1).nonzero().flatten()
        if len(bad):
            raise ValueError(
                f"value row {int(bad[0])} has -1 padding before a label; pad strings at the end or give target_lengths"
            )
        return lengths

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """(N,) log-probabilities of the (N, S) strings ``value``."""
        if self._validate_args:
            self._validate_sample(value)
        return ctc_log_likelihood(
            self.log_probs,
            value,
            self.input_lengths,
            self._lengths_of(value),
            blank=self.blank,
            method=self.method,
            zero_infinity=self.zero_infinity,
        )

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> torch.Tensor:  # noqa: B008 (Pyro's own form)
        """Strings ``B(z)`` for alignments ``z ~ prod_t p(z_t | x)``; shape sample_shape + (N, T), -1 padded."""
        shape = torch.Size(sample_shape)
        t_max, n, _ = self.log_probs.shape
        frames = torch.distributions.Categorical(logits=self.log_probs.transpose(0, 1)).sample(shape)  # (..., N, T)
        past = torch.arange(t_max, device=frames.device) >= self.input_lengths.unsqueeze(-1)
        frames = frames.masked_fill(past, -1)
        out = torch.full(frames.shape, -1, dtype=torch.long, device=frames.device)
        for row, labels in zip(out.view(-1, t_max), ctc_collapse(frames, self.blank)):
            row[: len(labels)] = torch.tensor(labels, dtype=torch.long)
        return out
