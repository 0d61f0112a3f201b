"""A guide must cover the model's latent sites, and only those, at their shapes: checks that name the sites.

:func:`check_guide_sites` runs a guide and its model once and compares their sample sites;
:func:`guide_and_model_traces` and :func:`check_trace_sites` are its two halves, for callers
(the evaluators) that inspect the same traces further.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro import poutine
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample

__all__ = ["check_guide_sites", "check_trace_sites", "guide_and_model_traces"]


def _sample_sites(trace: Trace) -> dict:
    return {name: site for name, site in trace.nodes.items() if site["type"] == "sample" and not site_is_subsample(site)}


def _expected_shape(site: dict) -> torch.Size:
    """The shape of a value of a model site's distribution (plates broadcast in)."""
    return site["fn"].batch_shape + site["fn"].event_shape


def _agree(a: torch.Size, b: torch.Size) -> bool:
    """Equal shapes once the shorter is left-padded with ones (extra leading size-1 dims broadcast)."""
    n = max(len(a), len(b))
    return (1,) * (n - len(a)) + tuple(a) == (1,) * (n - len(b)) + tuple(b)


def _shape_mismatch(guide_trace: Trace, model_trace: Trace) -> str | None:
    """A message naming the first latent site whose guide value does not have the model's shape, or None."""
    model_sites = _sample_sites(model_trace)
    for name, site in _sample_sites(guide_trace).items():
        model_site = model_sites.get(name)
        if model_site is None or model_site["is_observed"] or site["is_observed"]:
            continue
        guide_shape, model_shape = site["value"].shape, _expected_shape(model_site)
        if not _agree(guide_shape, model_shape):
            return (
                f"at site {name!r} the guide samples shape {tuple(guide_shape)} but the model expects shape "
                f"{tuple(model_shape)} (batch {tuple(model_site['fn'].batch_shape)}, event "
                f"{tuple(model_site['fn'].event_shape)}); build the guide for the model's latent size"
            )
    return None


def _no_examples(args: tuple, kwargs: dict) -> str:
    """The message for a call whose data plate would have size 0, naming the empty arguments."""
    named = [*((repr(i), a) for i, a in enumerate(args)), *((repr(k), a) for k, a in kwargs.items())]
    empty = [f"argument {n} has shape {tuple(a.shape)}" for n, a in named if torch.is_tensor(a) and a.dim() and not a.shape[0]]
    return (f"the call has no examples ({'; '.join(empty) or 'a plate of size 0'}); pyro.plate refuses size 0: "
            f"pass at least one example")


def guide_and_model_traces(model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> tuple[Trace, Trace]:
    """Trace ``guide(*args, **kwargs)``, then ``model`` replayed against it; returns ``(guide_trace, model_trace)``.

    Nothing is learned or recorded, and the random number streams are left as they were: both
    run blocked, without gradients, under :func:`torch.random.fork_rng`.

    :raises ValueError: when the arguments have no examples (a plate of size 0), naming the empty
        arguments; when the model fails on a latent value whose shape is not the one its
        distribution has (e.g. a decoder's ``mat1 and mat2 shapes cannot be multiplied`` for a
        guide built with another latent size): the message names the site and both shapes.
    """
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda_devices), poutine.block(), torch.no_grad():
        try:
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            return guide_trace, _replayed_model_trace(model, guide_trace, args, kwargs)
        except ZeroDivisionError as e:  # pyro.plate's "size cannot be zero"
            raise ValueError(_no_examples(args, kwargs)) from e


def _replayed_model_trace(model: Callable, guide_trace: Trace, args: tuple, kwargs: dict) -> Trace:
    """The trace of ``model`` replayed against ``guide_trace``; a failure caused by a latent of the
    wrong shape becomes a ValueError naming the site and both shapes."""
    tracer = poutine.trace(poutine.replay(model, trace=guide_trace))
    try:
        return tracer.get_trace(*args, **kwargs)
    except (ValueError, RuntimeError, IndexError) as e:  # the sites traced before it say whether a shape caused it
        mismatch = _shape_mismatch(guide_trace, tracer.msngr.trace)
        if mismatch is None:
            raise
        raise ValueError(mismatch) from e


def check_trace_sites(guide_trace: Trace, model_trace: Trace) -> None:
    """Check that a guide trace covers the latent sites of a model trace replayed against it, at their shapes.

    A model site marked for enumeration (``infer={"enumerate": ...}``) counts as covered: an
    enumerating objective sums it out. So does a guide site marked ``infer={"is_auxiliary": True}``
    (an autoguide's joint latent, which it unpacks into the model's sites).

    :raises ValueError: when the guide samples a site the model does not have (e.g. an encoder
        guide built with ``site="z"`` applied to a model whose latent is ``"w"``) or one the model
        observes; when the model has a latent site the guide does not sample (the model would draw
        it from its prior, and ``log p`` of that draw would enter the objective as if ``q`` had
        proposed it); or when a site's shape differs between guide and model. The message lists
        the model's latent and observed sites.
    """
    model_sites = _sample_sites(model_trace)
    guide_sites = _sample_sites(guide_trace)
    latent = sorted(n for n, s in model_sites.items() if not s["is_observed"])
    observed = sorted(n for n, s in model_sites.items() if s["is_observed"])
    sites = f"the model's latent sites are {latent} and its observed sites {observed}"
    for name, site in guide_sites.items():
        if site["is_observed"] or site["infer"].get("is_auxiliary") or (name in model_sites and not model_sites[name]["is_observed"]):
            continue
        what = "observes" if name in model_sites else "has no sample site"
        raise ValueError(
            f"the guide samples {name!r}, but the model {what} {name!r}; {sites} "
            f"(give the guide site=... naming one of the latent sites)"
        )
    uncovered = [
        n for n in latent
        if not (n in guide_sites and not guide_sites[n]["is_observed"]) and not model_sites[n]["infer"].get("enumerate")
    ]
    if uncovered:
        raise ValueError(
            f"the guide does not sample {uncovered}, so the model would draw them from its prior and score "
            f"that draw as if the guide had proposed it; {sites}. Give the guide a distribution for every "
            f"latent site, or mark a discrete site infer={{'enumerate': 'parallel'}} and use TraceEnum_ELBO"
        )
    mismatch = _shape_mismatch(guide_trace, model_trace)
    if mismatch is not None:
        raise ValueError(mismatch)


def check_guide_sites(model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> None:
    """Run ``guide`` and ``model`` once on ``(*args, **kwargs)`` and compare their sample sites.

    Works with any guide (pyro_lvm families, autoguides, functions). Nothing is learned or
    recorded, and the random number streams are left as they were (see
    :func:`guide_and_model_traces`), so a training loop may call it on its first batch without
    changing its trajectory.

    :raises ValueError: as :func:`check_trace_sites` and :func:`guide_and_model_traces` say: a guide
        site the model lacks or observes, a model latent site the guide does not cover (unless
        marked for enumeration), or a latent site of another shape (naming both shapes).
    """
    check_trace_sites(*guide_and_model_traces(model, guide, *args, **kwargs))
