"""Full-covariance Gaussian family: a mean and a Cholesky factor per example."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch

from pyro_lvm.guides.amortized import AmortizedGuide
from pyro_lvm.guides.heads import Head, inverse_positive_scale, positive_scale

__all__ = ["AmortizedMultivariateNormal", "MultivariateNormalHead"]


class MultivariateNormalHead(Head):
    """``N(loc, L L^T)`` with ``L`` lower triangular: parameters ``loc`` (d), ``diagonal`` (d, raw: made
    positive by :func:`~pyro_lvm.guides.heads.positive_scale`) and ``off_diagonal`` (d (d - 1) / 2, row-major
    strictly-lower entries)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        rows, cols = torch.tril_indices(latent_dim, latent_dim, offset=-1)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)

    def param_sizes(self) -> dict[str, int]:
        d = self.latent_dim
        return {"loc": d, "diagonal": d, "off_diagonal": d * (d - 1) // 2}

    def scale_tril(self, diagonal: torch.Tensor, off_diagonal: torch.Tensor) -> torch.Tensor:
        """The Cholesky factor (..., d, d) from its raw diagonal (..., d) and strictly-lower entries."""
        d = self.latent_dim
        tril = torch.diag_embed(positive_scale(diagonal))
        if off_diagonal.shape[-1]:
            lower = off_diagonal.new_zeros(off_diagonal.shape[:-1] + (d, d))
            lower[..., self._rows, self._cols] = off_diagonal
            tril = tril + lower
        return tril

    def distribution(self, params: dict[str, torch.Tensor]) -> dist.Distribution:
        return dist.MultivariateNormal(params["loc"], scale_tril=self.scale_tril(params["diagonal"], params["off_diagonal"]))

    def initial_params(self, num_examples: int, init_scale: float = 0.1) -> dict[str, torch.Tensor]:
        """``N(0, init_scale^2 I)`` for every example."""
        params = super().initial_params(num_examples, init_scale)
        params["diagonal"].fill_(float(inverse_positive_scale(init_scale)))
        return params


class AmortizedMultivariateNormal(AmortizedGuide):
    """``q(z | x) = N(mu(x), L(x) L(x)^T)``, ``L(x)`` lower triangular with a positive diagonal.

    The output layer gives ``latent_dim`` means, ``latent_dim`` raw diagonal entries and
    ``latent_dim (latent_dim - 1) / 2`` strictly-lower entries (:class:`MultivariateNormalHead`).

    :param hidden_dims: encoder hidden layer sizes; ``activation`` their activation.

    Other options as in :class:`~pyro_lvm.guides.amortized.AmortizedGuide`.
    """

    def __init__(self, input_dim: int | Sequence[int] | None, latent_dim: int, hidden_dims: Sequence[int] = (200, 200),
                 activation: str = "tanh", **options: Any) -> None:
        super().__init__(MultivariateNormalHead(latent_dim), input_dim, hidden_dims=hidden_dims, activation=activation, **options)
