"""Amortized guides: an encoder maps each example's inputs to the parameters of ``q(z_n | inputs_n)``.

:class:`AmortizedSite` is one latent site: an encoder (any :class:`torch.nn.Module`, default
:class:`~pyro_lvm.guides.encoders.MLPEncoder`) reads the site's inputs and returns features
(..., N, F); the site's output layer maps them to the head's parameters (..., N, P); the head
(:mod:`~pyro_lvm.guides.heads`) turns those into ``q``. :class:`AmortizedGuide` is a guide of one
such site, the base of the named families (:class:`AmortizedNormal` here; ``mvn``, ``lowrank``,
``iaf``, ``delta`` in their modules), which build the same networks they always did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyro.distributions as dist
import torch
from torch import nn

from pyro_lvm.guides.encoders import MLPEncoder
from pyro_lvm.guides.guide import GuideCall, SingleSiteGuide
from pyro_lvm.guides.heads import Head, NormalHead

__all__ = ["AmortizedGuide", "AmortizedNormal", "AmortizedSite", "EncoderNetwork"]


class AmortizedSite(nn.Module):
    """The latent site ``site`` with ``q(z_n | inputs_n) = head(output_layer(encoder(*inputs_n)))``.

    :param site: the model's latent sample site.
    :param head: the family (:class:`~pyro_lvm.guides.heads.Head`).
    :param encoder: a module called with the inputs as separate arguments, each ``(..., N, *event)``,
        returning features (..., N, F); default an MLP over the inputs' flattened values.
    :param inputs: what the encoder reads: model argument names or positions, or earlier sites' names.
    :param feature_dim: F (default the encoder's ``feature_dim`` attribute).
    :param input_dims: values per example of each input (the default encoder needs them).
    :param hidden_dims: the default encoder's hidden widths; ``activation`` their activation.
    :raises ValueError: when F is unknown, or the encoder's ``feature_dim`` differs from the given one.
    """

    def __init__(self, site: str, head: Head, encoder: nn.Module | None = None, inputs: Sequence[str | int] = (0,),
                 feature_dim: int | None = None, input_dims: Sequence[int] | None = None,
                 hidden_dims: Sequence[int] = (200, 200), activation: str = "tanh") -> None:
        super().__init__()
        self.name, self.inputs = site, tuple(inputs)
        if not self.inputs:
            raise ValueError(f"site {site!r} needs at least one input (a model argument or an earlier site)")
        if encoder is None:
            if input_dims is None or len(input_dims) != len(self.inputs):
                raise ValueError(f"the default encoder of site {site!r} needs input_dims, the values per example of "
                                 f"each of its inputs {list(self.inputs)}, got {input_dims!r}")
            encoder = MLPEncoder(input_dims, hidden_dims, activation, names=[f"observed argument {k!r}" for k in self.inputs])
        own = getattr(encoder, "feature_dim", None)
        if feature_dim is None and own is None:
            raise ValueError(f"give feature_dim, the size F of the features (..., N, F) the encoder of site {site!r} returns")
        if feature_dim is not None and own is not None and own != feature_dim:
            raise ValueError(f"the encoder of site {site!r} returns {own} features (its feature_dim) but feature_dim={feature_dim}")
        self.feature_dim = int(feature_dim if feature_dim is not None else own)
        self.encoder = encoder
        self.output_layer = nn.Linear(self.feature_dim, head.num_params)
        self.head = head

    def features(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The encoder's features (..., N, F).

        :raises ValueError: when the encoder returns another size than the output layer takes, naming both.
        """
        h = self.encoder(*inputs)
        if h.shape[-1:] != (self.feature_dim,):
            raise ValueError(f"the encoder of site {self.name!r} returns features of shape {tuple(h.shape)} (size "
                             f"{h.shape[-1] if h.dim() else None}) but the {type(self.head).__name__} family's input layer "
                             f"takes {self.feature_dim} features (feature_dim)")
        return h

    def params(self, inputs: tuple[torch.Tensor, ...], call: GuideCall | None = None) -> dict[str, torch.Tensor]:
        """The head's parameters, name -> (..., N, size), for the inputs (each ``(..., N, *event)``)."""
        return self.head.split(self.output_layer(self.features(*inputs)))


class EncoderNetwork(nn.Module):
    """A site's encoder and output layer as one network: inputs -> parameters (..., N, P), laid out side by side."""

    def __init__(self, site: AmortizedSite) -> None:
        super().__init__()
        self.features, self.output_layer = site.encoder, site.output_layer
        self._site = (site,)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self._site[0].features(*inputs))


