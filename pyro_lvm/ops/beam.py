"""Beam search over the outputs of any left-to-right predictive distribution.

The decoder is a function ``step(state, tokens) -> (log_probs, state)``: given the previous
output ``tokens`` (R,) and a ``state`` (a tuple of tensors with R rows) it returns
``log p(y_t | y_<t, x)`` (R, V) and the next state. A finished hypothesis (one that has emitted
``eos``) keeps its slot in the beam and its score, so a beam as wide as the number of
hypotheses is an exhaustive search, and a beam of width 1 is greedy decoding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["beam_search"]

Step = Callable[[tuple[torch.Tensor, ...], torch.Tensor], tuple[torch.Tensor, tuple[torch.Tensor, ...]]]


@torch.no_grad()
def beam_search(
    step: Step, state: tuple[torch.Tensor, ...], bos: int, eos: int, beam_width: int, max_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``beam_width`` best outputs per row found by beam search.

    :param step: the decoder (see the module docstring).
    :param state: the initial state, tensors with N rows (one per input).
    :param bos: the first input token. :param eos: the token that ends an output.
    :param beam_width: hypotheses kept per row (>= 1).
    :param max_length: the most output steps (``eos`` included); a hypothesis must end by then.
    :returns: ``outputs`` int64 (N, beam_width, max_length) padded with ``eos`` and ``scores``
        (N, beam_width) their log-probabilities, best first (``-inf`` for empty slots).
    """
    if beam_width < 1 or max_length < 1:
        raise ValueError(f"beam_width and max_length must be >= 1, got {beam_width} and {max_length}")
    n, b = state[0].size(0), beam_width
    device = state[0].device
    state = tuple(s.repeat_interleave(b, 0) for s in state)
    scores = torch.full((n, b), float("-inf"), device=device)
    scores[:, 0] = 0.0
    tokens = torch.full((n * b,), bos, dtype=torch.long, device=device)
    done = torch.zeros(n * b, dtype=torch.bool, device=device)
    outputs = torch.full((n, b, 0), eos, dtype=torch.long, device=device)
    for t in range(max_length):
        log_probs, state = step(state, tokens)
        v = log_probs.size(-1)
        ended = torch.full_like(log_probs, float("-inf"))
        ended[:, eos] = 0.0
        if t == max_length - 1:  # the last step may only end the output
            log_probs = log_probs + ended
        log_probs = torch.where(done.unsqueeze(-1), ended, log_probs)
        candidates = (scores.unsqueeze(-1) + log_probs.view(n, b, v)).view(n, b * v)
        scores, flat = candidates.topk(b, -1)
        origin, tokens = flat // v, flat % v
        rows = (origin + torch.arange(n, device=device).unsqueeze(-1) * b).view(-1)
        state = tuple(s.index_select(0, rows) for s in state)
        outputs = torch.cat([outputs.gather(1, origin.unsqueeze(-1).expand(-1, -1, t)), tokens.unsqueeze(-1)], -1)
        done = done.index_select(0, rows) | (tokens.view(-1) == eos)
        tokens = tokens.view(-1)
        if bool(done.all()):
            break
    pad = max_length - outputs.size(-1)
    return torch.nn.functional.pad(outputs, (0, pad), value=eos), scores
