"""Deep latent Gaussian model with two stochastic layers (Burda, Grosse and Salakhutdinov, 2015).

``z2_n ~ N(0, I)``, ``z1_n | z2_n ~ N(mu(z2_n), diag(sigma(z2_n)^2))`` through an MLP (Burda et al.:
100-100 tanh), ``x_n | z1_n ~ Bernoulli(logits = f(z1_n))`` (or ``Normal(f(z1_n), sigma)``) through
an MLP (200-200 tanh): their architecture 784-(200-200)-100-(100-100)-50 with z1 of size 100 and z2
of size 50.

The guide that mirrors the story is ``q(z1 | x) q(z2 | z1)`` (the true posterior factorizes the
same way, since x and z2 are independent given z1). Like the one-layer model the family has no
exact posterior or likelihood: it answers through a guide passed as ``guide=`` that covers both
sites.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch.nn import functional as F

from pyro_lvm.models.dlgm import DeepLatentGaussian
from pyro_lvm.nets import MLP, flatten_examples

__all__ = ["HierarchicalDeepLatentGaussian"]


class HierarchicalDeepLatentGaussian(DeepLatentGaussian):
    """Two stochastic layers ``z2 -> z1 -> x``, with the face of :class:`~pyro_lvm.models.base.LatentVariableModel`.

    The part ``z1 -> x`` is a :class:`~pyro_lvm.models.DeepLatentGaussian` with ``z_dim = z1_dim``
    (its ``decoder``, ``likelihood_dist`` and ``output_bias_from_data``); the prior of ``z1`` is a
    second Gaussian layer.

    :param data_dim: D, values per example (784 for MNIST).
    :param z1_dim: size of the lower latent layer (100 in Burda et al.).
    :param z2_dim: size of the top latent layer (50).
    :param hidden_dims: hidden sizes of the network ``z1 -> x`` (200, 200).
    :param z_hidden_dims: hidden sizes of the network ``z2 -> (mu, sigma)`` of ``z1`` (100, 100);
        ``()`` makes ``mu`` and the raw scale affine in ``z2`` (the linear-Gaussian special case
        when the raw scale's weights are zero).
    :param activation, likelihood, output_bias: as in :class:`~pyro_lvm.models.DeepLatentGaussian`.

    Sites: ``z2`` (latent, event shape (z2_dim,)), ``z1`` (latent, (z1_dim,)) and ``x`` (observed,
    (D,)), all in the plate ``"data"`` at dim -1. Every network takes any leading sample dims.
    """

    max_plate_nesting = 1
    latent_sites = ("z1", "z2")

    def __init__(
        self,
        data_dim: int,
        z1_dim: int = 100,
        z2_dim: int = 50,
        hidden_dims: Sequence[int] = (200, 200),
        z_hidden_dims: Sequence[int] = (100, 100),
        activation: str = "tanh",
        likelihood: str = "bernoulli",
        output_bias: torch.Tensor | None = None,
    ) -> None:
        super().__init__(data_dim, z1_dim, hidden_dims, activation, likelihood, output_bias)
        if z2_dim < 1:
            raise ValueError(f"z2_dim must be >= 1, got {z2_dim}")
        self.z1_dim, self.z2_dim = z1_dim, z2_dim
        self.z1_network = MLP(z2_dim, z_hidden_dims, 2 * z1_dim, activation)

    @property
    def latent_size(self) -> int:
        """Both layers together: ``z1_dim + z2_dim``."""
        return self.z1_dim + self.z2_dim

    def prior(self, device: torch.device | None = None) -> dist.Distribution:
        """``p(z2) = N(0, I)``, event shape (z2_dim,)."""
        zeros = torch.zeros(self.z2_dim, device=device, dtype=self.decoder.output_layer.weight.dtype)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def z1_dist(self, z2: torch.Tensor) -> dist.Distribution:
        """``p(z1 | z2)`` for z2 of shape (..., z2_dim): batch shape (...), event shape (z1_dim,)."""
        loc, raw_scale = self.z1_network(z2).chunk(2, dim=-1)
        return dist.Normal(loc, F.softplus(raw_scale) + 1e-4).to_event(1)

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The generative story for a batch ``x`` (N, D) or (N, ...) with D values each.

        ``index`` (N,) is ignored, as in :meth:`DeepLatentGaussian.forward`.

        :returns: ``(z1, z2)``, (N, z1_dim) and (N, z2_dim).
        """
        x = flatten_examples(x, self.data_dim)
        with pyro.plate("data", x.shape[0], dim=-1):
            z2 = pyro.sample("z2", self.prior(x.device))
            z1 = pyro.sample("z1", self.z1_dist(z2))
            pyro.sample("x", self.likelihood_dist(z1), obs=x)
        return z1, z2

    def guide(self, *data: Any, **kwargs: Any) -> NoReturn:
        """None of its own: ``z1`` and ``z2`` are continuous, so build ``q(z1 | x) q(z2 | z1)`` from :mod:`pyro_lvm.guides`."""
        raise self.cannot("guide", "z1 and z2 are continuous; build q(z1 | x) q(z2 | z1) from pyro_lvm.guides "
                                   "(a LatentGuide of two AmortizedSites, the second reading 'z1')")

    @torch.no_grad()
    def posterior(
        self, x: torch.Tensor, index: torch.Tensor | None = None, *, guide: Callable | None = None, site: str = "z1"
    ) -> dist.Distribution:
        """The guide's distribution at ``site``: ``q(z1 | x)`` (batch shape (N,), event shape (z1_dim,)),
        or for ``site="z2"`` ``q(z2 | z1)`` at one draw ``z1 ~ q(z1 | x)``.
        """
        if site not in self.latent_sites:
            raise ValueError(f"site must be one of {self.latent_sites}, got {site!r}")
        data = self._data("posterior", guide, x, index)
        with poutine.block():
            return poutine.trace(guide).get_trace(*data).nodes[site]["fn"]

    @torch.no_grad()
    def map_latents(self, x: torch.Tensor, index: torch.Tensor | None = None, *, guide: Callable | None = None) -> torch.Tensor:
        """The guide's modes, layer by layer: ``z1* = mode q(z1 | x)``, ``z2* = mode q(z2 | z1*)``;
        (N, z1_dim + z2_dim), ``z1*`` first.

        :raises NotAnswerable: for a guide whose distribution has no closed-form mode (a flow).
        """
        data = self._data("map_latents", guide, x, index)
        modes: dict[str, torch.Tensor] = {}
        for site in self.latent_sites:  # z1 first: q(z2 | z1) is read at z1's mode
            with poutine.block():
                q = poutine.trace(poutine.condition(guide, data=modes)).get_trace(*data).nodes[site]["fn"]
            try:
                modes[site] = q.v if isinstance(q, dist.Delta) else q.mode
            except NotImplementedError:
                raise self.cannot("map_latents", f"the guide's {type(q).__name__} at {site!r} has no closed-form mode") from None
        return torch.cat([modes["z1"], modes["z2"]], dim=-1)

    @torch.no_grad()
    def sample(
        self, num_samples: int, return_latents: bool = False, mean: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Ancestral draws ``z2 ~ N(0, I)``, ``z1 ~ p(z1 | z2)``, ``x ~ p(x | z1)``: (num_samples, D), and with
        ``return_latents`` the latents ``cat(z1, z2)`` (num_samples, z1_dim + z2_dim).

        :param mean: give the means of ``p(x | z1)`` instead of draws.
        """
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        z2 = self.prior(self.decoder.output_layer.weight.device).sample((num_samples,))
        z1 = self.z1_dist(z2).sample()
        px = self.likelihood_dist(z1)
        x = px.mean if mean else px.sample()
        return (x, torch.cat([z1, z2], dim=-1)) if return_latents else x
