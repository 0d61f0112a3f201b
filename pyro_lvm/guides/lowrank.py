"""Low-rank-plus-diagonal Gaussian family: ``Sigma = W W^T + diag(d)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch

from pyro_lvm.guides.amortized import AmortizedGuide
from pyro_lvm.guides.heads import Head, inverse_positive_scale, positive_scale

__all__ = ["AmortizedLowRankNormal", "LowRankNormalHead"]


class LowRankNormalHead(Head):
    """``N(loc, W W^T + diag(positive_scale(diagonal)))`` with ``W`` (d, rank), on
    :class:`pyro.distributions.LowRankMultivariateNormal` (O(d rank^2) instead of O(d^3)).

    Parameters ``loc`` (d), ``diagonal`` (d) and ``cov_factor`` (d * rank, row-major).
    """

    def __init__(self, latent_dim: int, rank: int = 2) -> None:
        super().__init__(latent_dim)
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive integer, got {rank!r}")
        self.rank = rank

    def param_sizes(self) -> dict[str, int]:
        d = self.latent_dim
        return {"loc": d, "diagonal": d, "cov_factor": d * self.rank}

    def distribution(self, params: dict[str, torch.Tensor]) -> dist.Distribution:
        factor = params["cov_factor"]
        factor = factor.reshape(factor.shape[:-1] + (self.latent_dim, self.rank))
        return dist.LowRankMultivariateNormal(params["loc"], factor, positive_scale(params["diagonal"]))

    def initial_params(self, num_examples: int, init_scale: float = 0.1) -> dict[str, torch.Tensor]:
        """``N(0, init_scale^2 I)`` for every example (the diagonal is a variance; the factor 0)."""
        params = super().initial_params(num_examples, init_scale)
        params["diagonal"].fill_(float(inverse_positive_scale(init_scale**2)))
        return params


class AmortizedLowRankNormal(AmortizedGuide):
    """``q(z | x) = N(mu(x), W(x) W(x)^T + diag(d(x)))`` with ``W(x)`` of shape (latent_dim, rank).

    :param rank: columns of the covariance factor ``W(x)`` (>= 1).
    :param hidden_dims: encoder hidden layer sizes; ``activation`` their activation.

    Other options as in :class:`~pyro_lvm.guides.amortized.AmortizedGuide`.
    """

    def __init__(self, input_dim: int | Sequence[int] | None, latent_dim: int, rank: int = 2,
                 hidden_dims: Sequence[int] = (200, 200), activation: str = "tanh", **options: Any) -> None:
        super().__init__(LowRankNormalHead(latent_dim, rank), input_dim, hidden_dims=hidden_dims, activation=activation, **options)

    @property
    def rank(self) -> int:
        return self.head.rank
