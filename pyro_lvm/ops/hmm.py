"""A discrete hidden Markov model with a dense transition matrix and any emission distribution.

The same chain recursions as CTC's alignment (:mod:`pyro_lvm.ops.chain`) with a full
``K x K`` transition matrix: the marginal likelihood, the most probable state path, posterior
state paths and per-frame posterior marginals, for a batch of sequences of different lengths.

Parameters follow :class:`pyro.distributions.DiscreteHMM`: ``initial_logits`` is the
distribution of the state *before* the first observation and ``transition_logits[..., t, :, :]``
moves it to the state of observation ``t``, so ``hmm_log_likelihood`` equals
``DiscreteHMM(initial_logits, transition_logits, observation_dist).log_prob(value)``.
Logits are normalized here as DiscreteHMM does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.distributions import Distribution

from pyro_lvm.ops._checks import as_lengths, length_range, report
from pyro_lvm.ops.chain import DenseTransition, chain_backtrack, chain_forward, chain_marginals, chain_total

__all__ = ["hmm_log_likelihood", "hmm_posterior_marginals", "hmm_sample_states", "hmm_viterbi"]


class _Chain(NamedTuple):
    init: torch.Tensor  # (N, K)
    emissions: torch.Tensor  # (T, N, K)
    transition: DenseTransition
    final: torch.Tensor  # (N, K)
    lengths: torch.Tensor  # (N,)


def _hmm_chain(initial_logits, transition_logits, observation_dist, value, lengths) -> _Chain:
    if not torch.is_tensor(value) or value.dim() < 2 + len(observation_dist.event_shape):
        raise ValueError(
            "value must have shape (N, T) + observation_dist.event_shape = (N, T) + "
            f"{tuple(observation_dist.event_shape)}, got {getattr(value, 'shape', type(value))}"
        )
    event_dim = len(observation_dist.event_shape)
    n, t_max = value.shape[:2]
    k = initial_logits.size(-1)
    if initial_logits.shape not in ((k,), (n, k)):
        raise ValueError(f"initial_logits must have shape (K,) or (N, K) = ({n}, K), got {tuple(initial_logits.shape)}")
    if transition_logits.dim() not in (2, 3, 4) or transition_logits.shape[-2:] != (k, k):
        raise ValueError(
            f"transition_logits must have shape (K, K), (T, K, K) or (N, T, K, K) with K = {k}, got {tuple(transition_logits.shape)}"
        )
    if transition_logits.dim() >= 3 and transition_logits.size(-3) not in (1, t_max):
        raise ValueError(f"transition_logits has {transition_logits.size(-3)} steps; value has T = {t_max}")
    emissions = observation_dist.log_prob(value.unsqueeze(-1 - event_dim))
    if emissions.shape != (n, t_max, k):
        raise ValueError(
            f"observation_dist.log_prob gives shape {tuple(emissions.shape)} for value of shape {tuple(value.shape)}; "
            f"expected (N, T, K) = ({n}, {t_max}, {k}): observation_dist.batch_shape must broadcast to (N, T, K)"
        )
    if lengths is None:
        lengths = torch.full((n,), t_max, dtype=torch.long, device=value.device)
    lengths = as_lengths(lengths, "lengths", n, value.device)
    report([length_range(lengths, "lengths", "length", 1, t_max, "T")])
    initial = initial_logits - initial_logits.logsumexp(-1, True)
    trans = transition_logits - transition_logits.logsumexp(-1, True)
    while trans.dim() < 4:
        trans = trans.unsqueeze(0)
    init = (initial.unsqueeze(-1) + trans[:, 0]).logsumexp(-2).expand(n, k)
    final = torch.zeros(n, k, dtype=emissions.dtype, device=emissions.device)
    return _Chain(init, emissions.transpose(0, 1), DenseTransition(trans), final, lengths)


def hmm_log_likelihood(
    initial_logits: torch.Tensor,
    transition_logits: torch.Tensor,
    observation_dist: Distribution,
    value: torch.Tensor,
    lengths: torch.Tensor | Sequence[int] | None = None,
) -> torch.Tensor:
    """``log p(x_{0:T_n})`` per sequence, summing over state paths.

    :param initial_logits: (K,) or (N, K) logits of the state before the first observation.
    :param transition_logits: (K, K), (T, K, K) or (N, T, K, K) logits, rows = from-state.
    :param observation_dist: a distribution with batch shape broadcastable to (N, T, K) (the
        emission of each state) and any event shape.
    :param value: (N, T) + event_shape observations.
    :param lengths: (N,) frames per sequence (default all T); frames past a length are ignored.
    :returns: (N,) log-likelihoods.
    """
    chain = _hmm_chain(initial_logits, transition_logits, observation_dist, value, lengths)
    return chain_total(chain_forward(chain.init, chain.emissions, chain.transition, chain.lengths), chain.final)


def _mask(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return states.masked_fill(torch.arange(states.size(-1), device=states.device) >= lengths.unsqueeze(-1), -1)


@torch.no_grad()
def hmm_viterbi(
    initial_logits: torch.Tensor,
    transition_logits: torch.Tensor,
    observation_dist: Distribution,
    value: torch.Tensor,
    lengths: torch.Tensor | Sequence[int] | None = None,
) -> torch.Tensor:
    """The most probable state path (max-product forward pass and backtrace).

    :returns: LongTensor (N, T) of states, ``-1`` past each length.
    """
    chain = _hmm_chain(initial_logits, transition_logits, observation_dist, value, lengths)
    alphas = chain_forward(chain.init, chain.emissions, chain.transition, chain.lengths, "max")
    return _mask(chain_backtrack(alphas, chain.final, chain.transition, chain.lengths, temperature=0)[0], chain.lengths)


@torch.no_grad()
def hmm_sample_states(
    initial_logits: torch.Tensor,
    transition_logits: torch.Tensor,
    observation_dist: Distribution,
    value: torch.Tensor,
    lengths: torch.Tensor | Sequence[int] | None = None,
    num_samples: int = 1,
) -> torch.Tensor:
    """State paths drawn from the posterior ``p(z | x)`` by forward-filtering backward-sampling.

    :returns: LongTensor (num_samples, N, T) of states, ``-1`` past each length.
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    chain = _hmm_chain(initial_logits, transition_logits, observation_dist, value, lengths)
    alphas = chain_forward(chain.init, chain.emissions, chain.transition, chain.lengths)
    paths = chain_backtrack(alphas, chain.final, chain.transition, chain.lengths, 1, num_samples)
    return _mask(paths, chain.lengths)


def hmm_posterior_marginals(
    initial_logits: torch.Tensor,
    transition_logits: torch.Tensor,
    observation_dist: Distribution,
    value: torch.Tensor,
    lengths: torch.Tensor | Sequence[int] | None = None,
) -> torch.Tensor:
    """Per-frame posterior ``p(z_t = k | x)``.

    :returns: (N, T, K); rows past each length are 0.
    """
    chain = _hmm_chain(initial_logits, transition_logits, observation_dist, value, lengths)
    return chain_marginals(chain.init, chain.emissions.detach(), chain.transition, chain.lengths, chain.final).transpose(0, 1)
