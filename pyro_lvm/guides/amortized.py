"""Amortized guides: an encoder network maps each example to ``q(z_n | x_n)``.

A guide here is not tied to one model: it names the latent site it covers
(``site``), which argument of the model call is the observation (``obs_arg``), and
the data plate (``plate``, ``plate_dim``). Subclasses say which per-example
variational parameters the encoder outputs (:meth:`AmortizedGuide.local_params`)
and which distribution they parameterize (:meth:`AmortizedGuide.distribution_from`);
the split lets the same family be used non-amortized (per-example parameters,
:class:`~pyro_lvm.guides.LocalGuide`) or refined per example
(:class:`~pyro_lvm.guides.SemiAmortized`, the amortization gap).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch.nn import functional as F

from pyro_lvm.nets import MLP, flatten_examples

__all__ = ["AmortizedGuide", "AmortizedNormal"]


class AmortizedGuide(PyroModule):
    """Base class of the encoder guide families.

    A subclass implements :meth:`local_params` (the encoder: x (N, input_dim) -> per-example
    parameter tensors with N rows) and :meth:`distribution_from` (those rows -> ``q``, batch
    shape (N,), event shape (latent_dim,)), or overrides :meth:`distribution` directly (then it
    cannot be used per example or refined).

    :param input_dim: D, values per example of the observed argument (flattened).
    :param latent_dim: size of the latent site's event, shape (latent_dim,).
    :param site: name of the model's latent sample site this guide covers.
    :param obs_arg: which model argument is the observation: a position (int) or a keyword (str).
    :param plate: name of the model's data plate; ``plate_dim`` its dim.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int,
        site: str = "z",
        obs_arg: int | str = 0,
        plate: str = "data",
        plate_dim: int = -1,
    ) -> None:
        super().__init__()
        if input_dim < 1 or latent_dim < 1:
            raise ValueError(f"input_dim and latent_dim must be >= 1, got {input_dim} and {latent_dim}")
        self.input_dim, self.latent_dim = input_dim, latent_dim
        self.site, self.obs_arg, self.plate, self.plate_dim = site, obs_arg, plate, plate_dim

    def observed(self, args: tuple, kwargs: dict) -> torch.Tensor:
        """The observation among the model's arguments, flattened to (N, input_dim)."""
        try:
            x = kwargs[self.obs_arg] if isinstance(self.obs_arg, str) else args[self.obs_arg]
        except (KeyError, IndexError):
            raise ValueError(
                f"{type(self).__name__} reads the observation from argument {self.obs_arg!r}, but the call "
                f"had {len(args)} positional arguments and keywords {sorted(kwargs)}"
            ) from None
        return flatten_examples(x, self.input_dim, name=f"observed argument {self.obs_arg!r}")

    def local_params(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The encoder's per-example variational parameters for x (N, input_dim): tensors with N rows."""
        raise NotImplementedError

    def distribution_from(self, params: tuple[torch.Tensor, ...]) -> dist.Distribution:
        """``q(z)`` from per-example parameters with N rows: batch shape (N,), event shape (latent_dim,)."""
        raise NotImplementedError

    def distribution(self, x: torch.Tensor) -> dist.Distribution:
        """``q(z | x)`` for x of shape (N, input_dim): batch shape (N,), event shape (latent_dim,)."""
        return self.distribution_from(self.local_params(x))

    def sample_from(self, q: dist.Distribution, num_examples: int) -> torch.Tensor:
        """Sample the latent site from ``q`` (batch shape (N,)) inside the data plate."""
        with pyro.plate(self.plate, num_examples, dim=self.plate_dim):
            return pyro.sample(self.site, q)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        x = self.observed(args, kwargs)
        return self.sample_from(self.distribution(x), x.shape[0])


class AmortizedNormal(AmortizedGuide):
    """Diagonal Gaussian encoder: ``q(z | x) = N(mu(x), diag(sigma(x)^2))``.

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
        self.encoder = MLP(input_dim, hidden_dims, 2 * latent_dim, activation)

    def local_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc, raw_scale)``, each (N, latent_dim); the scale is ``softplus(raw_scale)``."""
        return tuple(self.encoder(x).chunk(2, dim=-1))

    def distribution_from(self, params: tuple[torch.Tensor, torch.Tensor]) -> dist.Distribution:
        loc, raw_scale = params
        return dist.Normal(loc, F.softplus(raw_scale) + 1e-5).to_event(1)
