"""Inverse autoregressive flow encoder: a Gaussian from the encoder, then IAF layers conditioned on x."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import conditional_affine_autoregressive
from torch import nn
from torch.nn import functional as F

from pyro_lvm.guides.amortized import AmortizedGuide
from pyro_lvm.nets import MLP, check_widths

__all__ = ["AmortizedIAF"]


class AmortizedIAF(AmortizedGuide):
    """``z = f_L o ... o f_1(eps)``, ``eps ~ N(mu(x), diag(sigma(x)^2))``, each ``f_l`` an affine IAF layer.

    The encoder outputs the base Gaussian's mean and scale and a context vector
    ``h(x)``; every layer is Pyro's
    :class:`~pyro.distributions.transforms.ConditionalAffineAutoregressive` (a MADE
    conditioned on ``h(x)``; Kingma et al., 2016). Sampling runs the flow forward in
    one pass per layer and the density of a sample reuses the cached forward values,
    so training and importance sampling need no autoregressive inversion. There is no
    closed-form KL: ``TraceMeanField_ELBO`` falls back to the Monte Carlo term.

    :param num_flows: number of IAF layers (>= 1).
    :param context_dim: size of ``h(x)``.
    :param flow_hidden_dims: hidden sizes of each layer's MADE (default ``[2 * max(latent_dim, context_dim)]``).
    :param hidden_dims: encoder hidden layer sizes.
    :param activation: their activation.

    Other parameters as in :class:`~pyro_lvm.guides.amortized.AmortizedGuide`.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int,
        num_flows: int = 2,
        context_dim: int = 50,
        flow_hidden_dims: Sequence[int] | None = None,
        hidden_dims: Sequence[int] = (200, 200),
        activation: str = "tanh",
        **site_kwargs: Any,
    ) -> None:
        super().__init__(input_dim, latent_dim, **site_kwargs)
        if not isinstance(num_flows, int) or num_flows < 1:
            raise ValueError(f"num_flows must be a positive integer, got {num_flows!r}")
        if not isinstance(context_dim, int) or context_dim < 1:
            raise ValueError(f"context_dim must be a positive integer, got {context_dim!r}")
        self.context_dim = context_dim
        self.encoder = MLP(input_dim, hidden_dims, 2 * latent_dim + context_dim, activation)
        flow_hidden_dims = (
            list(check_widths(flow_hidden_dims, "flow_hidden_dims")) if flow_hidden_dims is not None
            else [2 * max(latent_dim, context_dim)]
        )
        self.flows = nn.ModuleList(
            conditional_affine_autoregressive(latent_dim, context_dim, hidden_dims=flow_hidden_dims) for _ in range(num_flows)
        )

    def local_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loc, raw_scale, context)``: (N, d), (N, d), (N, context_dim)."""
        d = self.latent_dim
        out = self.encoder(x)
        return out[..., :d], out[..., d : 2 * d], out[..., 2 * d :]

    def distribution_from(self, params: tuple[torch.Tensor, ...]) -> dist.Distribution:
        loc, raw_scale, context = params
        base = dist.Normal(loc, F.softplus(raw_scale) + 1e-5).to_event(1)
        return dist.TransformedDistribution(base, [flow.condition(context) for flow in self.flows])
