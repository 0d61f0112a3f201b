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
slower than this loop for CTC's K = 81 at N = 1). A banded chain with small messages instead
composes a few frames' bands into one wider band for all frames at once and loops over
fewer, wider steps (a middle ground between the two). Log weights below :data:`FLOOR` (``-inf``)
are raised to it so that messages and gradients stay finite; totals at or below ``FLOOR / 2``
are reported as ``-inf`` by :func:`chain_total`.
"""

from __future__ import annotations

import functools

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


#: frames whose step matrices :func:`_run_banded` builds at once.
_BLOCK = 16
#: messages of at most this many entries (rows x states) advance :data:`_FRAMES_PER_STEP` frames a step.
#: Measured on CTC's chain (T = 150, one CPU thread): 2 frames a step gives 0.79-0.92x the time of
#: one frame a step up to 324 entries (4 frames: 0.85-1.03x) and 1.12x at 648, hence these values.
_SMALL_MESSAGE = 512
_FRAMES_PER_STEP = 2


def _band_step(sources, matrix, op, out: torch.Tensor | None = None) -> torch.Tensor:
    """``op``-reduce over ``d`` of ``sources[d] + matrix[d]``, pairwise (``torch.logaddexp`` or
    ``torch.maximum``): a band of width 3 takes two vectorized operations, where a reduction over
    a last dimension of size 3 costs several times more per element. ``sources[d]`` is the
    previous message shifted right by ``d`` (FLOOR-filled), each (R, K); ``out`` receives the
    result (no autograd) or None."""
    acc = torch.add(sources[0], matrix[0], out=out) if out is not None else sources[0] + matrix[0]
    for source, weight in zip(sources[1:], matrix[1:]):
        acc = op(acc, source + weight, out=acc) if out is not None else op(acc, source + weight)
    return acc


def _shifted(padded: torch.Tensor, width: int, k: int) -> list[torch.Tensor]:
    """Views ``padded[..., s - d]`` for ``d = 0..width - 1`` of a message left-padded by ``width - 1``."""
    return [padded[..., width - 1 - d : width - 1 - d + k] for d in range(width)]


def _step_matrices(before: torch.Tensor, weights: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """The steps ``x_u[s] = reduce_d x_{u-1}[s - d] + e_{u-1}[s - d] + w[s, d]`` as (U, D, R, K)
    tensors ``m[u, d, r, s] = e_{u-1}[r, s - d] + w[r, s, d]``.

    :param before: (U, R, K) emissions of the frame each step leaves.
    :param weights: (R, K, D) transition weights ``w[r, s, d]`` of the moves ``s - d -> s``.
    :param keep: (U, R) steps past a row's length, the identity (plus the emission); None if none.
    """
    width, k = weights.size(-1), before.size(-1)
    shifted = torch.stack([F.pad(before[..., : k - d], (d, 0), value=FLOOR) for d in range(width)], 1)
    moves = shifted + weights.permute(2, 0, 1)
    if keep is None:
        return moves
    identity = F.pad(before.unsqueeze(1), (0, 0, 0, 0, 0, width - 1), value=FLOOR)
    return torch.where(keep[:, None, :, None], identity, moves)


def _compose(first: torch.Tensor, second: torch.Tensor, op) -> torch.Tensor:
    """Two banded steps as one, for many step pairs at once: ``first`` (P, Da, R, K) then
    ``second`` (P, Db, R, K) give (P, min(Da + Db - 1, K), R, K), offset ``j`` reducing with ``op``
    over the paths ``s - j -> s - d2 -> s``: ``first[d1][s - d2] + second[d2][s]`` with
    ``d1 + d2 = j`` (offsets ``j >= K`` start before state 0 and are left out)."""
    da, db, k = first.size(1), second.size(1), first.size(-1)
    offsets = []
    for j in range(min(da + db - 1, k)):
        terms = [
            second[:, d2] + F.pad(first[:, j - d2, :, : k - d2], (d2, 0), value=FLOOR)
            for d2 in range(max(0, j - da + 1), min(db, j + 1))
        ]
        offsets.append(functools.reduce(op, terms))
    return torch.stack(offsets, 1)


def _run_few_steps(x: torch.Tensor, matrices: torch.Tensor, frames: int, op, semiring: str) -> torch.Tensor:
    """:func:`_run_banded` for small messages, where each operation's fixed cost dominates:
    ``frames`` (a power of two) steps composed into one for all frames at once
    (:func:`_compose`: pairs, then pairs of pairs, ...), a loop that takes ``frames`` frames a step
    with one add and one reduction over the wider band, then the messages between filled in
    level by level, one batched step each. ``matrices`` (U, D, R, K); returns (U + 1, R, K)."""
    steps, k = matrices.size(0), x.size(-1)
    padding = -steps % frames
    if padding:  # identity steps
        identity = torch.full_like(matrices[:1], FLOOR)
        identity[:, 0] = 0.0
        matrices = torch.cat([matrices, identity.expand(padding, *matrices.shape[1:])])
    levels = [matrices]
    while levels[-1].size(0) * frames > matrices.size(0):
        levels.append(_compose(levels[-1][0::2], levels[-1][1::2], op))
    top = levels[-1]
    width = top.size(1)
    windows_weights = top.flip(1).permute(0, 2, 3, 1)  # (C, R, K, W): window order, entry W - 1 is d = 0
    buffer = x.new_full((top.size(0) + 1, *x.shape[:-1], k + width - 1), FLOOR)
    xs = buffer[..., width - 1 :]
    xs[0] = x
    windows, outs = buffer.unfold(-1, width, 1), xs.unbind(0)
    reduce = torch.logsumexp if semiring == "log" else torch.amax
    for c in range(top.size(0)):
        reduce(windows[c] + windows_weights[c], -1, out=outs[c + 1])
    for level in reversed(levels[:-1]):
        w = level.size(1)
        sources = _shifted(F.pad(xs[:-1], (w - 1, 0), value=FLOOR), w, k)
        between = _band_step(sources, level[0::2].unbind(1), op)
        xs = torch.cat([torch.stack([xs[:-1], between], 1).flatten(0, 1), xs[-1:]])
    return xs[: steps + 1]


def _run_banded(x, before, weights, keep, semiring: str) -> torch.Tensor:
    """Messages ``x_0 .. x_U`` of ``x_u[s] = reduce_d x_{u-1}[s - d] + before[u - 1, s - d] + weights[s, d]``
    (the identity plus the emission where ``keep[u - 1]``): x (R, K) and :func:`_step_matrices`'s
    arguments; returns (U + 1, R, K).

    The steps' matrices are built :data:`_BLOCK` frames at a time (few operations, and blocks
    that stay in cache). Without autograd every message is written in place into one
    FLOOR-padded buffer whose shifted views are the next step's input: a frame costs ``D`` adds
    and ``D - 1`` ``logaddexp`` and little Python; small messages go through
    :func:`_run_few_steps` instead, which makes fewer, wider steps.
    """
    steps, width, k = before.size(0), weights.size(-1), x.size(-1)
    op = torch.logaddexp if semiring == "log" else torch.maximum
    blocks = (
        [m.unbind(0) for m in _step_matrices(before[i : i + _BLOCK], weights, None if keep is None else keep[i : i + _BLOCK])]
        for i in range(0, steps, _BLOCK)
    )
    if torch.is_grad_enabled() and any(v.requires_grad for v in (x, before, weights)):
        history = [x]
        for block in blocks:
            for matrix in block:
                x = _band_step(_shifted(F.pad(x, (width - 1, 0), value=FLOOR), width, k), matrix, op)
                history.append(x)
        return torch.stack(history)
    if x.numel() <= _SMALL_MESSAGE:
        matrices = _step_matrices(before, weights, keep)
        return _run_few_steps(x, matrices, _FRAMES_PER_STEP, op, semiring)
    buffer = x.new_full((steps + 1, *x.shape[:-1], k + width - 1), FLOOR)
    messages = buffer[..., width - 1 :]
    messages[0] = x
    sources = list(zip(*(view.unbind(0) for view in _shifted(buffer, width, k))))  # [u][d]
    outs = messages.unbind(0)
    u = 0
    for block in blocks:
        for matrix in block:
            _band_step(sources[u], matrix, op, out=outs[u + 1])
            u += 1
    return messages


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
        # offsets d >= K move from s - d < 0 and never happen: a chain of fewer states than the band
        # is wide (CTC's chain for a target of 0 or 1 labels) keeps its first K offsets
        self.logits = logits[..., : logits.size(-2)].clamp(min=FLOOR)
        self.width = d = self.logits.size(-1)
        # window s of the left-padded messages holds x[s - D + 1 .. s]: _into pairs it with the
        # weights of the moves into s (d reversed); _ahead[i, d] is the weight of i -> i + d
        self._into = self.logits.flip(-1)
        ahead = [self.logits[..., 0]] + [F.pad(self.logits[..., j:, j], (0, j), value=FLOOR) for j in range(1, d)]
        self._ahead = torch.stack(ahead, -1)

    def messages(
        self,
        init: torch.Tensor,
        emissions: torch.Tensor,
        lengths: torch.Tensor,
        final: torch.Tensor | None = None,
        semiring: str = "log",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:func:`chain_forward`'s messages and, given ``final``, the backward messages
        ``beta[t, n, k]`` (log total weight of the frames after ``t`` given state ``k`` at ``t``),
        from one loop over frames that runs both directions as one batch.

        Rows ``0..N-1`` hold the forward messages without their own emission, rows ``N..2N-1``
        the backward messages of frame ``T - 1 - u`` with the states reversed, where the backward
        recursion is a forward one with the reversed band. The steps' banded matrices
        (``_step_matrices``, emissions included) are built a block of frames at a time, so
        the loop over frames (``_run_banded``) does one add and one reduction a frame.

        :returns: ``alphas`` (T, N, K) and ``betas`` (T, N, K) or None.
        """
        t_max, n, k = emissions.shape
        device = emissions.device
        frames = (torch.arange(t_max, device=device).unsqueeze(-1) < lengths).unsqueeze(-1)  # (T, N, 1)
        e = torch.where(frames, emissions.clamp(min=FLOOR), torch.zeros((), dtype=emissions.dtype, device=device))
        steps = torch.arange(1, t_max, device=device).unsqueeze(-1)  # (T - 1, 1)
        x, before, weights, keep = init.clamp(min=FLOOR).expand(n, k), e[:-1], self.logits, steps >= lengths
        if final is not None:
            x = torch.cat([x, final.clamp(min=FLOOR).expand(n, k).flip(-1)], 0)
            before = torch.cat([before, e.flip(0)[:-1].flip(-1)], 1)
            weights = torch.cat([weights, self._ahead.flip(-2)], 0)
            keep = torch.cat([keep, t_max - steps >= lengths], 1)
        history = _run_banded(x, before, weights, keep if bool(keep.any()) else None, semiring)
        betas = None if final is None else history[:, n:].flip(0).flip(-1)
        return history[:, :n] + e, betas

    @torch.no_grad()
    def best_path(
        self, init: torch.Tensor, emissions: torch.Tensor, lengths: torch.Tensor, final: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
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
