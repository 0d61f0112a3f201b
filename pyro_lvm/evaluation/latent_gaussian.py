"""Evaluate a trained latent-Gaussian model and its guide on test data, the way papers report it.

One call, :func:`evaluate_latent_gaussian`, gives the test ELBO (the hard ELBO for a point
guide, labelled as not a bound), the importance-weighted test log-likelihood with its standard
error and bits per dimension, the amortization gap of an encoder family, and the active units
and directions of the posterior means (per latent layer for a story with several latent sites,
such as :class:`~pyro_lvm.models.HierarchicalDeepLatentGaussian`). Its record (:meth:`LatentGaussianEvaluation.to_dict`)
is the evaluation part of ``examples/vae.py``'s ``metrics.json``.

The pieces, in order: the guide for the test examples (:func:`guide_for_examples`: new rows
for a per-example guide), the importance proposal (:func:`likelihood_proposal`: a Gaussian
around a point guide), the log-likelihood in chunks (:func:`chunked_log_likelihood`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyro
import torch
from pyro import poutine

from pyro_lvm.evaluation.chunked import chunked_log_likelihood
from pyro_lvm.evaluation.new_examples import guide_for_examples
from pyro_lvm.evaluation.proposal import likelihood_proposal
from pyro_lvm.guides import LatentGuide, LocalGuide
from pyro_lvm.infer import (
    active_directions,
    active_units,
    amortization_gap,
    bits_per_dim,
    per_example_elbo,
    posterior_means,
)

__all__ = ["LatentGaussianEvaluation", "evaluate_latent_gaussian", "layer_means"]


@dataclass
class LatentGaussianEvaluation:
    """What :func:`evaluate_latent_gaussian` measured; :meth:`to_dict` gives the record.

    Means are over the N test examples, in nats (log-likelihoods are negative, NLLs positive).
    """

    test_examples: int  #: N
    test_elbo: float  #: mean ELBO (10 samples per example); the hard ELBO for a point guide
    test_elbo_is_bound: bool  #: False for a point guide (rate-distortion objective)
    test_nll: float  #: minus the mean importance-weighted log-likelihood
    test_log_likelihood: float  #: mean importance-weighted log p(x_n)
    test_log_likelihood_stderr: float | None  #: its standard error over examples (None for N = 1)
    eval_samples: int  #: importance samples per example
    likelihood_proposal: str  #: which proposal sampled the log-likelihood
    amortization_gap: float | None  #: per-example optimized ELBO minus the encoder's (None: no encoder)
    gap_encoder_elbo: float | None  #: the encoder's mean ELBO on the gap's examples
    gap_optimized_elbo: float | None  #: the optimized mean ELBO on them
    gap_examples: int | None  #: the first this many test examples measure the gap
    active_units: int  #: latent axes whose posterior mean varies over examples (variance > 0.01), all layers
    latent_mean_variances: torch.Tensor  #: (latent_dim,) those variances (layers concatenated in site order)
    active_directions: int  #: the same count along principal directions (summed over layers)
    latent_mean_principal_variances: torch.Tensor  #: (latent_dim,) eigenvalues, largest first (per layer, concatenated)
    active_units_per_layer: dict  #: latent site -> its active units (one entry for a one-layer story; not in the record)
    bits_per_dim: float  #: -test_log_likelihood / (D log 2)
    eval_seconds: float  #: wall clock of the whole evaluation
    guide: Callable = field(repr=False)  #: the guide that covers the test examples (new rows for a local guide)
    log_likelihood: torch.Tensor = field(repr=False)  #: (N,) importance-weighted log p(x_n)
    elbo: torch.Tensor = field(repr=False)  #: (N,) ELBO per example

    #: The record's keys, in the order ``metrics.json`` lists them.
    RECORD_KEYS = (
        "test_examples", "test_elbo", "test_elbo_is_bound", "test_nll", "test_log_likelihood",
        "test_log_likelihood_stderr", "eval_samples", "likelihood_proposal", "amortization_gap",
        "gap_encoder_elbo", "gap_optimized_elbo", "gap_examples", "active_units", "latent_mean_variances",
        "active_directions", "latent_mean_principal_variances", "bits_per_dim", "eval_seconds",
    )

    def to_dict(self) -> dict:
        """The record: the fields of :attr:`RECORD_KEYS` (tensors stay tensors; ``runs.write_json`` lists them)."""
        return {key: getattr(self, key) for key in self.RECORD_KEYS}


def evaluate_latent_gaussian(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    *,
    num_samples: int = 5000,
    elbo_samples: int = 10,
    gap_examples: int = 100,
    gap_steps: int = 300,
    local_steps: int = 500,
    proposal_examples: int = 100,
    chunk_examples: int = 500,
    max_weights: int = 20000,
    latent_sites: Sequence[str] | None = None,
) -> LatentGaussianEvaluation:
    """Evaluate ``model`` and ``guide`` on the test examples ``x``.

    :param model: the generative story, called as ``model(x)`` (e.g. a
        :class:`~pyro_lvm.models.DeepLatentGaussian`, or its ``.model``).
    :param guide: the trained guide. A :class:`~pyro_lvm.guides.LocalGuide` (rows of training
        examples) gets new rows fitted to ``x`` (``local_steps`` Adam steps, see
        :func:`guide_for_examples`); a point guide is scored with a Gaussian proposal around its
        point whose scale is chosen on the first ``proposal_examples`` examples (see
        :func:`likelihood_proposal`).
    :param x: (N, D) test examples on the model's device, N >= 2.
    :param num_samples: importance samples per example for ``log p(x_n)``, drawn
        ``chunk_examples`` examples and at most ``max_weights`` weights at a time.
    :param elbo_samples: samples per example of the test ELBO.
    :param gap_examples: the first this many examples measure the amortization gap (guides of
        :mod:`pyro_lvm.guides` with an encoder, several sites too), with ``gap_steps`` Adam steps per example.
    :param latent_sites: the guide's latent sites whose active units are counted, layer by layer
        (e.g. ``("z1", "z2")``); ``None``: the one site ``guide.site``.
    :returns: the :class:`LatentGaussianEvaluation`; its ``to_dict()`` is the record.
    """
    t0 = time.perf_counter()
    eval_guide = guide_for_examples(model, guide, x, steps=local_steps)
    elbo = per_example_elbo(model, eval_guide, x, num_samples=elbo_samples)
    proposal, proposal_note = likelihood_proposal(model, eval_guide, x[:proposal_examples])
    ll = chunked_log_likelihood(model, proposal, x, num_samples=num_samples, chunk_examples=chunk_examples,
                                max_weights=max_weights)
    gap = None
    if isinstance(guide, LatentGuide) and not isinstance(guide, LocalGuide):  # a local guide has no encoder, hence no gap
        gap = amortization_gap(model, guide, x[:gap_examples], steps=gap_steps)
    per_site = {guide.site: posterior_means(eval_guide, x)} if latent_sites is None else layer_means(eval_guide, x, latent_sites)
    units = {site: active_units(m) for site, m in per_site.items()}
    directions = {site: active_directions(m) for site, m in per_site.items()}
    eval_seconds = time.perf_counter() - t0
    return LatentGaussianEvaluation(
        test_examples=len(x),
        test_elbo=elbo.mean().item(),
        test_elbo_is_bound=getattr(guide, "is_bound", True),
        test_nll=-ll.mean().item(),
        test_log_likelihood=ll.mean().item(),
        test_log_likelihood_stderr=(ll.std() / math.sqrt(len(ll))).item() if len(ll) > 1 else None,
        eval_samples=num_samples,
        likelihood_proposal=proposal_note,
        amortization_gap=None if gap is None else gap["gap"],
        gap_encoder_elbo=None if gap is None else gap["encoder_elbo"],
        gap_optimized_elbo=None if gap is None else gap["optimized_elbo"],
        gap_examples=None if gap is None else min(gap_examples, len(x)),
        active_units=sum(n for n, _ in units.values()),
        latent_mean_variances=torch.cat([v for _, v in units.values()]),
        active_directions=sum(n for n, _ in directions.values()),
        latent_mean_principal_variances=torch.cat([v for _, v in directions.values()]),
        active_units_per_layer={site: n for site, (n, _) in units.items()},
        bits_per_dim=bits_per_dim(ll.mean().item(), x.reshape(len(x), -1).shape[1]),
        eval_seconds=eval_seconds,
        guide=eval_guide,
        log_likelihood=ll,
        elbo=elbo,
    )


@torch.no_grad()
def layer_means(
    guide: Callable, x: torch.Tensor, sites: Sequence[str], num_samples: int = 100, chunk_examples: int = 500
) -> dict[str, torch.Tensor]:
    """``E_q[z_site | x_n]`` for every site of ``sites``: site -> (N, the site's size).

    The average of ``num_samples`` draws of the guide, vectorized in a particle plate left of its data
    plate (dim -1), ``chunk_examples`` examples at a time. For a site read by a later one's encoder
    (``q(z2 | z1)``), this is the mean of the marginal ``q(z2 | x) = E_{q(z1 | x)} q(z2 | z1)``.
    """
    chunks = []
    for chunk in x.split(chunk_examples):
        with poutine.block(), pyro.plate("_particles", num_samples, dim=-2):
            trace = poutine.trace(guide).get_trace(chunk)
        chunks.append([trace.nodes[site]["value"].mean(0) for site in sites])
    return {site: torch.cat(means) for site, means in zip(sites, zip(*chunks))}
