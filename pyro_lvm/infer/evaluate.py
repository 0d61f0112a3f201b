"""Per-example importance-weighted log-likelihood, per-example ELBO, and bits per dimension.

For each example ``x_n`` of the model's data plate, with ``z^(s) ~ q(z | x_n)``::

    log p(x_n) ~= logsumexp_s [log p(x_n, z^(s)) - log q(z^(s) | x_n)] - log S

This is the estimator papers report (Burda et al., 2015, with S = 5000). It is a
stochastic lower bound in expectation that tightens as S grows, and exact when the
guide is the true posterior. Particles are drawn in chunks, so large S fits in memory.

The particle dimension (the contract for the networks a story and its guide call; see the
"Writing networks" page of the documentation): with ``vectorize=True`` (the default) a chunk
of k draws is one call of the guide and one of the model inside an extra plate of size k at
dim ``-(max_plate_nesting + 1)``, so every latent arrives with a leading sample dimension,
``z`` of shape (k, N, d) where training gives (N, d), while the data arguments keep their
shapes. A decoder (or an encoder reading an earlier latent) must then broadcast over leading
dimensions. With ``vectorize=False`` each draw is one plain call, with exactly the shapes of
training, and the k log weights are stacked: any network works, at the cost of k calls. A
vectorized call that fails where the plain call works raises a ``ValueError`` that says to pass
``vectorize=False`` (no silent fallback: a loop is S times slower, and the failure may be a bug).

Every latent and observed sample site must sit inside the data plate (one latent
set per example); sites outside it have no per-example log-likelihood.

Before drawing, the evaluators run the guide and the model once and refuse, with a
message naming the sites, what would give a wrong number: a guide that misses a latent
site (the model would draw it from its prior and score it as if proposed) or samples one
the model lacks, a site of another shape, a model site marked for enumeration (not yet
summed inside the weights), data without examples, and for :func:`importance_log_likelihood`
a point-mass (Delta) guide, whose "weight" ``log p(x, f(x))`` is no log-likelihood.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample

from pyro_lvm.guides.check import check_trace_sites, guide_and_model_traces

__all__ = ["importance_log_likelihood", "per_example_elbo", "log_importance_weights", "bits_per_dim"]


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
        :func:`~pyro_lvm.guides.check_guide_sites`), enumerated model sites (not yet summed here),
        point masses where a density is needed, or arguments without examples.
    """
    guide_trace, model_trace = guide_and_model_traces(model, guide, *args, **kwargs)
    check_trace_sites(guide_trace, model_trace)
    enumerated = sorted(
        name for name, site in model_trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and name not in guide_trace.nodes
        and site["infer"].get("enumerate")
    )
    if enumerated:
        raise ValueError(
            f"the model's sites {enumerated} are marked for enumeration and the guide does not sample them; "
            f"{evaluator} does not yet sum enumerated sites inside the importance weights (it would score one "
            f"prior draw instead of their sum). Give the guide a distribution for them, or use the model's "
            f"exact marginal (e.g. TraceEnum_ELBO) where every latent is enumerated"
        )
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


def _per_example_log_prob(trace, plate: str, nesting: int, num_particles: int) -> torch.Tensor:
    """Sum the log-densities of a trace's sample sites into a (num_particles, N) tensor."""
    total = torch.zeros(())
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        frame = next((f for f in site["cond_indep_stack"] if f.name == plate), None)
        if frame is None:
            raise ValueError(
                f"sample site {name!r} is outside the plate {plate!r}; a per-example log-likelihood "
                f"needs every sample site inside it (pass plate=... to name the data plate)"
            )
        log_p = site["fn"].log_prob(site["value"])  # unscaled: subsampling scale does not apply per example
        if site["mask"] is not None:
            log_p = torch.where(torch.as_tensor(site["mask"], device=log_p.device), log_p, 0.0)
        log_p = log_p.reshape((1,) * (nesting + 1 - log_p.dim()) + log_p.shape)
        data_dim = nesting + 1 + frame.dim
        keep = (0, data_dim)
        other = tuple(d for d in range(log_p.dim()) if d not in keep)
        if other:
            log_p = log_p.sum(other, keepdim=True)
        log_p = log_p.reshape(log_p.shape[0], log_p.shape[data_dim])
        total = total + log_p
    return total.expand(num_particles, -1) if total.dim() == 2 else total


def _traces(model, guide, args, kwargs) -> tuple[Trace, Trace]:
    """Trace ``guide`` once, then ``model`` replayed against it: ``(guide_trace, model_trace)``."""
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    return guide_trace, poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)


def _weights_of(traces: tuple[Trace, Trace], plate: str, nesting: int, num_particles: int) -> torch.Tensor:
    """``log p - log q`` per particle and example, (num_particles, N), from ``(guide_trace, model_trace)``."""
    guide_trace, model_trace = traces
    return _per_example_log_prob(model_trace, plate, nesting, num_particles) - _per_example_log_prob(
        guide_trace, plate, nesting, num_particles
    )