class AmortizedGuide(SingleSiteGuide):
    """A guide of one amortized latent site (the named encoder families are its subclasses).

    :param head: the family.
    :param input_dim: values per example of the input (a sequence: of each input), for the default encoder.
    :param encoder: a user encoder instead (see :class:`AmortizedSite`); ``feature_dim`` its output size.
    :param inputs: the model arguments (names or positions) the encoder reads; default ``(obs_arg,)``.
    :param obs_arg: the one observed argument of the old single-input form (position or keyword).
    :param site: the latent site's name. ``model``, ``plate``, ``plate_dim``: see :class:`~pyro_lvm.guides.guide.LatentGuide`.
    """

    def __init__(self, head: Head, input_dim: int | Sequence[int] | None = None, *, encoder: nn.Module | None = None,
                 inputs: Sequence[str | int] | None = None, obs_arg: int | str = 0, site: str = "z",
                 feature_dim: int | None = None, hidden_dims: Sequence[int] = (200, 200), activation: str = "tanh",
                 model: Callable | None = None, plate: str | None = "data", plate_dim: int = -1) -> None:
        inputs = tuple(inputs) if inputs is not None else (obs_arg,)
        input_dims = None
        if encoder is None:
            input_dims = (input_dim,) if isinstance(input_dim, int) else input_dim
            if input_dims is None or not all(isinstance(d, int) and d >= 1 for d in input_dims):
                raise ValueError(f"input_dim and latent_dim must be >= 1, got {input_dim} and {head.latent_dim}")
        amortized = AmortizedSite(site, head, encoder, inputs, feature_dim, input_dims, hidden_dims, activation)
        super().__init__([amortized], model=model, plate=plate, plate_dim=plate_dim)
        self.input_dim = input_dim
        self._network = (EncoderNetwork(amortized),)

    @property
    def obs_arg(self) -> str | int:
        return self.sites[0].inputs[0]

    @property
    def encoder(self) -> EncoderNetwork:
        """The whole network from the inputs to the parameters (the site's encoder and output layer)."""
        return self._network[0]

    def local_params(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The per-example parameters for the inputs, in the head's order, each (..., N, size)."""
        return tuple(self.sites[0].params(inputs).values())

    def distribution(self, *inputs: torch.Tensor) -> dist.Distribution:
        """``q(z | inputs)``: batch shape (..., N), event shape (latent_dim,)."""
        return self.head.distribution(dict(zip(self.head.param_sizes(), self.local_params(*inputs))))


class AmortizedNormal(AmortizedGuide):
    """Diagonal Gaussian encoder: ``q(z | x) = N(mu(x), diag(sigma(x)^2))`` (:class:`~pyro_lvm.guides.heads.NormalHead`).

    :param input_dim: values per example of the observed argument; ``latent_dim`` the latent's size.
    :param hidden_dims: encoder hidden layer sizes; ``activation`` their activation.

    Other options as in :class:`AmortizedGuide` (``site``, ``obs_arg``, ``inputs``, ``encoder``, ``model``, ``plate``).
    """

    def __init__(self, input_dim: int | Sequence[int] | None, latent_dim: int, hidden_dims: Sequence[int] = (200, 200),
                 activation: str = "tanh", **options: Any) -> None:
        super().__init__(NormalHead(latent_dim), input_dim, hidden_dims=hidden_dims, activation=activation, **options)
