"""Exact inference on a Markov chain of discrete states, vectorized over a batch of sequences.

A chain over ``K`` states and ``T`` frames is given by log weights: ``init`` (N, K) for the
state at frame 0, ``emissions`` (T, N, K) for each frame's state, a transition operator for
frame ``t - 1 -> t``, ``final`` (N, K) for the state at the last frame, and ``lengths`` (N,):
frames at or past a sequence's length are identity transitions with no emission, so every
sequence ends at its own length. The weight of a path is the sum of its log weights and

* :func:`chain_forward` with ``semiring="log"`` gives the forward messages whose
  :func:`chain_total` is ``log sum_paths exp(weight)``, exactly what ``TraceEnum_ELBO``
  computes for the same chain written with one enumerated site per frame under ``pyro.markov``;
* with ``semiring="max"`` it gives Viterbi messages and :func:`chain_backtrack` at
  ``temperature=0`` the best path (``infer_discrete(temperature=0)``);
* :func:`chain_backtrack` at ``temperature=1`` draws paths from the posterior by
  forward-filtering backward-sampling (``infer_discrete(temperature=1)``);
* :func:`chain_marginals` gives ``p(z_t = k)`` by the forward-backward recursions, and
  :func:`chain_log_total` the log total whose gradient in the emissions is that posterior,
  without recording the recursion for autograd (faster for long chains).

Two transition operators: :class:`DenseTransition` (an HMM's full ``K x K`` matrix) and
:class:`BandedTransition` (moves ``s - d -> s`` for a few offsets ``d``, as in CTC's
left-to-right alignment chain), which costs ``O(N K D)`` per frame instead of ``O(N K^2)``.

The recursion is a loop over frames of batched tensor operations (an O(log T)-depth scan of
dense ``K x K`` log-matrix products, as in ``DiscreteHMM``, costs O(T K^3) and measured 3x
slower than this loop for CTC's K = 81 at N = 1). Log weights below :data:`FLOOR` (``-inf``)
are raised to it so that messages and gradients stay finite; totals at or below ``FLOOR / 2``
are reported as ``-inf`` by :func:`chain_total`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "FLOOR",
    "BandedTransition",
    "DenseTransition",
    "chain_backtrack",
    "chain_forward",
    "chain_log_total",
    "chain_marginals",
    "chain_total",
]

#: log weight standing in for ``-inf`` (``exp(FLOOR - x) == 0`` for every finite ``x``).
FLOOR = -1e30


def _reduce(terms: torch.Tensor, dim: int, semiring: str) -> torch.Tensor:
    return terms.logsumexp(dim) if semiring == "log" else terms.amax(dim)


class DenseTransition:
    """A full transition matrix per frame.

    :param logits: log weights of shape (N or 1, T or 1, K, K); ``logits[n, t, i, j]`` weighs the
        move from state ``i`` at frame ``t - 1`` to state ``j`` at frame ``t`` (``t = 0`` unused).
    """

    def __init__(self, logits: torch.Tensor) -> None:
        if logits.dim() != 4 or logits.size(-1) != logits.size(-2):
            raise ValueError(f"transition logits must have shape (N, T, K, K), got {tuple(logits.shape)}")
        self.logits = logits.clamp(min=FLOOR)

    def _at(self, t: int) -> torch.Tensor:
        return self.logits[:, t if self.logits.size(1) > 1 else 0]

    def step(self, alpha: torch.Tensor, t: int, semiring: str) -> torch.Tensor:
        """Message into frame ``t``: reduce over ``i`` of ``alpha[n, i] + logits[n, t, i, j]``; (N, K)."""
        return _reduce(alpha.unsqueeze(-1) + self._at(t), -2, semiring)

    def step_back(self, beta: torch.Tensor, t: int) -> torch.Tensor:
        """Backward message out of frame ``t``: ``logsumexp_j logits[n, t, i, j] + beta[n, j]``; (N, K)."""
        return (self._at(t) + beta.unsqueeze(-2)).logsumexp(-1)

    def into(self, alpha: torch.Tensor, t: int, state: torch.Tensor) -> torch.Tensor:
        """Scores ``alpha[n, i] + logits[n, t, i, state[s, n]]`` of the states at frame ``t - 1``
        given ``state`` (S, N) at frame ``t``; shape (S, N, K)."""
        cols = self._at(t).transpose(-1, -2)  # (N, to, from)
        cols = cols.expand(*state.shape, *cols.shape[-2:])
        index = state[..., None, None].expand(*state.shape, 1, cols.size(-1))
        return alpha + cols.gather(-2, index).squeeze(-2)


class BandedTransition:
    """Moves from state ``s - d`` to state ``s`` for ``d = 0, ..., D - 1``, the same at every frame.

    :param logits: log weights of shape (N, K, D); ``logits[n, s, d]`` weighs the move
        ``s - d -> s`` (``-inf`` or :data:`FLOOR` forbids it; moves from ``s - d < 0`` never happen).
    """

    def __init__(self, logits: torch.Tensor) -> None:
        if logits.dim() != 3:
            raise ValueError(f"banded transition logits must have shape (N, K, D), got {tuple(logits.shape)}")
        self.logits = logits.clamp(min=FLOOR)
        self.width = d = logits.size(-1)
        # window s of the left-padded messages holds x[s - D + 1 .. s]: _into pairs it with the
        # weights of the moves into s (d reversed); _ahead[i, d] is the weight of i -> i + d
        self._into = self.logits.flip(-1)
        ahead = [self.logits[..., 0]] + [F.pad(self.logits[..., j:, j], (0, j), value=FLOOR) for j in range(1, d)]
        self._ahead = torch.stack(ahead, -1)

    def messages(self, init, emissions, lengths, final=None, semiring: str = "log"):
        """:func:`chain_forward`'s messages and, given ``final``, the backward messages
        ``beta[t, n, k]`` (log total weight of the frames after ``t`` given state ``k`` at ``t``),
        from one loop over frames that runs both directions as one batch.

        Each step computes ``x_u = step(x_{u-1} + e_{u-1})``: rows ``0..N-1`` hold the forward
        messages without their own emission, rows ``N..2N-1`` the backward messages of frame
        ``T - 1 - u`` with the states reversed, where the backward recursion is a forward one
        with the reversed band. Emissions are 0 past each length, where a step is the identity.

        :returns: ``alphas`` (T, N, K) and ``betas`` (T, N, K) or None.
        """
        t_max, n, k = emissions.shape
        device = emissions.device
        frames = (torch.arange(t_max, device=device).unsqueeze(-1) < lengths).unsqueeze(-1)  # (T, N, 1)
        e = torch.where(frames, emissions.clamp(min=FLOOR), torch.zeros((), dtype=emissions.dtype, device=device))
        steps = torch.arange(1, t_max, device=device).unsqueeze(-1)  # (T - 1, 1)
        x, before, weights, keep = init.clamp(min=FLOOR).expand(n, k), e[:-1], self._into, steps >= lengths
        if final is not None:
            x = torch.cat([x, final.clamp(min=FLOOR).expand(n, k).flip(-1)], 0)
            before = torch.cat([before, e.flip(0)[:-1].flip(-1)], 1)
            weights = torch.cat([weights, self._ahead.flip(-2, -1)], 0)
            keep = torch.cat([keep, t_max - steps >= lengths], 1)
        keep = keep.unsqueeze(-1)
        ragged = bool((lengths < t_max).any())
        tracked = torch.is_grad_enabled() and any(
            v is not None and v.requires_grad for v in (init, emissions, final, self.logits)
        )
        pad = self.width - 1
        buffer = torch.full((x.size(0), k + pad), FLOOR, dtype=x.dtype, device=device)  # FLOOR-padded on the left
        windows = buffer.unfold(-1, self.width, 1)  # a view: follows the buffer's updates
        history = [x]
        for u in range(1, t_max):
            if tracked:  # autograd: no writes into a shared buffer
                pre = x + before[u - 1]
                win = F.pad(pre, (pad, 0), value=FLOOR).unfold(-1, self.width, 1)
            else:
                pre, win = torch.add(x, before[u - 1], out=buffer[:, pad:]), windows
            new = _reduce(win + weights, -1, semiring)
            x = torch.where(keep[u - 1], pre, new) if ragged else new
            history.append(x)
        history = torch.stack(history)
        betas = None if final is None else history[:, n:].flip(0).flip(-1)
        return history[:, :n] + e, betas

    @torch.no_grad()
    def best_path(self, init, emissions, lengths, final) -> tuple[torch.Tensor, torch.Tensor]:
        """The most probable path by a max-product pass that keeps the best move into every state
        (backpointers) and a backtrace along them: :func:`chain_forward` with ``semiring="max"``
        and :func:`chain_backtrack` at ``temperature=0``, with fewer operations per frame.

        :returns: ``path`` (N, T) states (frames past a length repeat the last state) and its log
            weight (N,), ``-inf`` where no path has positive weight.
        """
        t_max, n, k = emissions.shape
        pad, ragged = self.width - 1, bool((lengths < t_max).any())
        e = emissions.clamp(min=FLOOR)
        keep = (torch.arange(1, t_max, device=e.device).unsqueeze(-1) >= lengths).unsqueeze(-1)  # (T - 1, N, 1)
        x = init.clamp(min=FLOOR) + e[0]
        moves = []
        for u in range(1, t_max):
            best, window = (F.pad(x, (pad, 0), value=FLOOR).unfold(-1, self.width, 1) + self._into).max(-1)
            x = torch.where(keep[u - 1], x, best + e[u]) if ragged else best + e[u]
            moves.append(window)
        score, state = (x + final.clamp(min=FLOOR)).max(-1)
        offsets = pad - torch.stack(moves) if moves else None  # (T - 1, N, K): d of the best move into each state
        path = [state]
        for u in range(t_max - 1, 0, -1):
            prev = state - offsets[u - 1].gather(-1, state.unsqueeze(-1)).squeeze(-1)
            state = torch.where(keep[u - 1, :, 0], state, prev) if ragged else prev
            path.append(state)
        return torch.stack(path[::-1], -1), score.masked_fill(score <= FLOOR / 2, float("-inf"))

    def into(self, alpha: torch.Tensor, t: int, state: torch.Tensor) -> torch.Tensor:
        """Scores of the states at frame ``t - 1`` given ``state`` (S, N) at frame ``t``; (S, N, K)."""
        k = alpha.size(-1)
        weights = self.logits.expand(state.shape[0], *self.logits.shape)
        weights = weights.gather(-2, state[..., None, None].expand(*state.shape, 1, self.width)).squeeze(-2)
        offset = state.unsqueeze(-1) - torch.arange(k, device=state.device)  # d = s_t - i
        allowed = (offset >= 0) & (offset < self.width)
        move = weights.gather(-1, offset.clamp(0, self.width - 1))
        return torch.where(allowed, alpha + move, torch.full_like(move, FLOOR))


def chain_forward(
    init: torch.Tensor,
    emissions: torch.Tensor,
    transition: DenseTransition | BandedTransition,
    lengths: torch.Tensor,
    semiring: str = "log",
) -> torch.Tensor:
    """Forward messages ``alpha[t, n, k]``: the log total (or max) weight of paths ending in ``k`` at ``t``.

    :param init: (N, K) log weights of the state at frame 0.
    :param emissions: (T, N, K) log weights of each frame's state.
    :param transition: a :class:`DenseTransition` or :class:`BandedTransition`.
    :param lengths: (N,) sequence lengths in ``1..T``; messages stay constant past them.
    :param semiring: ``"log"`` (sum over paths) or ``"max"`` (best path).
    :returns: (T, N, K); ``alpha[T - 1]`` is each sequence's message at its own last frame.
    """
    if semiring not in ("log", "max"):
        raise ValueError(f"semiring must be 'log' or 'max', got {semiring!r}")
    if isinstance(transition, BandedTransition):
        return transition.messages(init, emissions, lengths, semiring=semiring)[0]
    emissions = emissions.clamp(min=FLOOR)  # -inf -> FLOOR: messages stay finite (sums of floors)
    alpha = init.clamp(min=FLOOR) + emissions[0]
    alphas = [alpha]
    ragged = bool((lengths < emissions.size(0)).any())
    for t in range(1, emissions.size(0)):
        new = transition.step(alpha, t, semiring) + emissions[t]
        alpha = torch.where((lengths > t).unsqueeze(-1), new, alpha) if ragged else new
        alphas.append(alpha)
    return torch.stack(alphas)


def chain_total(alphas: torch.Tensor, final: torch.Tensor, semiring: str = "log") -> torch.Tensor:
    """Log total (or best) weight per sequence, (N,), from :func:`chain_forward`'s messages and the
    (N, K) ``final`` log weights; ``-inf`` where no path has positive weight."""
    total = _reduce(alphas[-1] + final.clamp(min=FLOOR), -1, semiring)
    return total.masked_fill(total <= FLOOR / 2, float("-inf"))


def chain_backtrack(
    alphas: torch.Tensor,
    final: torch.Tensor,
    transition: DenseTransition | BandedTransition,
    lengths: torch.Tensor,
    temperature: int = 1,
    num_samples: int = 1,
) -> torch.Tensor:
    """Paths drawn backwards from forward messages: samples from the posterior over paths
    (``temperature=1``, log-semiring messages) or the best path (``temperature=0``,
    max-semiring messages), as ``infer_discrete`` does.

    :returns: (num_samples, N, T) states; frames at or past a sequence's length repeat its
        last state (callers mask them).
    """
    if temperature not in (0, 1):
        raise ValueError(f"temperature must be 0 (best path) or 1 (posterior sample), got {temperature!r}")

    def choose(scores: torch.Tensor) -> torch.Tensor:
        if temperature == 0:
            return scores.argmax(-1)
        uniform = torch.rand_like(scores).clamp(min=torch.finfo(scores.dtype).tiny)
        return (scores - (-uniform.log()).log()).argmax(-1)  # Gumbel-max: a draw from softmax(scores)

    scores = (alphas[-1] + final.clamp(min=FLOOR)).expand(num_samples, *alphas.shape[1:])
    state = choose(scores)  # (S, N)
    path = [state]
    for t in range(alphas.size(0) - 2, -1, -1):
        new = choose(transition.into(alphas[t], t + 1, state))
        state = torch.where(lengths > t + 1, new, state)
        path.append(state)
    return torch.stack(path[::-1], -1)


def _backward_messages(emissions, transition: DenseTransition, lengths, final) -> torch.Tensor:
    """``beta[t, n, k]``: log total weight of the frames after ``t`` given state ``k`` at ``t``; (T, N, K)."""
    t_max = emissions.size(0)
    emissions = emissions.clamp(min=FLOOR)
    beta = final.clamp(min=FLOOR).expand_as(emissions[0])
    betas = [beta]
    ragged = bool((lengths < t_max).any())
    for t in range(t_max - 1, 0, -1):
        new = transition.step_back(emissions[t] + beta, t)
        beta = torch.where((lengths > t).unsqueeze(-1), new, beta) if ragged else new
        betas.append(beta)
    return torch.stack(betas[::-1])


def _posterior(alphas, betas, lengths, total) -> torch.Tensor:
    """``p(z_t = k) = exp(alpha_t[k] + beta_t[k] - total)`` on frames inside each length, else 0."""
    frames = torch.arange(alphas.size(0), device=alphas.device).unsqueeze(-1) < lengths  # (T, N)
    keep = (frames & torch.isfinite(total)).unsqueeze(-1)
    log_post = alphas + betas - total.masked_fill(~torch.isfinite(total), 0.0).unsqueeze(-1)
    return torch.where(keep, log_post.exp(), torch.zeros_like(log_post))


def _messages(init, emissions, transition, lengths, final):
    """Forward and backward messages: one joint loop for a banded chain, two loops otherwise."""
    if isinstance(transition, BandedTransition):
        return transition.messages(init, emissions, lengths, final)
    return chain_forward(init, emissions, transition, lengths), _backward_messages(emissions, transition, lengths, final)


class _LogTotal(torch.autograd.Function):
    """The log total of a chain, differentiable in the emissions through the posterior."""

    @staticmethod
    def forward(ctx, emissions, init, transition, lengths, final):
        alphas, betas = _messages(init, emissions, transition, lengths, final)
        total = chain_total(alphas, final)
        ctx.save_for_backward(alphas, betas, lengths, total)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        alphas, betas, lengths, total = ctx.saved_tensors
        return _posterior(alphas, betas, lengths, total) * grad_total.unsqueeze(-1), None, None, None, None


def chain_log_total(
    init: torch.Tensor,
    emissions: torch.Tensor,
    transition: DenseTransition | BandedTransition,
    lengths: torch.Tensor,
    final: torch.Tensor,
) -> torch.Tensor:
    """``chain_total(chain_forward(...), final)`` (N,) computed without recording the recursion:
    its gradient with respect to ``emissions`` is the posterior ``p(z_t = k)`` from a backward
    recursion. ``init``, ``transition`` and ``final`` are treated as constants (use
    :func:`chain_forward` and :func:`chain_total` to differentiate them)."""
    if not (torch.is_grad_enabled() and emissions.requires_grad):
        return chain_total(chain_forward(init, emissions, transition, lengths), final)
    return _LogTotal.apply(emissions, init.detach(), transition, lengths, final.detach())


@torch.no_grad()
def chain_marginals(
    init: torch.Tensor,
    emissions: torch.Tensor,
    transition: DenseTransition | BandedTransition,
    lengths: torch.Tensor,
    final: torch.Tensor,
) -> torch.Tensor:
    """Posterior marginals ``p(z_t = k)``, (T, N, K), by the forward-backward recursions (zero past
    each length, and for sequences with no path)."""
    alphas, betas = _messages(init, emissions, transition, lengths, final)
    return _posterior(alphas, betas, lengths, chain_total(alphas, final))
