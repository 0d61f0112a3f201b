"""Deep latent Gaussian model (the VAE's generative story).

``z_n ~ N(0, I)``, ``x_n | z_n ~ Bernoulli(logits = f(z_n))`` for binary images, or
``Normal(f(z_n), sigma)`` with a learned per-dimension ``sigma`` for real-valued data;
``f`` is an MLP decoder.
"""

from __future__ import annotations

from typing import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch.nn import functional as F

from pyro_lvm.nets import MLP, flatten_examples

__all__ = ["DeepLatentGaussian"]


class DeepLatentGaussian(PyroModule):
    """The deep latent Gaussian model as a PyroModule with a ``.model(x)`` method.

    :param data_dim: D, values per example (784 for MNIST).
    :param z_dim: latent dimension.
    :param hidden_dims: decoder hidden layer sizes (Burda et al. use (200, 200) with tanh).
    :param activation: activation name (see :func:`pyro_lvm.nets.activation`).
    :param likelihood: ``"bernoulli"`` (x in {0, 1}) or ``"gaussian"``.
    :param output_bias: optional (D,) initial output bias, e.g. from
        :meth:`output_bias_from_data` (the logit of the training mean for Bernoulli).

    Sites: ``z`` (latent, event shape (z_dim,)) and ``x`` (observed, event shape (D,)),
    both in the plate ``"data"`` at dim -1.
    """

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
        zeros = torch.zeros(self.z_dim, device=device)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def likelihood_dist(self, z: torch.Tensor) -> dist.Distribution:
        """``p(x | z)`` for z of shape (..., z_dim): batch shape (...), event shape (D,)."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out).to_event(1)
        return dist.Normal(out, F.softplus(self.raw_scale) + 1e-4).to_event(1)

    def model(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """The generative story for a batch ``x`` of shape (N, D) or (N, ...) with D values each.

        Runs through ``PyroModule.__call__`` so that the decoder's parameters (and ``raw_scale``)
        become ``pyro.param`` sites that SVI trains; calling the story outside it would leave them frozen.

        ``index`` (N,), the examples' ids, is ignored by the model: it is there so that a
        non-amortized guide (:class:`~pyro_lvm.guides.LocalGuide`), which takes the model's
        arguments, finds each example's parameters: ``train(model.model, guide, (x, ids))``.
        """
        return self(x, index)

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Same as :meth:`model`."""
        x = flatten_examples(x, self.data_dim)
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", self.prior(x.device))
            pyro.sample("x", self.likelihood_dist(z), obs=x)
        return z

    @torch.no_grad()
    def sample(self, num_samples: int, mean: bool = True) -> torch.Tensor:
        """Draw images from the model: (num_samples, D) means of ``p(x | z)`` (or samples if ``mean=False``)."""
        device = self.decoder.output_layer.weight.device
        z = self.prior(device).sample((num_samples,))
        px = self.likelihood_dist(z)
        return px.mean if mean else px.sample()
