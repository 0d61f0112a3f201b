"""Transition weights of a monotonic alignment chain (Wu & Cotterell, 2019).

At output step ``t`` the alignment moves from source position ``i`` to a position ``j >= i``
with probability ``softmax`` of the step's attention scores over the positions ``j >= i``:
``log p(a_t = j | a_{t-1} = i) = s_tj - logsumexp_{j' >= i} s_tj'``. The result is a
:class:`~pyro_lvm.ops.chain.DenseTransition`'s logits, so the chain recursions of
:mod:`pyro_lvm.ops.chain` (the ones CTC and the HMM use) sum, maximize and marginalize it.
"""

from __future__ import annotations

import torch

from pyro_lvm.ops.chain import FLOOR

__all__ = ["monotonic_transitions"]


def monotonic_transitions(scores: torch.Tensor) -> torch.Tensor:
    """Log transition weights (N, T, S, S) from attention scores (N, T, S).

    ``out[n, t, i, j]`` is ``log p(a_t = j | a_{t-1} = i)`` for ``j >= i`` and :data:`FLOOR`
    (impossible) for ``j < i``; each row ``i`` is normalized over ``j >= i``.
    """
    s = scores.size(-1)
    tail = scores.flip(-1).logcumsumexp(-1).flip(-1)  # logsumexp_{j >= i} scores[..., j]
    backwards = torch.ones(s, s, dtype=torch.bool, device=scores.device).tril(-1)  # j < i
    return (scores.unsqueeze(-2) - tail.unsqueeze(-1)).masked_fill(backwards, FLOOR)
