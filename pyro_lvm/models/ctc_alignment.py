"""The CTC alignment as a literal Pyro program: one enumerated chain position per frame.

The vectorized recursions of :mod:`pyro_lvm.ops.ctc` compute exactly the sum that
``TraceEnum_ELBO`` forms over this program; it is here to check them and to show the story.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from pyro_lvm.ops.chain import FLOOR
from pyro_lvm.ops.ctc import _alignment_chain, _check

__all__ = ["ctc_alignment_model"]


def ctc_alignment_model(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: torch.Tensor | Sequence[int],
    target_lengths: torch.Tensor | Sequence[int],
    blank: int = 0,
) -> None:
    """The alignment as a Pyro program: one enumerated position per frame under ``pyro.markov``.

    Site ``s_t`` is the position (0..2S) of frame ``t`` in ``(blank, y_1, blank, ..., blank)``,
    batched over ``pyro.plate("sequences", N, dim=-1)``. Its uniform prior is undone by factor
    ``w_t``, which adds ``log p(z_t = ext[s_t] | x)`` and 0 / ``FLOOR`` for allowed / forbidden
    moves (identity moves and no emission past the input length); factor ``final`` keeps paths
    that end on one of the last two positions. With an empty guide, ``TraceEnum_ELBO``'s loss is
    ``-sum_n log p(y_n | x_n)``, and ``infer_discrete`` gives Viterbi paths (``temperature=0``)
    or posterior samples (``temperature=1``). Meant for checking the vectorized recursions on
    small ``T``: it has ``T`` sample sites.
    """
    inputs = _check(log_probs, targets, input_lengths, target_lengths, blank)
    chain = _alignment_chain(inputs, blank)
    t_max, n, size = chain.emissions.shape
    band = chain.transition.logits  # (N, L, 3): move s - d -> s
    dense = torch.full((n, size, size), FLOOR, dtype=band.dtype, device=band.device)
    for d in range(band.size(-1)):
        idx = torch.arange(d, size, device=band.device)
        dense[:, idx - d, idx] = band[:, d:, d]
    uniform = torch.zeros(n, size, dtype=band.dtype, device=band.device)
    with pyro.plate("sequences", n, dim=-1):
        seq = torch.arange(n, device=band.device)
        prev = None
        for t in pyro.markov(range(t_max)):
            s = pyro.sample(f"s_{t}", dist.Categorical(logits=uniform), infer={"enumerate": "parallel"})
            active = t < chain.lengths
            if prev is None:
                move = Vindex(chain.init)[seq, s]
            else:
                same = torch.where(prev == s, 0.0, FLOOR)
                move = torch.where(active, Vindex(dense)[seq, prev, s], same)
            emit = torch.where(active, Vindex(chain.emissions[t])[seq, s], 0.0)
            pyro.factor(f"w_{t}", move + emit + math.log(size))
            if t == t_max - 1:
                pyro.factor("final", Vindex(chain.final)[seq, s])
            prev = s
