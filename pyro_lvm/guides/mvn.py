"""Full-covariance Gaussian encoder: the encoder outputs a mean and a Cholesky factor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch
from torch.nn import functional as F

from pyro_lvm.guides.amortized import AmortizedGuide
from pyro_lvm.nets import MLP

__all__ = ["AmortizedMultivariateNormal"]


class AmortizedMultivariateNormal(AmortizedGuide):
    """``q(z | x) = N(mu(x), L(x) L(x)^T)`` with ``L(x)`` lower triangular, positive diagonal.

    The encoder outputs ``latent_dim`` means, ``latent_dim`` raw diagonal entries (made
    positive with softplus) and ``latent_dim (latent_dim - 1) / 2`` strictly-lower entries.

    :param hidden_dims: encoder hidden layer sizes.
    :param activation: their activation.

    Other parameters as in :class:`~pyro_lvm.guides.amortized.AmortizedGuide`.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int,
        hidden_dims: Sequence[int] = (200, 200),
        activation: str = "tanh",
        **site_kwargs: Any,
    ) -> None:
        super().__init__(input_dim, latent_dim, **site_kwargs)
        self.num_off_diagonal = latent_dim * (latent_dim - 1) // 2
        self.encoder = MLP(input_dim, hidden_dims, 2 * latent_dim + self.num_off_diagonal, activation)
        rows, cols = torch.tril_indices(latent_dim, latent_dim, offset=-1)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)

    def local_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loc, raw_diagonal, off_diagonal)``: (N, d), (N, d), (N, d (d - 1) / 2)."""
        d = self.latent_dim
        out = self.encoder(x)
        return out[..., :d], out[..., d : 2 * d], out[..., 2 * d :]

    def scale_tril(self, raw_diagonal: torch.Tensor, off_diagonal: torch.Tensor) -> torch.Tensor:
        """The Cholesky factor (N, d, d) from its raw diagonal (N, d) and strictly-lower entries."""
        d = self.latent_dim
        tril = torch.diag_embed(F.softplus(raw_diagonal) + 1e-5)
        if self.num_off_diagonal:
            lower = off_diagonal.new_zeros(off_diagonal.shape[:-1] + (d, d))
            lower[..., self._rows, self._cols] = off_diagonal
            tril = tril + lower
        return tril

    def distribution_from(self, params: tuple[torch.Tensor, ...]) -> dist.Distribution:
        loc, raw_diagonal, off_diagonal = params
        return dist.MultivariateNormal(loc, scale_tril=self.scale_tril(raw_diagonal, off_diagonal))
