"""Normalizing-flow family: a Gaussian, then inverse autoregressive flow layers conditioned on a per-example context."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import conditional_affine_autoregressive
from torch import nn

from pyro_lvm.guides.amortized import AmortizedGuide
from pyro_lvm.guides.heads import Head, inverse_positive_scale, positive_scale
from pyro_lvm.nets import check_widths

__all__ = ["AmortizedIAF", "FlowHead"]


class FlowHead(Head):
    """``z = f_L o ... o f_1(eps)``, ``eps ~ N(loc, diag(positive_scale(scale)^2))``, each ``f_l`` an IAF layer.

    Every layer is Pyro's :class:`~pyro.distributions.transforms.ConditionalAffineAutoregressive`
    (a MADE conditioned on the per-example ``context``; Kingma et al., 2016); the layers are the
    head's global parameters. Sampling runs the flow forward in one pass per layer and the density
    of a sample reuses the cached forward values, so training and importance sampling need no
    autoregressive inversion. There is no closed-form KL: ``TraceMeanField_ELBO`` falls back to Monte Carlo.

    Parameters ``loc`` (d), ``scale`` (d) and ``context`` (context_dim).

    :param num_flows: number of IAF layers (>= 1).
    :param context_dim: size of the context.
    :param flow_hidden_dims: hidden sizes of each layer's MADE (default ``[2 * max(latent_dim, context_dim)]``).
    :param build: False: build the layers later with :meth:`build_flows`.
    """

    def __init__(self, latent_dim: int, num_flows: int = 2, context_dim: int = 50,
                 flow_hidden_dims: Sequence[int] | None = None, build: bool = True) -> None:
        super().__init__(latent_dim)
        if not isinstance(num_flows, int) or num_flows < 1:
            raise ValueError(f"num_flows must be a positive integer, got {num_flows!r}")
        if not isinstance(context_dim, int) or context_dim < 1:
            raise ValueError(f"context_dim must be a positive integer, got {context_dim!r}")
        self.context_dim = context_dim
        self.num_flows = num_flows
        self.flow_hidden_dims = (list(check_widths(flow_hidden_dims, "flow_hidden_dims")) if flow_hidden_dims is not None
                                 else [2 * max(latent_dim, context_dim)])
        self.flows = nn.ModuleList()
        if build:
            self.build_flows()

    def build_flows(self) -> None:
        """(Re)build the flow layers, drawing their random initialization (weights and MADE orderings) now."""
        self.flows = nn.ModuleList(
            conditional_affine_autoregressive(self.latent_dim, self.context_dim, hidden_dims=self.flow_hidden_dims)
            for _ in range(self.num_flows)
        )

    def param_sizes(self) -> dict[str, int]:
        return {"loc": self.latent_dim, "scale": self.latent_dim, "context": self.context_dim}

    def distribution(self, params: dict[str, torch.Tensor]) -> dist.Distribution:
        base = dist.Normal(params["loc"], positive_scale(params["scale"])).to_event(1)
        return dist.TransformedDistribution(base, [flow.condition(params["context"]) for flow in self.flows])

    def initial_params(self, num_examples: int, init_scale: float = 0.1) -> dict[str, torch.Tensor]:
        """Base ``N(0, init_scale^2 I)`` and context 0 for every example."""
        params = super().initial_params(num_examples, init_scale)
        params["scale"].fill_(float(inverse_positive_scale(init_scale)))
        return params


class AmortizedIAF(AmortizedGuide):
    """The encoder outputs the base Gaussian's mean and scale and a context ``h(x)`` for :class:`FlowHead`.

    :param num_flows: number of IAF layers (>= 1); ``context_dim`` the size of ``h(x)``.
    :param flow_hidden_dims: hidden sizes of each layer's MADE (default ``[2 * max(latent_dim, context_dim)]``).
    :param hidden_dims: encoder hidden layer sizes; ``activation`` their activation.

    Other options as in :class:`~pyro_lvm.guides.amortized.AmortizedGuide`.
    """

    def __init__(self, input_dim: int | Sequence[int] | None, latent_dim: int, num_flows: int = 2, context_dim: int = 50,
                 flow_hidden_dims: Sequence[int] | None = None, hidden_dims: Sequence[int] = (200, 200),
                 activation: str = "tanh", **options: Any) -> None:
        head = FlowHead(latent_dim, num_flows, context_dim, flow_hidden_dims, build=False)
        super().__init__(head, input_dim, hidden_dims=hidden_dims, activation=activation, **options)
        head.build_flows()  # after the encoder: the order in which this family has always drawn its initialization

    @property
    def flows(self) -> nn.ModuleList:
        return self.head.flows
