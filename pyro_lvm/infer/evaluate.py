"""Per-example importance-weighted log-likelihood, per-example ELBO, and bits per dimension.

For each example ``x_n`` of the model's data plate, with ``z^(s) ~ q(z | x_n)``::

    log p(x_n) ~= logsumexp_s [log p(x_n, z^(s)) - log q(z^(s) | x_n)] - log S

This is the estimator papers report (Burda et al., 2015, with S = 5000). It is a
stochastic lower bound in expectation that tightens as S grows, and exact when the
guide is the true posterior. Particles are drawn in chunks, so large S fits in memory.

The particle dimension (the contract for the networks a story and its guide call; see the
"Writing networks" page of the documentation): with ``vectorize=True`` (the default) a chunk
of k draws is one call of the guide inside an extra plate of size k at dim
``-(max_plate_nesting + 1)``, so every latent arrives with a leading sample dimension, ``z`` of
shape (k, N, d) where training gives (N, d), while the data arguments keep their shapes; the
model is replayed against the draws inside a plate of the same kind, in one call, or on the CPU
in blocks of at most ``max(1, 1024 // N)`` draws (``_BLOCK_WEIGHTS``; the same weights, see
there). A decoder (or an encoder reading an earlier latent) must then broadcast over leading
dimensions. With ``vectorize=False`` each draw is one plain call, with exactly the shapes of
training, and the k log weights are stacked: any network works, at the cost of k calls. A
vectorized call that fails where the plain call works raises a ``ValueError`` that says to pass
``vectorize=False`` (no silent fallback: a loop is S times slower, and the failure may be a bug).

Every latent and observed sample site must sit inside the data plate (one latent
set per example); sites outside it have no per-example log-likelihood.

Conditional stories ``model(x, y)`` (x an input, y the observation) need nothing more: every
observed site is scored, so the estimate is ``log p(y_n | x_n)``. For bits per dimension over
the observed part only (a mask, a partial observation), :func:`observed_dims` counts each
example's observed values and :func:`bits_per_dim` takes those counts.

**Enumerated discrete sites.** A model site marked ``infer={"enumerate": "parallel"}`` that the
guide does not sample is summed exactly inside each importance weight:
``log p(x_n, z^(s)) = logsumexp_y log p(x_n, y, z^(s))`` (a label beside a continuous code). A guide
site marked for enumeration is summed too: each value ``y`` gets its own draw
``z_y ~ q(z | x, y)`` and the weight is ``sum_y p(x, y, z_y) / q(z_y | x, y)``, unbiased for
``p(x)`` (the guide's ``q(y | x)`` drops out). The sum is Pyro's: the model and guide run under
:class:`~pyro.poutine.enum_messenger.EnumMessenger` as in :class:`~pyro.infer.TraceEnum_ELBO`, and
the log-factors are contracted by :func:`pyro.ops.contract.contract_to_tensor` down to the
particle and data plates, so each example keeps its own weight.

Before drawing, the evaluators run the guide and the model once and refuse, with a
message naming the sites, what would give a wrong number: a guide that misses a latent
site (the model would draw it from its prior and score it as if proposed) or samples one
the model lacks, a site of another shape, data without examples, and for :func:`importance_log_likelihood`
a point-mass (Delta) guide, whose "weight" ``log p(x, f(x))`` is no log-likelihood. Pyro's
validation (when enabled) then checks the first chunk of draws; the later chunks, the same
program on the same data with new draws, run without it.
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.ops import packed
from pyro.ops.contract import contract_to_tensor
from pyro.ops.rings import LogRing
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample

from pyro_lvm.guides.check import check_trace_sites, guide_and_model_traces

__all__ = ["importance_log_likelihood", "per_example_elbo", "log_importance_weights", "bits_per_dim", "observed_dims"]

#: On the CPU the model is replayed against at most this many weights (draws x examples) per call: a
#: decoder's (draws, N, D) intermediates then stay a few MB, reused by the allocator from block to block,
#: instead of fresh ~60 MB buffers per chunk (MNIST, 20,000 weights), whose first touch (page faults) and
#: cache misses made a chunk 1.4x slower (benchmarks/evaluator.py; for 100 to 1,000 images 1024 and 2048
#: came within a few percent of each other, 512 and 4096 slower). The guide still draws a whole chunk at
#: once, so the draws, and each draw's weight, are those of one call: the networks treat particles
#: independently (tests/test_evaluate_blocks.py).
_BLOCK_WEIGHTS = 1024


def _point_mass_sites(guide_trace) -> list[str]:
    """Latent guide sites whose distribution is a point mass (a Delta, possibly wrapped), unless the
    guide has an auxiliary site (then its Deltas are deterministic transforms of it, as in Pyro's
    autoguides, and carry the change of variables as their ``log_density``)."""
    sites = [s for s in guide_trace.nodes.values() if s["type"] == "sample" and not site_is_subsample(s)]
    if any(s["infer"].get("is_auxiliary") for s in sites):
        return []
    points = []
    for site in sites:
        fn = site["fn"]
        while not isinstance(fn, dist.Delta) and getattr(fn, "base_dist", None) is not None:
            fn = fn.base_dist  # Independent, MaskedDistribution, ExpandedDistribution, TransformedDistribution
        if isinstance(fn, dist.Delta) and not site["is_observed"]:
            points.append(site["name"])
    return points


def _checked_plate_nesting(model, guide, args, kwargs, plate: str, evaluator: str, proper_density: bool) -> int:
    """Check that ``guide`` is a valid proposal for ``model`` on these arguments; return the plate nesting.

    :param evaluator: the caller's name, for the messages.
    :param proper_density: refuse point-mass (Delta) guide sites, whose weight is not a density ratio.
    :raises ValueError: a guide that does not cover the model's latent sites (see
        :func:`~pyro_lvm.guides.check_guide_sites`), point masses where a density is needed, or arguments without examples.
    """
    guide_trace, model_trace = guide_and_model_traces(model, guide, *args, **kwargs)
    check_trace_sites(guide_trace, model_trace)
    points = _point_mass_sites(guide_trace) if proper_density else []
    if points:
        raise ValueError(
            f"the guide is a point mass (Delta) at {points}: log p(x, f(x)) is not a log-likelihood and a point mass "
            f"is no importance proposal. Use a proposal with a density around the point: for an AmortizedDelta, "
            f"guide.proposal(scale), a Normal(f(x), scale^2 I) (examples/vae.py picks the scale with the best ELBO); "
            f"per_example_elbo with the point guide gives its hard ELBO"
        )
    dims = [
        -f.dim
        for tr in (guide_trace, model_trace)
        for site in tr.nodes.values()
        if site["type"] == "sample"
        for f in site["cond_indep_stack"]
        if f.vectorized
    ]
    return max(dims, default=0)


def _data_frame(trace: Trace, plate: str):
    """The data plate's frame, checking that every sample site of ``trace`` sits inside it.

    :raises ValueError: naming a sample site outside the plate ``plate``.
    """
    frame = None
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        frame = next((f for f in site["cond_indep_stack"] if f.name == plate), None)
        if frame is None:
            raise ValueError(
                f"sample site {name!r} is outside the plate {plate!r}; a per-example log-likelihood "
                f"needs every sample site inside it (pass plate=... to name the data plate)"
            )
    return frame


def _guide_trace(guide, args, kwargs, nesting: int) -> Trace:
    """Trace ``guide`` under Pyro's :class:`~pyro.poutine.enum_messenger.EnumMessenger` as in
    :class:`~pyro.infer.TraceEnum_ELBO`: sites marked for parallel enumeration get every value along
    a dim left of ``-(nesting + 1)`` (the particle plate's dim), others are sampled."""
    return poutine.trace(EnumMessenger(first_available_dim=-(nesting + 2))(guide)).get_trace(*args, **kwargs)


def _model_trace(model, guide_trace: Trace, args, kwargs) -> Trace:
    """Trace ``model`` replayed against ``guide_trace``, its own enumerated sites enumerated (keeping the guide's dims)."""
    return poutine.trace(EnumMessenger()(poutine.replay(model, trace=guide_trace))).get_trace(*args, **kwargs)


def _traces(model, guide, args, kwargs, nesting: int) -> tuple[Trace, Trace]:
    """Trace ``guide`` once, then ``model`` replayed against it: ``(guide_trace, model_trace)``."""
    guide_trace = _guide_trace(guide, args, kwargs, nesting)
    return guide_trace, _model_trace(model, guide_trace, args, kwargs)


def _weights_of(traces: tuple[Trace, Trace], plate: str, nesting: int, num_particles: int) -> torch.Tensor:
    """``log p - log q`` per particle and example, (num_particles, N), from ``(guide_trace, model_trace)``.

    Every site's log-density (unscaled: a subsampling scale does not apply per example; masked) is a
    log-factor, the guide's with a minus sign, except the guide's enumerated sites (their values are
    summed, not proposed). :func:`pyro.ops.contract.contract_to_tensor` sums the enumeration dims
    (logsumexp) and the plates nested in the data plate (a sum of logs) and keeps the particle
    and data plates.
    """
    guide_trace, model_trace = traces
    frame = _data_frame(model_trace, plate)
    _data_frame(guide_trace, plate)
    for trace in (guide_trace, model_trace):
        trace.compute_log_prob()
    guide_trace.pack_tensors()
    model_trace.pack_tensors(guide_trace.plate_to_symbol)
    factors: dict[frozenset, list[torch.Tensor]] = {}
    sum_dims = set()
    for trace, sign in ((model_trace, 1), (guide_trace, -1)):
        for site in trace.nodes.values():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if site["infer"].get("_enumerate_dim") is not None:
                sum_dims.add(site["infer"]["_enumerate_symbol"])
                if trace is guide_trace:
                    continue
            log_p = packed.scale_and_mask(site["packed"]["unscaled_log_prob"], mask=site["packed"]["mask"])
            ordinal = frozenset(trace.plate_to_symbol[f.name] for f in site["cond_indep_stack"] if f.vectorized)
            factors.setdefault(ordinal, []).append(log_p if sign > 0 else packed.neg(log_p))
    if frame is None:  # no sample site at all
        return torch.zeros(num_particles, 1)
    sizes = {plate: frame.size, "_particles": num_particles}
    target = {model_trace.plate_to_symbol[p]: n for p, n in sizes.items() if p in model_trace.plate_to_symbol}
    ring = LogRing(dim_to_size=target)  # the sizes of the kept plates, for terms that lack one
    log_w = contract_to_tensor(OrderedDict(factors), sum_dims, target_ordinal=frozenset(target), ring=ring)
    log_w = packed.unpack(log_w, {**guide_trace.symbol_to_dim, **model_trace.symbol_to_dim})
    log_w = log_w.reshape((1,) * (nesting + 1 - log_w.dim()) + log_w.shape)
    data_dim = nesting + 1 + frame.dim
    log_w = log_w.reshape(log_w.shape[0], log_w.shape[data_dim])  # the other dims have size 1
    return log_w.expand(num_particles, frame.size)


def _particles(fn: Callable, num_samples: int, nesting: int) -> Callable:
    """``fn`` inside the particle plate: ``num_samples`` draws at dim ``-(nesting + 1)``."""

    def wrapped(*a, **k):
        with pyro.plate("_particles", num_samples, dim=-(nesting + 1)):
            return fn(*a, **k)

    return wrapped


@contextmanager
def _particle_errors(num_samples: int, nesting: int):
    """Turn a failure of the vectorized call into a ValueError that says to pass ``vectorize=False``."""
    try:
        yield
    except (ValueError, RuntimeError, IndexError) as err:
        raise ValueError(
            f"the model or guide fails when its latents carry a leading particle dimension ({num_samples} draws at "
            f"dim {-(nesting + 1)}, e.g. z of shape ({num_samples}, N, ...) where training gives (N, ...)), though it "
            f"runs with the shapes of training: a network that reshapes with a fixed batch size (x.view(-1, C, H, W)) "
            f"or concatenates a latent with a data argument does not broadcast over sample dimensions. Pass "
            f"vectorize=False to draw one particle per training-shaped call, or make the network broadcast (see the "
            f"'Writing networks' page). The error was: {type(err).__name__}: {err}"
        ) from err


def _block_size(guide_trace: Trace, plate: str, num_samples: int) -> int:
    """Draws per model call: on the CPU at most ``_BLOCK_WEIGHTS // N`` (at least one), elsewhere all ``num_samples``."""
    frame = _data_frame(guide_trace, plate)
    values = [site["value"] for site in guide_trace.nodes.values() if site["type"] == "sample" and not site_is_subsample(site)]
    if frame is None or not all(torch.is_tensor(v) and v.device.type == "cpu" for v in values):
        return num_samples
    return max(1, _BLOCK_WEIGHTS // frame.size)


def _narrow(t, right: int, start: int, length: int, num_samples: int):
    """``t`` narrowed to ``[start, start + length)`` along dim ``-right`` where that dim holds the ``num_samples`` draws;
    ``t`` itself where it does not (size 1 there: broadcast, an enumerated value; or fewer dims; or not a tensor)."""
    if torch.is_tensor(t) and t.dim() >= right and t.shape[-right] == num_samples:
        return t.narrow(-right, start, length)
    return t


def _particle_slice(trace: Trace, start: int, length: int, num_samples: int, nesting: int) -> Trace:
    """Draws ``[start, start + length)`` of a guide trace of ``num_samples`` draws (its log densities computed):
    every sample site's value, log densities and mask narrowed along the particle dim, the particle plate's own
    site left out, so that a model replayed against it opens its particle plate with ``length`` draws."""
    sliced = Trace(graph_type=trace.graph_type)
    for name, site in trace.nodes.items():
        if name == "_particles":
            continue
        if site["type"] == "sample" and not site_is_subsample(site):
            right = nesting + 1  # the particle dim, counted from the right of the batch shape
            site = {key: value for key, value in site.items() if key != "log_prob_sum"} | {
                "infer": dict(site["infer"]),
                "value": _narrow(site["value"], right + len(site["fn"].event_shape), start, length, num_samples),
                **{key: _narrow(site[key], right, start, length, num_samples) for key in ("log_prob", "unscaled_log_prob", "mask")},
            }
        sliced.add_node(name, **site)
    return sliced


def _weighted_traces(model, guide, args, kwargs, num_samples: int, plate: str, nesting: int,
                     vectorize: bool) -> list[tuple[Trace, torch.Tensor]]:
    """The pairs of :func:`_iter_weighted_traces`, as a list."""
    return list(_iter_weighted_traces(model, guide, args, kwargs, num_samples, plate, nesting, vectorize))


def _iter_weighted_traces(model, guide, args, kwargs, num_samples: int, plate: str, nesting: int,
                          vectorize: bool) -> Iterator[tuple[Trace, torch.Tensor]]:
    """``(model_trace, log_w)`` pairs holding ``num_samples`` draws in all, for a model and guide already
    checked (plate nesting ``nesting``); ``log_w`` is (k, N) for the k draws of its trace.

    ``vectorize=True``: one call of the guide inside a particle plate of size ``num_samples`` at dim
    ``-(nesting + 1)``, then the model replayed against its draws in blocks (:func:`_block_size`; one
    pair per block); ``vectorize=False``: ``num_samples`` plain (training-shaped) calls.

    :raises ValueError: when the vectorized call fails (the plain call was checked to work), saying
        to pass ``vectorize=False``.
    """
    if not isinstance(vectorize, bool):
        raise ValueError(f"vectorize must be True or False, got {vectorize!r}")
    if not vectorize:
        for _ in range(num_samples):
            guide_trace, model_trace = _traces(model, guide, args, kwargs, nesting)
            yield model_trace, _weights_of((guide_trace, model_trace), plate, nesting, 1)
        return

    with _particle_errors(num_samples, nesting):
        guide_trace = _guide_trace(_particles(guide, num_samples, nesting), args, kwargs, nesting)
    guide_trace.compute_log_prob()
    block = _block_size(guide_trace, plate, num_samples)
    for start in range(0, num_samples, block):
        k = min(block, num_samples - start)
        proposal = guide_trace if k == num_samples else _particle_slice(guide_trace, start, k, num_samples, nesting)
        with _particle_errors(k, nesting):
            model_trace = _model_trace(_particles(model, k, nesting), proposal, args, kwargs)
        yield model_trace, _weights_of((proposal, model_trace), plate, nesting, k)


def _log_weights(model, guide, args, kwargs, num_samples: int, plate: str, nesting: int, vectorize: bool) -> torch.Tensor:
    """The (num_samples, N) log weights of :func:`_iter_weighted_traces`, each trace let go once its weights are
    read: a model trace holds its block's network outputs (a decoder's (k, N, D) logits), and freed blocks
    let the next ones reuse their memory instead of touching fresh pages."""
    return torch.cat([log_w for _, log_w in _iter_weighted_traces(model, guide, args, kwargs, num_samples, plate, nesting, vectorize)])


def log_importance_weights(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 1,
    plate: str = "data",
    vectorize: bool = True,
    **kwargs: Any,
) -> torch.Tensor:
    """``log p(x_n, z^(s)) - log q(z^(s) | x_n)`` for ``num_samples`` guide draws.

    The guide must sample every latent site of the model and no other (see
    :func:`~pyro_lvm.guides.check_guide_sites`); a point-mass guide is allowed here (its weight
    is the hard ELBO's ``log p(x_n, f(x_n))``).

    :param vectorize: draw all particles in one call, latents with a leading sample dimension
        (True), or one training-shaped call per particle (False); see :func:`importance_log_likelihood`.
    :returns: tensor of shape (num_samples, N), N the size of the plate ``plate``.
    :raises ValueError: see :func:`importance_log_likelihood`, except for point masses.
    """
    nesting = _checked_plate_nesting(model, guide, args, kwargs, plate, "log_importance_weights", proper_density=False)
    return _log_weights(model, guide, args, kwargs, num_samples, plate, nesting, vectorize)


def _chunked_weights(model, guide, args, kwargs, num_samples, chunk_size, plate, vectorize: bool, evaluator: str,
                     proper_density: bool):
    """Check the guide once, then yield the log weights of ``num_samples`` draws in chunks of ``chunk_size``
    (Pyro's validation, when enabled, on the first chunk only; a NaN weight in any chunk is an error)."""
    if num_samples < 1 or chunk_size < 1:
        raise ValueError(f"num_samples and chunk_size must be >= 1, got {num_samples} and {chunk_size}")
    nesting = _checked_plate_nesting(model, guide, args, kwargs, plate, evaluator, proper_density)
    with torch.no_grad(), poutine.block():
        for start in range(0, num_samples, chunk_size):
            k = min(chunk_size, num_samples - start)
            with nullcontext() if start == 0 else pyro.validation_enabled(False):
                log_w = _log_weights(model, guide, args, kwargs, k, plate, nesting, vectorize)
            nan = torch.isnan(log_w).any(0)
            if nan.any():  # what validation would have caught on the later chunks
                examples = nan.nonzero().flatten().tolist()
                raise ValueError(f"{evaluator}: the log weights of example(s) {examples[:10]}{' ...' if len(examples) > 10 else ''} "
                                 f"are NaN in draws {start}..{start + k - 1}: the model or guide computed a NaN (a NaN "
                                 f"parameter, input or network output); expected finite or -inf log weights")
            yield log_w


def importance_log_likelihood(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 1000,
    chunk_size: int = 100,
    plate: str = "data",
    vectorize: bool = True,
    **kwargs: Any,
) -> torch.Tensor:
    """Importance-sampled ``log p(x_n)`` for every example ``n`` of the data plate.

    The guide may cover several latent sites (a hierarchy ``q(z2 | x) q(z1 | z2, x)``, say) and call
    any encoder on any of its arguments; every site is scored in the weight.

    **The particle dimension.** With ``vectorize=True`` the guide runs once per chunk of k draws,
    inside a plate of size k at dim ``-(max_plate_nesting + 1)``, and the model is replayed against
    them in one call (on the CPU in blocks of at most ``max(1, 1024 // N)`` draws, the same weights):
    each latent arrives with a leading sample dimension, ``z`` of shape (k, N, d) where training
    gives (N, d), while the arguments (the data) keep their shapes. So a decoder, or an encoder
    that reads an earlier latent, must broadcast over leading dimensions (``nn.Linear`` does;
    ``z.view(-1, 64, 7, 7)`` or ``torch.cat([z, x], -1)`` does not). With ``vectorize=False`` each draw is one plain call with
    exactly the shapes of training, for networks that cannot broadcast; the same numbers, k times
    the calls.

    :param model: the generative story, called as ``model(*args, **kwargs)``.
    :param guide: the proposal ``q(z | x)`` (same signature): it must sample every latent site of the
        model, and no other, at the model's shapes, with a density (not a point mass).
    :param num_samples: importance samples per example (S).
    :param chunk_size: samples reduced at once; memory grows with ``chunk_size * N``. With
        ``vectorize=True`` also the size of the leading sample dimension the guide sees (the
        model's at most that).
    :param plate: name of the model's data plate.
    :param vectorize: one call per chunk with a leading sample dimension (True, fast), or one
        training-shaped call per draw (False, for networks that do not broadcast).
    :returns: tensor of shape (N,), nats.
    :raises ValueError: when the guide misses a latent site, samples one the model lacks or observes,
        or has another shape there (naming the sites; see :func:`~pyro_lvm.guides.check_guide_sites`);
        when a guide site is a point mass (Delta: use a proposal with a density around the
        point, e.g. :meth:`~pyro_lvm.guides.AmortizedDelta.proposal`); when the arguments have no
        examples (an empty result would turn into a NaN mean downstream); when ``vectorize=True`` and the
        model or guide fails with the leading sample dimension though it runs without it (the
        message says to pass ``vectorize=False``).
    """
    running = None
    for log_w in _chunked_weights(model, guide, args, kwargs, num_samples, chunk_size, plate,
                                  vectorize, "importance_log_likelihood", proper_density=True):
        chunk = torch.logsumexp(log_w, dim=0)
        running = chunk if running is None else torch.logaddexp(running, chunk)
    return running - math.log(num_samples)


def per_example_elbo(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 1,
    chunk_size: int = 100,
    plate: str = "data",
    vectorize: bool = True,
    **kwargs: Any,
) -> torch.Tensor:
    """Monte Carlo ELBO ``E_q[log p(x_n, z) - log q(z | x_n)]`` per example, shape (N,), nats.

    With a point-mass (Delta) guide this is the hard ELBO ``log p(x_n, f(x_n))``, not a bound.
    Several latent sites and user encoders work as in :func:`importance_log_likelihood`, and so
    does the particle dimension: with ``vectorize=True`` (the default) latents arrive with a
    leading sample dimension of size ``min(num_samples, chunk_size)`` (at most that in the model)
    and the networks must broadcast over it; ``vectorize=False`` makes one training-shaped call per draw.

    :param num_samples: draws per example.
    :param chunk_size: draws per vectorized call.
    :param plate: name of the model's data plate.
    :param vectorize: as in :func:`importance_log_likelihood`.

    :raises ValueError: as :func:`importance_log_likelihood`, except that point masses are allowed.
    """
    total = None
    for log_w in _chunked_weights(model, guide, args, kwargs, num_samples, chunk_size, plate,
                                  vectorize, "per_example_elbo", proper_density=False):
        s = log_w.sum(0)
        total = s if total is None else total + s
    return total / num_samples


def _observed_mask(site: dict) -> torch.Tensor:
    """Which values of an observed site count, a bool tensor of the value's shape: the site's mask
    (``poutine.mask``) and any :meth:`~pyro.distributions.TorchDistributionMixin.mask` inside it, each
    broadcast over the event dims of its level (through ``Independent`` and ``expand``)."""
    fn = site["fn"]
    keep = torch.ones(fn.batch_shape + fn.event_shape, dtype=torch.bool, device=site["value"].device)
    masks = [(site["mask"], fn)] if site["mask"] is not None else []
    while fn is not None:
        if isinstance(fn, dist.MaskedDistribution):
            masks.append((fn._mask, fn))
        fn = getattr(fn, "base_dist", None)
    for mask, level in masks:
        mask = torch.as_tensor(mask, device=keep.device).expand(level.batch_shape)
        keep = keep & mask.reshape(mask.shape + (1,) * len(level.event_shape))
    return keep


def observed_dims(model: Callable, *args: Any, plate: str = "data", **kwargs: Any) -> torch.Tensor:
    """The number of observed values of each example, (N,): the ``num_dims`` of :func:`bits_per_dim`
    for a story that observes part of each example.

    Runs ``model(*args, **kwargs)`` once (latents drawn from the prior; nothing recorded, random
    streams untouched) and counts, per example of the data plate, the values of its observed sites
    that are not masked out (``poutine.mask`` or ``Distribution.mask``): a story that observes the
    pixels where ``mask`` is True counts ``mask.sum(-1)``.

    :param plate: name of the model's data plate.
    :raises ValueError: for an observed site outside the plate, or a model without observed sites.
    """
    with torch.random.fork_rng(), poutine.block(), torch.no_grad():
        trace = poutine.trace(model).get_trace(*args, **kwargs)
    counts = None
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or not site["is_observed"] or site_is_subsample(site):
            continue
        frame = next((f for f in site["cond_indep_stack"] if f.name == plate), None)
        if frame is None:
            raise ValueError(f"observed site {name!r} is outside the plate {plate!r}; pass plate=... naming the data plate")
        keep = _observed_mask(site)
        data_dim = keep.dim() - len(site["fn"].event_shape) + frame.dim
        count = keep.movedim(data_dim, 0).reshape(keep.shape[data_dim], -1).sum(-1)
        counts = count if counts is None else counts + count
    if counts is None:
        raise ValueError("the model observes no site (no pyro.sample(..., obs=...)); nothing to count")
    return counts


def bits_per_dim(log_likelihood: torch.Tensor | float, num_dims: int | torch.Tensor) -> torch.Tensor | float:
    """Convert a log-likelihood in nats (per example) to bits per dimension: ``-ll / (D log 2)``.

    ``-inf`` (an example the model deems impossible) is a legitimate log-likelihood and gives
    ``+inf`` bits per dimension; NaN is not a value and is refused.

    :param log_likelihood: nats, a number or a tensor of any shape.
    :param num_dims: D, values per example: a positive int (not a bool), or an integer tensor of
        per-example counts that broadcasts with ``log_likelihood`` (the observed values of a
        partly observed story: :func:`observed_dims`).
    :raises ValueError: for a ``num_dims`` that is not a positive int (or a tensor of them), or a NaN log-likelihood.
    """
    if torch.is_tensor(num_dims):
        if num_dims.is_floating_point() or num_dims.dtype == torch.bool or num_dims.numel() == 0 or (num_dims < 1).any():
            raise ValueError(f"num_dims must be a positive int or a tensor of positive integer counts (values per example), "
                             f"got a {num_dims.dtype} tensor of shape {tuple(num_dims.shape)} with minimum "
                             f"{num_dims.min().item() if num_dims.numel() else None}; an example with no observed value "
                             f"has no bits per dimension")
    elif not isinstance(num_dims, numbers.Integral) or isinstance(num_dims, bool) or num_dims < 1:
        raise ValueError(f"num_dims must be a positive int (values per example), got {num_dims!r}")
    nan = torch.isnan(torch.as_tensor(log_likelihood))
    if nan.any():
        where = "" if nan.dim() == 0 else f" at {int(nan.sum())} of {nan.numel()} entries"
        raise ValueError(f"log_likelihood is NaN{where}; a NaN has no bits per dimension (check the evaluation)")
    return -log_likelihood / (num_dims * math.log(2.0))
