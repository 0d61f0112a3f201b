"""Attention as a latent alignment: morphological inflection as ``p(y | x)`` with a latent ``a_t`` per output step.

``x`` is a source sequence (a lemma's characters and its feature tags), ``y`` the output
characters ending in ``<eos>``. At step ``t`` the decoder state ``h_t`` has read ``y_<t``
(networks: :mod:`pyro_lvm.models.attention_nets`) and a latent ``a_t`` picks a source position:

    p(y | x) = prod_t sum_j p(a_t = j | h_t, x) p(y_t | a_t = j, h_t, x).

* :class:`HardAttentionInflector`: 0th-order attention. The decoder never reads ``a``, so the
  ``a_t`` are independent given ``y`` and ``TraceEnum_ELBO`` (empty guide) sums them exactly and
  in parallel; :class:`~pyro_lvm.infer.HardEM` replaces each by its MAP; with
  :class:`VariationalAttentionGuide` (``q(a_t | x, y)``, enumerated in the guide) the ELBO's
  expectation is summed exactly too.
* :class:`MonotonicAttentionInflector`: ``a_t >= a_{t-1}``, a first-order chain summed by the
  recursions of :mod:`pyro_lvm.ops.chain` inside a ``pyro.factor`` (its ``latent_sites`` are
  empty: the chain is summed inside the factor).
* :class:`SoftAttentionInflector`: the deterministic baseline ``p(y_t | E[a_t], h_t)``.

Shapes: ``src`` (N, S) and ``src_len`` (N,), ``tgt`` (N, T) and ``tgt_len`` (N,) from
:func:`pyro_lvm.data.encode_inflections`; V target symbols, ``<eos>`` = 0.
"""

from __future__ import annotations

from typing import Any, NoReturn

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule
from pyro.ops.indexing import Vindex

from pyro_lvm.models.attention_nets import MASKED, BiEncoder, InflectionNets
from pyro_lvm.models.base import LatentVariableModel
from pyro_lvm.ops.alignment import monotonic_transitions
from pyro_lvm.ops.beam import beam_search
from pyro_lvm.ops.chain import DenseTransition, chain_backtrack, chain_forward, chain_marginals, chain_total

__all__ = ["HardAttentionInflector", "MonotonicAttentionInflector", "SoftAttentionInflector", "VariationalAttentionGuide"]

EOS = 0


def check_words(src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor | None = None, tgt_len: torch.Tensor | None = None,
                max_output_length: int | None = None, target_size: int | None = None) -> None:
    """Raise ``ValueError`` unless the tensors are padded words as :func:`~pyro_lvm.data.encode_inflections` makes them."""
    for name, t, dims in (("src", src, 2), ("src_len", src_len, 1), ("tgt", tgt, 2), ("tgt_len", tgt_len, 1)):
        if t is not None and (not torch.is_tensor(t) or t.dtype != torch.long or t.dim() != dims):
            got = f"{getattr(t, 'dtype', type(t))} {tuple(getattr(t, 'shape', ()))}"
            raise ValueError(f"{name} must be an int64 tensor with {dims} dims, got {got}")
    if src_len.shape != src.shape[:1] or bool((src_len > src.size(1)).any()):
        raise ValueError(f"src_len must have shape ({src.size(0)},) with lengths <= {src.size(1)}, got {src_len.tolist()}")
    if bool((src_len < 1).any()):
        word = int((src_len < 1).nonzero()[0])
        raise ValueError(f"word {word} has an empty source string (src_len 0); every word needs a lemma")
    if tgt is None:
        return
    if tgt_len.shape != src_len.shape or tgt.size(0) != src.size(0) or bool((tgt_len < 1).any()) or bool((tgt_len > tgt.size(1)).any()):
        raise ValueError(f"tgt (N, T) and tgt_len (N,) must match src's N = {src.size(0)} with lengths in 1..T, got {tuple(tgt.shape)}")
    if max_output_length is not None and int(tgt_len.max()) > max_output_length:
        longest = int(tgt_len.max())
        raise ValueError(f"an output of {longest} steps is longer than the decoder's limit max_output_length={max_output_length}")
    if target_size is not None and (bool((tgt < 0).any()) or bool((tgt >= target_size).any())):
        raise ValueError(f"tgt must hold target symbols in [0, {target_size}), got values in [{int(tgt.min())}, {int(tgt.max())}]")


def _steps(tgt: torch.Tensor, tgt_len: torch.Tensor) -> torch.Tensor:
    """(N, T) bool: the output steps inside each word."""
    return torch.arange(tgt.size(1), device=tgt.device) < tgt_len.unsqueeze(-1)


