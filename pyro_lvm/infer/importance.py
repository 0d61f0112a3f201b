"""Self-normalized importance sampling: the guide's draws with their log weights, and what they give.

:func:`importance_draws` returns, for ``S`` draws of the guide, the value of every site of the
model replayed against them (the guide's latents, the model's deterministic and observed sites)
and the log weights ``log p(x_n, z^(s)) - log q(z^(s) | x_n)`` of
:func:`~pyro_lvm.infer.log_importance_weights`. With them:

* :func:`posterior_expectation` gives ``E[f | x_n] ~= sum_s w_ns f_ns`` with the self-normalized
  weights ``w_ns = softmax_s(log w_ns)``: e.g. of a ``pyro.deterministic`` site holding the
  decoder's pixel probabilities, the importance-weighted imputation of missing pixels
  (Mattei & Frellsen, 2019, "MIWAE");
* :func:`importance_resample` draws values with probabilities ``w_ns``: approximate posterior
  (or posterior-predictive) samples of any site (sampling importance resampling).

The estimate is consistent as ``S`` grows, and exact for one draw when the guide is the posterior.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from pyro_lvm.infer.evaluate import _checked_plate_nesting, _weighted_traces

__all__ = ["importance_draws", "importance_resample", "posterior_expectation"]


def _site_draws(site: dict, num_draws: int, nesting: int) -> torch.Tensor | None:
    """A site's value as (k, *plates, *event) for the k draws of its trace: the particle dim first, the
    plate dims (``nesting`` of them) next; None for a site with enumeration dims (a sum, not draws)."""
    value = site["value"]
    event_dim = len(site["fn"].event_shape)
    batch = value.dim() - event_dim
    if batch > nesting + 1:
        return None
    value = value.reshape((1,) * (nesting + 1 - batch) + value.shape)
    return value.expand((num_draws,) + value.shape[1:])


def importance_draws(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 100,
    plate: str = "data",
    vectorize: bool = True,
    **kwargs: Any,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``S = num_samples`` draws of ``guide``, the model replayed against them, and their log weights.

    :param model: the story, called as ``model(*args, **kwargs)``; ``guide`` its proposal (same
        arguments, every latent site of the model, with a density), as for
        :func:`~pyro_lvm.infer.importance_log_likelihood`. Sites marked for enumeration are summed
        inside the weights and have no draws.
    :param plate: the model's data plate.
    :param vectorize: one call with a leading sample dimension (True), or one training-shaped call
        per draw (False); see :func:`~pyro_lvm.infer.importance_log_likelihood`.
    :returns: ``(draws, log_weights)``: ``draws`` maps each sample site of the model (latent,
        observed and ``pyro.deterministic``) to its values of shape ``(S, N, *event)`` for a story whose
        data plate (size N) is its only plate (``(S, *plates, *event)`` in general); ``log_weights`` is
        (S, N). Sites with enumeration dims (an enumerated site, or one computed from it) are left out.
    :raises ValueError: as :func:`~pyro_lvm.infer.importance_log_likelihood` (a guide that does not
        cover the model's latent sites, a point-mass guide, no examples, ``num_samples < 1``).
    """
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    nesting = _checked_plate_nesting(model, guide, args, kwargs, plate, "importance_draws", proper_density=True)
    with torch.no_grad(), poutine.block():
        pairs = _weighted_traces(model, guide, args, kwargs, num_samples, plate, nesting, vectorize)
    draws: dict[str, list[torch.Tensor]] = {}
    for trace, log_w in pairs:
        for name, site in trace.nodes.items():
            if site["type"] == "sample" and not site_is_subsample(site):
                value = _site_draws(site, log_w.shape[0], nesting)
                if value is not None:
                    draws.setdefault(name, []).append(value)
    complete = {name: torch.cat(values) for name, values in draws.items() if len(values) == len(pairs)}
    return complete, torch.cat([log_w for _, log_w in pairs])


def _check_weights(values: torch.Tensor, log_weights: torch.Tensor) -> None:
    if log_weights.dim() != 2 or values.shape[:2] != log_weights.shape:
        raise ValueError(f"values must have shape (S, N, ...) with (S, N) the shape of log_weights, got values of shape "
                         f"{tuple(values.shape)} and log_weights of shape {tuple(log_weights.shape)}")


def posterior_expectation(values: torch.Tensor, log_weights: torch.Tensor) -> torch.Tensor:
    """The self-normalized importance estimate ``sum_s softmax_s(log w)_sn values_sn`` of ``E[values | x_n]``.

    :param values: (S, N, ...), a site's draws from :func:`importance_draws` (or any function of them).
    :param log_weights: (S, N), their log weights.
    :returns: (N, ...).
    :raises ValueError: when the leading shapes differ.
    """
    _check_weights(values, log_weights)
    w = torch.softmax(log_weights, dim=0)
    return (w.reshape(w.shape + (1,) * (values.dim() - 2)) * values).sum(0)


def importance_resample(
    values: torch.Tensor, log_weights: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``num_samples`` values per example drawn with replacement with probabilities ``softmax_s(log w)_sn``.

    :param values: (S, N, ...); ``log_weights`` (S, N).
    :returns: (num_samples, N, ...), approximate posterior (or posterior-predictive) draws.
    :raises ValueError: when the leading shapes differ or ``num_samples < 1``.
    """
    _check_weights(values, log_weights)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    probs = torch.softmax(log_weights, dim=0).T  # (N, S)
    picks = torch.multinomial(probs, num_samples, replacement=True, generator=generator).T  # (num_samples, N)
    index = picks.reshape(picks.shape + (1,) * (values.dim() - 2)).expand((num_samples,) + values.shape[1:])
    return values.gather(0, index)
