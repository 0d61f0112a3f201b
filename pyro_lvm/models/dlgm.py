"""Deep latent Gaussian model (the VAE's generative story).

``z_n ~ N(0, I)``, ``x_n | z_n ~ Bernoulli(logits = f(z_n))`` for binary images, or
``Normal(f(z_n), sigma)`` with a learned per-dimension ``sigma`` for real-valued data;
``f`` is an MLP decoder.

``z`` is continuous, so the family has no exact posterior, MAP or likelihood: it answers them
through a guide passed as ``guide=`` (a family from :mod:`pyro_lvm.guides`), and has no guide of
its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch.nn import functional as F

from pyro_lvm.distributions.bernoulli import IndependentBernoulli
from pyro_lvm.infer import importance_log_likelihood
from pyro_lvm.models.base import LatentVariableModel
from pyro_lvm.nets import MLP, flatten_examples

__all__ = ["DeepLatentGaussian"]


class DeepLatentGaussian(LatentVariableModel):
    """The deep latent Gaussian model, with the face of :class:`~pyro_lvm.models.base.LatentVariableModel`.

    :param data_dim: D, values per example (784 for MNIST).
    :param z_dim: latent dimension (``latent_size``).
    :param hidden_dims: decoder hidden layer sizes (Burda et al. use (200, 200) with tanh).
    :param activation: activation name (see :func:`pyro_lvm.nets.activation`).
    :param likelihood: ``"bernoulli"`` (x in {0, 1}) or ``"gaussian"``.
    :param output_bias: optional (D,) initial output bias, e.g. from
        :meth:`output_bias_from_data` (the logit of the training mean for Bernoulli).

    Sites: ``z`` (latent, event shape (z_dim,)) and ``x`` (observed, event shape (D,)),
    both in the plate ``"data"`` at dim -1.
    """

    max_plate_nesting = 1
    latent_sites = ("z",)

    def __init__(
        self,
        data_dim: int,
        z_dim: int = 50,
        hidden_dims: Sequence[int] = (200, 200),
        activation: str = "tanh",
        likelihood: str = "bernoulli",
        output_bias: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        if data_dim < 1 or z_dim < 1:
            raise ValueError(f"data_dim and z_dim must be >= 1, got {data_dim} and {z_dim}")
        self.data_dim, self.z_dim, self.likelihood = data_dim, z_dim, likelihood
        self.decoder = MLP(z_dim, hidden_dims, data_dim, activation)
        if output_bias is not None:
            if output_bias.shape != (data_dim,):
                raise ValueError(f"output_bias must have shape ({data_dim},), got {tuple(output_bias.shape)}")
            with torch.no_grad():
                self.decoder.output_layer.bias.copy_(output_bias)
        if likelihood == "gaussian":
            self.raw_scale = torch.nn.Parameter(torch.zeros(data_dim))

    @staticmethod
    def output_bias_from_data(x: torch.Tensor, likelihood: str = "bernoulli", eps: float = 1e-3) -> torch.Tensor:
        """Initial output bias from training data (N, ...): logit of the mean (Bernoulli) or the mean."""
        mean = x.reshape(x.shape[0], -1).float().mean(0)
        return torch.logit(mean.clamp(eps, 1 - eps)) if likelihood == "bernoulli" else mean

    def prior(self, device: torch.device | None = None) -> dist.Distribution:
        """``p(z) = N(0, I)``, event shape (z_dim,)."""
        zeros = torch.zeros(self.z_dim, device=device, dtype=self.decoder.output_layer.weight.dtype)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def likelihood_dist(self, z: torch.Tensor) -> dist.Distribution:
        """``p(x | z)`` for z of shape (..., z_dim): batch shape (...), event shape (D,)."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            return IndependentBernoulli(out)
        return dist.Normal(out, F.softplus(self.raw_scale) + 1e-4).to_event(1)

    @property
    def latent_size(self) -> int:
        """The latent dimension ``z_dim``."""
        return self.z_dim

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """The generative story for a batch ``x`` of shape (N, D) or (N, ...) with D values each.

        Call it through the module (``model(x)`` or ``model.model(x)``): ``PyroModule.__call__`` makes
        the decoder's parameters (and ``raw_scale``) ``pyro.param`` sites that SVI trains.

        ``index`` (N,), the examples' ids, is ignored by the model: it is there so that a
        non-amortized guide (:class:`~pyro_lvm.guides.LocalGuide`), which takes the model's
        arguments, finds each example's parameters: ``train(model.model, guide, (x, ids))``.

        :returns: ``z`` (N, z_dim).
        """
        x = flatten_examples(x, self.data_dim)
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", self.prior(x.device))
            pyro.sample("x", self.likelihood_dist(z), obs=x)
        return z

    def guide(self, *data: Any, **kwargs: Any) -> NoReturn:
        """None of its own: ``z`` is continuous, so pick a family from :mod:`pyro_lvm.guides`."""
        raise self.cannot("guide", "z is continuous; pick a guide family from pyro_lvm.guides (e.g. make_guide('normal', D, z_dim))")

    def _data(self, question: str, guide: Callable | None, x: torch.Tensor, index: torch.Tensor | None) -> tuple:
        """The story's arguments for ``guide`` (``index`` only where given); refuses a missing guide."""
        if guide is None:
            why = "z is continuous and p(z | x) has no closed form; pass guide=q, a guide from pyro_lvm.guides"
            raise self.cannot(f"{question} without a guide", why)
        return (x,) if index is None else (x, index)

    @torch.no_grad()
    def posterior(self, x: torch.Tensor, index: torch.Tensor | None = None, *, guide: Callable | None = None) -> dist.Distribution:
        """The guide's approximation ``q(z | x)`` of the posterior: batch shape (N,), event shape (z_dim,).

        :param guide: a guide of this model (same arguments ``(x, index)``) with the latent site ``"z"``.
        """
        data = self._data("posterior", guide, x, index)
        with poutine.block():
            return poutine.trace(guide).get_trace(*data).nodes["z"]["fn"]

    @torch.no_grad()
    def map_latents(self, x: torch.Tensor, index: torch.Tensor | None = None, *, guide: Callable | None = None) -> torch.Tensor:
        """The mode of ``q(z | x)``, (N, z_dim): the approximate MAP ``z`` (the mean, for the Gaussian families).

        For a point (Delta) guide it is the point.

        :raises NotAnswerable: for a guide whose distribution has no closed-form mode (a flow).
        """
        self._data("map_latents", guide, x, index)
        q = self.posterior(x, index, guide=guide)
        if isinstance(q, dist.Delta):  # a point guide: its point
            return q.v
        try:
            return q.mode
        except NotImplementedError:
            raise self.cannot("map_latents", f"the guide's {type(q).__name__} has no closed-form mode") from None

    @torch.no_grad()
    def log_likelihood(
        self,
        x: torch.Tensor,
        index: torch.Tensor | None = None,
        *,
        guide: Callable | None = None,
        num_samples: int = 1000,
        chunk_size: int = 100,
    ) -> torch.Tensor:
        """``log p(x_n)`` per example, (N,) nats, importance-sampled with the guide as proposal.

        See :func:`~pyro_lvm.infer.importance_log_likelihood` (``num_samples`` draws per example,
        ``chunk_size`` at a time) for what the guide must be and the errors.
        """
        data = self._data("log_likelihood", guide, x, index)
        return importance_log_likelihood(self.model, guide, *data, num_samples=num_samples, chunk_size=chunk_size)

    @torch.no_grad()
    def sample(
        self, num_samples: int, return_latents: bool = False, mean: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Draws ``x ~ p(x | z), z ~ N(0, I)``: (num_samples, D), and ``z`` (num_samples, z_dim) with ``return_latents``.

        :param mean: give the means of ``p(x | z)`` instead of draws (the usual image grid).
        """
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        device = self.decoder.output_layer.weight.device
        z = self.prior(device).sample((num_samples,))
        px = self.likelihood_dist(z)
        x = px.mean if mean else px.sample()
        return (x, z) if return_latents else x