def _log_weights(model, guide, args, kwargs, num_samples: int, plate: str, nesting: int, vectorize: bool) -> torch.Tensor:
    """The (num_samples, N) log weights, for a model and guide already checked (plate nesting ``nesting``).

    ``vectorize=True``: one call of each inside a particle plate of size ``num_samples`` at dim
    ``-(nesting + 1)``; ``vectorize=False``: ``num_samples`` plain (training-shaped) calls, stacked.

    :raises ValueError: when the vectorized call fails (the plain call was checked to work), saying
        to pass ``vectorize=False``.
    """
    if not isinstance(vectorize, bool):
        raise ValueError(f"vectorize must be True or False, got {vectorize!r}")
    if not vectorize:
        return torch.cat([_weights_of(_traces(model, guide, args, kwargs), plate, nesting, 1) for _ in range(num_samples)])

    def particles(fn):
        def wrapped(*a, **k):
            with pyro.plate("_particles", num_samples, dim=-(nesting + 1)):
                return fn(*a, **k)

        return wrapped

    try:
        traces = _traces(particles(model), particles(guide), args, kwargs)
    except (ValueError, RuntimeError, IndexError) as err:
        raise ValueError(
            f"the model or guide fails when its latents carry a leading particle dimension ({num_samples} draws at "
            f"dim {-(nesting + 1)}, e.g. z of shape ({num_samples}, N, ...) where training gives (N, ...)), though it "
            f"runs with the shapes of training: a network that reshapes with a fixed batch size (x.view(-1, C, H, W)) "
            f"or concatenates a latent with a data argument does not broadcast over sample dimensions. Pass "
            f"vectorize=False to draw one particle per training-shaped call, or make the network broadcast (see the "
            f"'Writing networks' page). The error was: {type(err).__name__}: {err}"
        ) from err
    return _weights_of(traces, plate, nesting, num_samples)


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
    """Check the guide once, then yield the log weights of ``num_samples`` draws in chunks of ``chunk_size``."""
    if num_samples < 1 or chunk_size < 1:
        raise ValueError(f"num_samples and chunk_size must be >= 1, got {num_samples} and {chunk_size}")
    nesting = _checked_plate_nesting(model, guide, args, kwargs, plate, evaluator, proper_density)
    with torch.no_grad(), poutine.block():
        for start in range(0, num_samples, chunk_size):
            k = min(chunk_size, num_samples - start)
            yield _log_weights(model, guide, args, kwargs, k, plate, nesting, vectorize)


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

    **The particle dimension.** With ``vectorize=True`` the guide and the model run once per chunk
    of k draws, inside a plate of size k at dim ``-(max_plate_nesting + 1)``: each latent arrives
    with a leading sample dimension, ``z`` of shape (k, N, d) where training gives (N, d), while
    the arguments (the data) keep their shapes. So a decoder, or an encoder that reads an earlier
    latent, must broadcast over leading dimensions (``nn.Linear`` does; ``z.view(-1, 64, 7, 7)`` or
    ``torch.cat([z, x], -1)`` does not). With ``vectorize=False`` each draw is one plain call with
    exactly the shapes of training, for networks that cannot broadcast; the same numbers, k times
    the calls.

    :param model: the generative story, called as ``model(*args, **kwargs)``.
    :param guide: the proposal ``q(z | x)`` (same signature): it must sample every latent site of the
        model, and no other, at the model's shapes, with a density (not a point mass).
    :param num_samples: importance samples per example (S).
    :param chunk_size: samples reduced at once; memory grows with ``chunk_size * N``. With
        ``vectorize=True`` also the size of the leading sample dimension the networks see.
    :param plate: name of the model's data plate.
    :param vectorize: one call per chunk with a leading sample dimension (True, fast), or one
        training-shaped call per draw (False, for networks that do not broadcast).
    :returns: tensor of shape (N,), nats.
    :raises ValueError: when the guide misses a latent site, samples one the model lacks or observes,
        or has another shape there (naming the sites; see :func:`~pyro_lvm.guides.check_guide_sites`);
        when the model leaves a site marked for enumeration to be summed (not yet done inside the
        weights); when a guide site is a point mass (Delta: use a proposal with a density around the
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
    leading sample dimension of size ``min(num_samples, chunk_size)`` and the networks must
    broadcast over it; ``vectorize=False`` makes one training-shaped call per draw.

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


def bits_per_dim(log_likelihood: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """Convert a log-likelihood in nats (per example) to bits per dimension: ``-ll / (D log 2)``.

    ``-inf`` (an example the model deems impossible) is a legitimate log-likelihood and gives
    ``+inf`` bits per dimension; NaN is not a value and is refused.

    :param log_likelihood: nats, a number or a tensor of any shape.
    :param num_dims: D, values per example: a positive int (not a bool).
    :raises ValueError: for a ``num_dims`` that is not a positive int, or a NaN log-likelihood.
    """
    if not isinstance(num_dims, numbers.Integral) or isinstance(num_dims, bool) or num_dims < 1:
        raise ValueError(f"num_dims must be a positive int (values per example), got {num_dims!r}")
    nan = torch.isnan(torch.as_tensor(log_likelihood))
    if nan.any():
        where = "" if nan.dim() == 0 else f" at {int(nan.sum())} of {nan.numel()} entries"
        raise ValueError(f"log_likelihood is NaN{where}; a NaN has no bits per dimension (check the evaluation)")
    return -log_likelihood / (num_dims * math.log(2.0))
