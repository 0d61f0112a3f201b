"""Low-rank-plus-diagonal Gaussian encoder: ``Sigma(x) = W(x) W(x)^T + diag(d(x))``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch
from torch.nn import functional as F

from pyro_lvm.guides.amortized import AmortizedGuide
from pyro_lvm.nets import MLP

__all__ = ["AmortizedLowRankNormal"]


class AmortizedLowRankNormal(AmortizedGuide):
    """``q(z | x) = N(mu(x), W(x) W(x)^T + diag(d(x)))`` with ``W(x)`` of shape (latent_dim, rank).

    Built on :class:`pyro.distributions.LowRankMultivariateNormal`, so sampling and
    densities cost O(latent_dim * rank^2) instead of O(latent_dim^3).

    :param rank: columns of the covariance factor ``W(x)`` (>= 1).
    :param hidden_dims: encoder hidden layer sizes.
    :param activation: their activation.

    Other parameters as in :class:`~pyro_lvm.guides.amortized.AmortizedGuide`.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int,
        rank: int = 2,
        hidden_dims: Sequence[int] = (200, 200),
        activation: str = "tanh",
        **site_kwargs: Any,
    ) -> None:
        super().__init__(input_dim, latent_dim, **site_kwargs)
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive integer, got {rank!r}")
        self.rank = rank
        self.encoder = MLP(input_dim, hidden_dims, latent_dim * (2 + rank), activation)

    def local_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loc, raw_diagonal, cov_factor)``: (N, d), (N, d), (N, d * rank)."""
        d = self.latent_dim
        out = self.encoder(x)
        return out[..., :d], out[..., d : 2 * d], out[..., 2 * d :]

    def distribution_from(self, params: tuple[torch.Tensor, ...]) -> dist.Distribution:
        loc, raw_diagonal, factor = params
        factor = factor.reshape(factor.shape[:-1] + (self.latent_dim, self.rank))
        return dist.LowRankMultivariateNormal(loc, factor, F.softplus(raw_diagonal) + 1e-5)
