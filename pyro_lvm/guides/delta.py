"""Point encoder: ``q(z | x) = delta(z - f(x))``; with it the ELBO is the "hard ELBO".

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

from pyro_lvm.guides.amortized import AmortizedGuide
from pyro_lvm.nets import MLP

__all__ = ["AmortizedDelta", "DeltaProposal"]


class AmortizedDelta(AmortizedGuide):
    """``q(z | x) = Delta(f(x))`` (event shape (latent_dim,)), like :class:`~pyro.infer.autoguide.AutoDelta` per example.

    :param hidden_dims: encoder hidden layer sizes.
    :param activation: their activation.

    Other parameters as in :class:`~pyro_lvm.guides.amortized.AmortizedGuide`.
    """

    #: Its ELBO is the rate-distortion objective, not a lower bound on log p(x).
    is_bound = False

    def __init__(
        self,
        input_dim: int,
        latent_dim: int,
        hidden_dims: Sequence[int] = (200, 200),
        activation: str = "tanh",
        **site_kwargs: Any,
    ) -> None:
        super().__init__(input_dim, latent_dim, **site_kwargs)
        self.encoder = MLP(input_dim, hidden_dims, latent_dim, activation)

    def local_params(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        """``(point,)``, shape (N, latent_dim)."""
        return (self.encoder(x),)

    def distribution_from(self, params: tuple[torch.Tensor, ...]) -> dist.Distribution:
        (point,) = params
        return dist.Delta(point, event_dim=1)

    def proposal(self, scale: float) -> DeltaProposal:
        """A proper importance proposal ``N(f(x), scale^2 I)`` sharing this encoder (for ``log p(x)``)."""
        return DeltaProposal(self, scale)


class DeltaProposal(AmortizedGuide):
    """``q(z | x) = N(f(x), scale^2 I)`` around an :class:`AmortizedDelta`'s point (no parameters of its own).

    A valid importance sampler (its density is positive everywhere), so
    :func:`~pyro_lvm.infer.importance_log_likelihood` with it estimates ``log p(x)``
    for a model trained with the point encoder.
    """

    def __init__(self, point_guide: AmortizedDelta, scale: float) -> None:
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        g = point_guide
        super().__init__(g.input_dim, g.latent_dim, site=g.site, obs_arg=g.obs_arg, plate=g.plate, plate_dim=g.plate_dim)
        self._point_guide = (point_guide,)  # not a submodule: its parameters keep their Pyro names
        self.scale = float(scale)

    def local_params(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return self._point_guide[0].local_params(x)

    def distribution_from(self, params: tuple[torch.Tensor, ...]) -> dist.Distribution:
        (point,) = params
        return dist.Normal(point, torch.full_like(point, self.scale)).to_event(1)