def _point_mass(size: int, like: torch.Tensor, at: torch.Tensor | int = 0) -> torch.Tensor:
    """Log weights (*at.shape, size): 0 at position ``at``, :data:`MASKED` elsewhere."""
    at = torch.as_tensor(at, device=like.device)
    return torch.full((*at.shape, size), MASKED, dtype=like.dtype, device=like.device).scatter(-1, at.unsqueeze(-1), 0.0)


def _entropy_safe(log_post: torch.Tensor, steps: torch.Tensor) -> dist.Categorical:
    """The per-step posterior, with steps past each length a point mass on position 0."""
    return dist.Categorical(logits=torch.where(steps.unsqueeze(-1), log_post, _point_mass(log_post.size(-1), log_post)))


class _Inflector(LatentVariableModel):
    """What the attention stories share: networks, input checks, beam search and sampling."""

    max_plate_nesting = 2
    latent_sites = ("a",)

    def __init__(self, source_size: int, target_size: int, embed: int = 32, hidden: int = 64, max_output_length: int = 64) -> None:
        super().__init__()
        for name, value in (("source_size", source_size), ("target_size", target_size), ("embed", embed), ("hidden", hidden)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(max_output_length, int) or max_output_length < 1:
            raise ValueError(f"max_output_length must be an integer >= 1, got {max_output_length!r}")
        self.target_size, self.max_output_length = target_size, max_output_length
        self.nets = InflectionNets(source_size, target_size, embed, hidden)

    @property
    def latent_size(self) -> int:
        """The most output steps: ``a_t`` ranges over the source positions of each word, one per step."""
        return self.max_output_length

    def check(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor | None = None,
              tgt_len: torch.Tensor | None = None) -> None:
        """Raise ``ValueError`` unless the words fit this story (:func:`check_words` with its limits)."""
        check_words(src, src_len, tgt, tgt_len, self.max_output_length, self.target_size)

    def start(self, src: torch.Tensor, src_len: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The decoding state before the first output: ``(enc, mask, h, c, log_pa, emit)`` with N rows."""
        self.check(src, src_len)
        enc, mask = self.nets.encode(src, src_len)
        n, s, hidden = src.size(0), src.size(1), self.nets.decoder.hidden_size
        zeros = enc.new_zeros(n, hidden)
        return enc, mask, zeros, zeros, _point_mass(s, enc, torch.zeros(n, dtype=torch.long)), enc.new_zeros(n, s, self.target_size)

    def step(self, state: tuple[torch.Tensor, ...], tokens: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``log p(y_t | y_<t, x)`` (R, V) after reading ``tokens`` = ``y_{t-1}`` (R,), and the next state."""
        enc, mask, h, c, log_pa, emit = state
        out, (h, c) = self.nets.decode(tokens.unsqueeze(-1), (h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()))
        log_pa = self._prior(out, enc, mask, log_pa, emit, tokens)
        emit = self.nets.emissions(out, enc)[:, 0]
        return (log_pa.unsqueeze(-1) + emit).logsumexp(-2), (enc, mask, h[0], c[0], log_pa, emit)

    def _prior(self, out: torch.Tensor, enc: torch.Tensor, mask: torch.Tensor, log_pa: torch.Tensor, emit: torch.Tensor,
               tokens: torch.Tensor) -> torch.Tensor:
        """``log p(a_t | y_<t, x)`` (R, S) for decoder output ``out`` (R, 1, H), given the previous step's ``log_pa`` and ``emit``."""
        return self.nets.attention_logits(out, enc, mask)[:, 0].log_softmax(-1)

    @torch.no_grad()
    def predict(self, src: torch.Tensor, src_len: torch.Tensor, beam_width: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """The most probable outputs by beam search under ``p(y | x)``: (N, max_output_length) padded
        with ``<eos>``, and their log-probabilities (N,)."""
        outputs, scores = beam_search(self.step, self.start(src, src_len), self.target_size, EOS, beam_width, self.max_output_length)
        return outputs[:, 0], scores[:, 0]

    @torch.no_grad()
    def sample(self, num_samples: int, src: torch.Tensor, src_len: torch.Tensor,
               return_latents: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Outputs ``y ~ p(y | x)``: (num_samples, N, max_output_length), ``<eos>`` after the end (an
        output that reaches the decoder's limit is cut there: its last step is ``<eos>``); with
        ``return_latents`` the alignments too (same shape, 0 past the end)."""
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        n = src.size(0)
        state = self.start(src.repeat(num_samples, 1), src_len.repeat(num_samples))
        tokens = torch.full((n * num_samples,), self.target_size, dtype=torch.long, device=src.device)
        done = torch.zeros_like(tokens, dtype=torch.bool)
        ys, latents = [], []
        for t in range(self.max_output_length):
            _, state = self.step(state, tokens)
            a, tokens = self._draw(state)
            tokens, a = tokens.masked_fill(done | (t == self.max_output_length - 1), EOS), a.masked_fill(done, 0)
            state = (*state[:4], _point_mass(state[4].size(-1), state[4], a), torch.zeros_like(state[5]))
            ys.append(tokens)
            latents.append(a)
            done = done | (tokens == EOS)
        y = torch.stack(ys, -1).view(num_samples, n, -1)
        return (y, torch.stack(latents, -1).view(num_samples, n, -1)) if return_latents else y

    def _draw(self, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """An alignment and an output drawn from the step's ``p(a_t)`` and ``p(y_t | a_t)``."""
        a = dist.Categorical(logits=state[4]).sample()
        return a, dist.Categorical(logits=state[5][torch.arange(a.size(0)), a]).sample()


class HardAttentionInflector(_Inflector):
    """0th-order hard attention: ``a_t ~ Categorical(softmax_j h_t . W enc_j)``, ``y_t ~ p(y_t | a_t, h_t)``.

    Sites of :meth:`forward`, in the plates ``"words"`` (N, dim -2) and ``"steps"`` (T, dim -1),
    masked past each word's length: ``a`` (enumerated in parallel) and ``y`` (observed).

    :param source_size, target_size: vocabulary sizes. :param embed, hidden: network sizes.
    :param max_output_length: the decoder's limit on output steps (``<eos>`` included).
    """

    def alignment_scores(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``log p(a_t = j | y_<t, x)`` (N, T, S) and ``log p(y_t = v | a_t = j, y_<t, x)`` (N, T, S, V)."""
        enc, mask = self.nets.encode(src, src_len)
        h = self.nets.teacher_forced(tgt)
        return self.nets.attention_logits(h, enc, mask).log_softmax(-1), self.nets.emissions(h, enc)

    def forward(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor, tgt_len: torch.Tensor) -> torch.Tensor:
        """The story for words ``src`` with outputs ``tgt`` (see the class docstring); returns ``y`` (N, T)."""
        self.check(src, src_len, tgt, tgt_len)
        log_prior, log_emit = self.alignment_scores(src, src_len, tgt)
        n, t = tgt.shape
        with pyro.plate("words", n, dim=-2), pyro.plate("steps", t, dim=-1), poutine.mask(mask=_steps(tgt, tgt_len)):
            a = pyro.sample("a", dist.Categorical(logits=log_prior), infer={"enumerate": "parallel"})
            return pyro.sample("y", dist.Categorical(logits=Vindex(log_emit)[..., a, :]), obs=tgt)

    def _joint(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor, tgt_len: torch.Tensor) -> torch.Tensor:
        """``log p(a_t = j, y_t | y_<t, x)`` (N, T, S)."""
        self.check(src, src_len, tgt, tgt_len)
        log_prior, log_emit = self.alignment_scores(src, src_len, tgt)
        return log_prior + log_emit.gather(-1, tgt[:, :, None, None].expand(*log_prior.shape, 1)).squeeze(-1)

    @torch.no_grad()
    def posterior(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor, tgt_len: torch.Tensor) -> dist.Categorical:
        """``p(a_t | x, y)`` per output step: batch shape (N, T) over S positions (a point mass on 0 past each length)."""
        return _entropy_safe(self._joint(src, src_len, tgt, tgt_len).log_softmax(-1), _steps(tgt, tgt_len))

    @torch.no_grad()
    def map_latents(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor, tgt_len: torch.Tensor) -> torch.Tensor:
        """The MAP alignment, int64 (N, T): each step's most probable source position."""
        return self.posterior(src, src_len, tgt, tgt_len).logits.argmax(-1)

    def log_likelihood(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor, tgt_len: torch.Tensor) -> torch.Tensor:
        """The exact ``log p(y | x)`` per word, (N,) nats (differentiable)."""
        return (self._joint(src, src_len, tgt, tgt_len).logsumexp(-1) * _steps(tgt, tgt_len)).sum(-1)


class MonotonicAttentionInflector(_Inflector):
    """Monotonic hard attention: ``a_t >= a_{t-1}`` (:func:`~pyro_lvm.ops.alignment.monotonic_transitions`), ``a_{-1} = 0``.

    The story scores ``log p(y | x)`` with a ``pyro.factor`` ``"y"`` in the plate ``"words"``
    (dim -1), the chain summed by :func:`~pyro_lvm.ops.chain.chain_forward`; train it with
    ``Trace_ELBO`` and the empty guide. Same parameters as :class:`HardAttentionInflector`.
    """

    max_plate_nesting = 1
    latent_sites = ()

    def chain(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, DenseTransition, torch.Tensor]:
        """The alignment chain: ``init`` (N, S), the transitions (N, T, S, S) and the emissions ``log p(y_t | a_t = j)`` (T, N, S)."""
        enc, mask = self.nets.encode(src, src_len)
        h = self.nets.teacher_forced(tgt)
        trans = monotonic_transitions(self.nets.attention_logits(h, enc, mask))
        emit = self.nets.emissions(h, enc).gather(-1, tgt[:, :, None, None].expand(*trans.shape[:3], 1)).squeeze(-1)
        return trans[:, 0, 0], DenseTransition(trans), emit.transpose(0, 1)

    def _prior(self, out: torch.Tensor, enc: torch.Tensor, mask: torch.Tensor, log_pa: torch.Tensor, emit: torch.Tensor,
               tokens: torch.Tensor) -> torch.Tensor:
        # the previous step's posterior given its output (the first step's token, <bos>, reads emit = 0)
        index = tokens.clamp(max=emit.size(-1) - 1)[:, None, None].expand(*log_pa.shape, 1)
        seen = (log_pa + emit.gather(-1, index)[..., 0]).log_softmax(-1)
        trans = monotonic_transitions(self.nets.attention_logits(out, enc, mask))[:, 0]
        return (seen.unsqueeze(-1) + trans).logsumexp(-2)

    def forward(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor, tgt_len: torch.Tensor) -> torch.Tensor:
        """The story: the factor ``log p(y | x)`` per word; returns it, (N,)."""
        log_lik = self.log_likelihood(src, src_len, tgt, tgt_len)
        with pyro.plate("words", src.size(0), dim=-1):
            pyro.factor("y", log_lik)
        return log_lik

    def log_likelihood(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor, tgt_len: torch.Tensor) -> torch.Tensor:
        """The exact ``log p(y | x)`` per word, (N,) nats: the chain's forward recursion (differentiable)."""
        self.check(src, src_len, tgt, tgt_len)
        init, trans, emit = self.chain(src, src_len, tgt)
        return chain_total(chain_forward(init, emit, trans, tgt_len), torch.zeros_like(init))

    @torch.no_grad()
    def posterior(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor, tgt_len: torch.Tensor) -> dist.Categorical:
        """``p(a_t | x, y)`` per output step by forward-backward: batch shape (N, T) (a point mass on 0 past each length)."""
        self.check(src, src_len, tgt, tgt_len)
        init, trans, emit = self.chain(src, src_len, tgt)
        probs = chain_marginals(init, emit, trans, tgt_len, torch.zeros_like(init)).transpose(0, 1)
        return _entropy_safe(probs.clamp(min=1e-38).log(), _steps(tgt, tgt_len))

    @torch.no_grad()
    def map_latents(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor, tgt_len: torch.Tensor) -> torch.Tensor:
        """The Viterbi alignment, int64 (N, T) (the last position repeated past each length)."""
        self.check(src, src_len, tgt, tgt_len)
        init, trans, emit = self.chain(src, src_len, tgt)
        final = torch.zeros_like(init)
        return chain_backtrack(chain_forward(init, emit, trans, tgt_len, "max"), final, trans, tgt_len, temperature=0)[0]


class SoftAttentionInflector(_Inflector):
    """The deterministic baseline: ``y_t ~ p(y_t | sum_j alpha_tj enc_j, h_t)``, no latent variables.

    Site ``y`` in the plates ``"words"`` (dim -2) and ``"steps"`` (dim -1); train with
    ``Trace_ELBO`` and the empty guide. :meth:`attention` gives the weights ``alpha``.
    """

    latent_sites = ()

    @property
    def latent_size(self) -> int:
        """0: no latent variables."""
        return 0

    def attention(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """The attention weights ``alpha`` (N, T, S)."""
        enc, mask = self.nets.encode(src, src_len)
        return self.nets.attention_logits(self.nets.teacher_forced(tgt), enc, mask).softmax(-1)

    def _log_probs(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor, tgt_len: torch.Tensor) -> torch.Tensor:
        """``log p(y_t = v | y_<t, x)`` (N, T, V) under the soft attention, teacher-forced."""
        self.check(src, src_len, tgt, tgt_len)
        enc, mask = self.nets.encode(src, src_len)
        h = self.nets.teacher_forced(tgt)
        return self.nets.soft_output(h, enc, self.nets.attention_logits(h, enc, mask).softmax(-1))

    def forward(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor, tgt_len: torch.Tensor) -> torch.Tensor:
        """The story (see the class docstring); returns ``y`` (N, T)."""
        log_probs = self._log_probs(src, src_len, tgt, tgt_len)
        with pyro.plate("words", tgt.size(0), dim=-2), pyro.plate("steps", tgt.size(1), dim=-1), poutine.mask(mask=_steps(tgt, tgt_len)):
            return pyro.sample("y", dist.Categorical(logits=log_probs), obs=tgt)

    def log_likelihood(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor, tgt_len: torch.Tensor) -> torch.Tensor:
        """``log p(y | x)`` per word, (N,) nats."""
        per_step = self._log_probs(src, src_len, tgt, tgt_len).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        return (per_step * _steps(tgt, tgt_len)).sum(-1)

    def step(self, state: tuple[torch.Tensor, ...], tokens: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``log p(y_t | y_<t, x)`` (R, V) under the soft attention after reading ``tokens`` (R,), and the next state."""
        enc, mask, h, c, log_pa, emit = state
        out, (h, c) = self.nets.decode(tokens.unsqueeze(-1), (h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()))
        weights = self.nets.attention_logits(out, enc, mask).softmax(-1)
        log_probs = self.nets.soft_output(out, enc, weights)[:, 0]
        return log_probs, (enc, mask, h[0], c[0], weights.log()[:, 0], log_probs.unsqueeze(1).expand_as(emit))

    def _draw(self, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros_like(state[0][:, 0, 0], dtype=torch.long), dist.Categorical(logits=state[5][:, 0]).sample()

    def posterior(self, *data: Any, **kwargs: Any) -> NoReturn:
        """None: attention is deterministic here."""
        raise self.cannot("posterior", "it has no latent variables (soft attention is deterministic)")

    def map_latents(self, *data: Any, **kwargs: Any) -> NoReturn:
        """None: attention is deterministic here."""
        raise self.cannot("map_latents", "it has no latent variables (soft attention is deterministic)")

    @torch.no_grad()
    def sample(self, num_samples: int, src: torch.Tensor, src_len: torch.Tensor, return_latents: bool = False) -> torch.Tensor:
        """Outputs ``y ~ p(y | x)``: (num_samples, N, max_output_length)."""
        if return_latents:
            raise self.cannot("sample with return_latents=True", "it has no latent variables")
        return super().sample(num_samples, src, src_len)


class VariationalAttentionGuide(PyroModule):
    """``q(a_t | x, y)``: bidirectional encoders of the source and of the target, a bilinear score per (t, j).

    Its site ``a`` (plates ``"words"`` dim -2, ``"steps"`` dim -1, masked like the model's) is
    enumerated in parallel, so ``TraceEnum_ELBO`` sums the ELBO's expectation exactly.
    :meth:`logits` (N, T, S) is the normalized ``log q``.
    """

    def __init__(self, source_size: int, target_size: int, embed: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.source = BiEncoder(source_size, embed, hidden)
        self.target = BiEncoder(target_size, embed, hidden, padding_idx=None)
        self.score = torch.nn.Linear(2 * hidden, 2 * hidden, bias=False)

    def logits(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor, tgt_len: torch.Tensor) -> torch.Tensor:
        """``log q(a_t = j | x, y)`` (N, T, S), positions past each source length at :data:`MASKED` before normalizing."""
        mask = torch.arange(src.size(1), device=src.device) < src_len.unsqueeze(-1)
        scores = torch.einsum("nth,nsh->nts", self.target(tgt, tgt_len), self.score(self.source(src, src_len)))
        return scores.masked_fill(~mask.unsqueeze(1), MASKED).log_softmax(-1)

    def forward(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor, tgt_len: torch.Tensor) -> None:
        """The guide's site ``a`` (N, T), enumerated in parallel (see the class docstring)."""
        check_words(src, src_len, tgt, tgt_len)
        logits = self.logits(src, src_len, tgt, tgt_len)
        with pyro.plate("words", tgt.size(0), dim=-2), pyro.plate("steps", tgt.size(1), dim=-1), poutine.mask(mask=_steps(tgt, tgt_len)):
            pyro.sample("a", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
