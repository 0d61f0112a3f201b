"""A guide must cover latent sites the model has: a check that names the sites that exist."""

from __future__ import annotations

from typing import Callable

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

__all__ = ["check_guide_sites"]


def _sample_sites(trace) -> dict:
    return {name: site for name, site in trace.nodes.items() if site["type"] == "sample" and not site_is_subsample(site)}


def check_guide_sites(model: Callable, guide: Callable, *args, **kwargs) -> None:
    """Run ``guide`` and ``model`` once on ``(*args, **kwargs)`` and compare their sample sites.

    Works with any guide (pyro_lvm families, autoguides, functions). Nothing is learned or
    recorded, and the random number streams are left as they were: both run blocked, without
    gradients, under :func:`torch.random.fork_rng`, so a training loop may call it on its first
    batch without changing its trajectory.

    :raises ValueError: when the guide samples a site the model does not have (e.g. an
        encoder guide built with ``site="z"`` applied to a model whose latent is ``"w"``),
        or a site the model observes; the message lists the model's latent and observed sites.
    """
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda_devices), poutine.block(), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    model_sites = _sample_sites(model_trace)
    latent = sorted(n for n, s in model_sites.items() if not s["is_observed"])
    observed = sorted(n for n, s in model_sites.items() if s["is_observed"])
    for name, site in _sample_sites(guide_trace).items():
        if site["is_observed"] or site["infer"].get("is_auxiliary") or (name in model_sites and not model_sites[name]["is_observed"]):
            continue  # auxiliary: an autoguide's joint latent, which it unpacks into the model's sites
        what = "observes" if name in model_sites else "has no sample site"
        raise ValueError(
            f"the guide samples {name!r}, but the model {what} {name!r}; the model's latent sites are "
            f"{latent} and its observed sites {observed} (give the guide site=... naming one of the latent sites)"
        )
