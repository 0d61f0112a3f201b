"""Point family: ``q(z | x) = delta(z - f(x))``; with it the ELBO is the "hard ELBO".

With a point mass the entropy term vanishes, so ``E_q[log p(x, z) - log q(z | x)]``
becomes ``log p(f(x)) + log p(x | f(x))``: the rate-distortion objective (rate
``-log p(z)``, distortion ``-log p(x | z)``). It is not a bound on ``log p(x)``;
report it as the hard ELBO. For an importance-sampled ``log p(x)`` use
:meth:`AmortizedDelta.proposal`, a Gaussian around the point.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch
from torch import nn

from pyro_lvm.guides.amortized import AmortizedGuide, AmortizedSite
from pyro_lvm.guides.guide import GuideCall, SingleSiteGuide
from pyro_lvm.guides.heads import Head

__all__ = ["AmortizedDelta", "DeltaHead", "DeltaProposal", "GaussianAroundPointHead"]


class DeltaHead(Head):
    """``Delta(point)``, event shape (latent_dim,), like :class:`~pyro.infer.autoguide.AutoDelta` per example; parameter ``point`` (d)."""

    #: Its ELBO is the rate-distortion objective, not a lower bound on log p(x).
    is_bound = False

    def param_sizes(self) -> dict[str, int]:
        return {"point": self.latent_dim}

    def distribution(self, params: dict[str, torch.Tensor]) -> dist.Distribution:
        return dist.Delta(params["point"], event_dim=1)


class GaussianAroundPointHead(DeltaHead):
    """``N(point, scale^2 I)``: a proper density around a point head's parameter (fixed ``scale``)."""

    is_bound = True

    def __init__(self, latent_dim: int, scale: float) -> None:
        super().__init__(latent_dim)
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        self.scale = float(scale)

    def distribution(self, params: dict[str, torch.Tensor]) -> dist.Distribution:
        point = params["point"]
        return dist.Normal(point, torch.full_like(point, self.scale)).to_event(1)


class AmortizedDelta(AmortizedGuide):
    """``q(z | x) = Delta(f(x))`` (event shape (latent_dim,)), :class:`DeltaHead` on an encoder.

    :param hidden_dims: encoder hidden layer sizes; ``activation`` their activation.

    Other options as in :class:`~pyro_lvm.guides.amortized.AmortizedGuide`.
    """

    #: Its ELBO is the rate-distortion objective, not a lower bound on log p(x).
    is_bound = False

    def __init__(self, input_dim: int | Sequence[int] | None, latent_dim: int, hidden_dims: Sequence[int] = (200, 200),
                 activation: str = "tanh", **options: Any) -> None:
        super().__init__(DeltaHead(latent_dim), input_dim, hidden_dims=hidden_dims, activation=activation, **options)

    def proposal(self, scale: float) -> DeltaProposal:
        """A proper importance proposal ``N(f(x), scale^2 I)`` sharing this encoder (for ``log p(x)``)."""
        return DeltaProposal(self, scale)


class _AroundPoint(nn.Module):
    """A site whose parameters are another amortized site's point (that site's parameters stay its own)."""

    def __init__(self, point_site: AmortizedSite, scale: float) -> None:
        super().__init__()
        self.name, self.inputs = point_site.name, point_site.inputs
        self.head = GaussianAroundPointHead(point_site.head.latent_dim, scale)
        self._point_site = (point_site,)

    def params(self, inputs: tuple[torch.Tensor, ...], call: GuideCall | None = None) -> dict[str, torch.Tensor]:
        return self._point_site[0].params(inputs, call)


class DeltaProposal(SingleSiteGuide):
    """``q(z | x) = N(f(x), scale^2 I)`` around an :class:`AmortizedDelta`'s point (no parameters of its own).

    A valid importance sampler (its density is positive everywhere), so
    :func:`~pyro_lvm.infer.importance_log_likelihood` with it estimates ``log p(x)``
    for a model trained with the point encoder.
    """

    def __init__(self, point_guide: AmortizedDelta, scale: float) -> None:
        g = point_guide
        super().__init__([_AroundPoint(g.sites[0], scale)], plate=g.plate, plate_dim=g.plate_dim, examples=g.examples)
        self._signature = g._signature
        self.scale = float(scale)
