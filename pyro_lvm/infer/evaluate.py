"""Per-example importance-weighted log-likelihood, per-example ELBO, and bits per dimension.

For each example ``x_n`` of the model's data plate, with ``z^(s) ~ q(z | x_n)``::

    log p(x_n) ~= logsumexp_s [log p(x_n, z^(s)) - log q(z^(s) | x_n)] - log S

This is the estimator papers report (Burda et al., 2015, with S = 5000). It is a
stochastic lower bound in expectation that tightens as S grows, and exact when the
guide is the true posterior. Particles are drawn in vectorized chunks, so large S
fits in memory.

Every latent and observed sample site must sit inside the data plate (one latent
set per example); sites outside it have no per-example log-likelihood.
"""

from __future__ import annotations

import math
from typing import Callable

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

__all__ = ["importance_log_likelihood", "per_example_elbo", "log_importance_weights", "bits_per_dim"]


def _max_plate_nesting(model, guide, args, kwargs) -> int:
    with poutine.block(), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
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


def log_importance_weights(
    model: Callable, guide: Callable, *args, num_samples: int = 1, plate: str = "data", **kwargs
) -> torch.Tensor:
    """``log p(x_n, z^(s)) - log q(z^(s) | x_n)`` for ``num_samples`` guide draws, vectorized.

    :returns: tensor of shape (num_samples, N), N the size of the plate ``plate``.
    """
    nesting = _max_plate_nesting(model, guide, args, kwargs)

    def vectorize(fn):
        def wrapped(*a, **k):
            with pyro.plate("_particles", num_samples, dim=-(nesting + 1)):
                return fn(*a, **k)

        return wrapped

    guide_trace = poutine.trace(vectorize(guide)).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(vectorize(model), trace=guide_trace)).get_trace(*args, **kwargs)
    log_p = _per_example_log_prob(model_trace, plate, nesting, num_samples)
    log_q = _per_example_log_prob(guide_trace, plate, nesting, num_samples)
    return log_p - log_q


def _chunked_weights(model, guide, args, kwargs, num_samples, chunk_size, plate):
    if num_samples < 1 or chunk_size < 1:
        raise ValueError(f"num_samples and chunk_size must be >= 1, got {num_samples} and {chunk_size}")
    with torch.no_grad(), poutine.block():
        for start in range(0, num_samples, chunk_size):
            k = min(chunk_size, num_samples - start)
            yield log_importance_weights(model, guide, *args, num_samples=k, plate=plate, **kwargs)


def importance_log_likelihood(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 1000,
    chunk_size: int = 100,
    plate: str = "data",
    **kwargs,
) -> torch.Tensor:
    """Importance-sampled ``log p(x_n)`` for every example ``n`` of the data plate.

    :param model: the generative story, called as ``model(*args, **kwargs)``.
    :param guide: the proposal ``q(z | x)`` (same signature); all latent sites must be in it.
    :param num_samples: importance samples per example (S).
    :param chunk_size: samples drawn at once; memory grows with ``chunk_size * N``.
    :param plate: name of the model's data plate.
    :returns: tensor of shape (N,), nats.
    """
    running = None
    for log_w in _chunked_weights(model, guide, args, kwargs, num_samples, chunk_size, plate):
        chunk = torch.logsumexp(log_w, dim=0)
        running = chunk if running is None else torch.logaddexp(running, chunk)
    return running - math.log(num_samples)


def per_example_elbo(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 1,
    chunk_size: int = 100,
    plate: str = "data",
    **kwargs,
) -> torch.Tensor:
    """Monte Carlo ELBO ``E_q[log p(x_n, z) - log q(z | x_n)]`` per example, shape (N,), nats."""
    total = None
    for log_w in _chunked_weights(model, guide, args, kwargs, num_samples, chunk_size, plate):
        s = log_w.sum(0)
        total = s if total is None else total + s
    return total / num_samples


def bits_per_dim(log_likelihood: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """Convert a log-likelihood in nats (per example) to bits per dimension: ``-ll / (D log 2)``."""
    if num_dims < 1:
        raise ValueError(f"num_dims must be >= 1, got {num_dims}")
    return -log_likelihood / (num_dims * math.log(2.0))
