"""Closed-form KL of the full- and low-rank-covariance guide families to a diagonal Gaussian prior.

torch registers ``KL(MultivariateNormal || MultivariateNormal)`` and the low-rank pairs,
but not against ``Normal(loc, scale).to_event(1)``, the prior of most latent variable
models, so :class:`~pyro.infer.TraceMeanField_ELBO` would fall back to a Monte Carlo
term for the ``mvn`` and ``lowrank`` guides. Registering the pair (importing this module,
which :mod:`pyro_lvm.guides` does) gives them the analytic KL, as ``normal`` has.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch.distributions import kl_divergence, register_kl

__all__ = ["as_multivariate_normal"]


def as_multivariate_normal(p: dist.Independent) -> dist.MultivariateNormal:
    """``Normal(loc, scale).to_event(1)`` (event shape (d,)) as the same ``MultivariateNormal``."""
    if not (isinstance(p.base_dist, dist.Normal) and p.reinterpreted_batch_ndims == 1):
        raise NotImplementedError  # torch's signal for "no closed form for this pair"
    loc, scale = torch.broadcast_tensors(p.base_dist.loc, p.base_dist.scale)
    return dist.MultivariateNormal(loc, scale_tril=torch.diag_embed(scale))


@register_kl(dist.MultivariateNormal, dist.Independent)
def _kl_mvn_diagonal(q, p):
    return kl_divergence(q, as_multivariate_normal(p))


@register_kl(dist.LowRankMultivariateNormal, dist.Independent)
def _kl_lowrank_diagonal(q, p):
    return kl_divergence(q, as_multivariate_normal(p))
