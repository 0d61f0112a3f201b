"""The one face every model family shows: the base class to copy when adding a family.

A family is a :class:`~pyro.nn.PyroModule` whose ``forward`` is the generative story, so that
calling the module is how Pyro sees (and SVI trains) its parameters. Besides the story, every
family answers the same questions under the same names, and says so clearly when it cannot:

================================ ==============================================================
``forward(*data)``               the story: latent sample sites, observed sites with ``obs=``
                                 (``model`` is the same call, for Pyro's ``SVI(model, guide)``)
``guide(*data)``                 the family's own guide: empty where every latent is enumerated
``max_plate_nesting``            how many plates the story nests (for ``TraceEnum_ELBO``)
``latent_sites``                 the names of the story's latent sample sites
``latent_size``                  how big the latent is: the number of values a discrete latent
                                 takes (mixture components, segments, frame labels), the
                                 dimension of a continuous one (``z_dim``); 0 without latents
``posterior(*data)``             the posterior over the latents given the data, as a
                                 :class:`~torch.distributions.Distribution` (per-latent marginals
                                 where the joint is a chain)
``map_latents(*data)``           the most probable latents given the data
``sample(num_samples, *inputs)`` draws of the observed sites from the model (given the inputs
                                 of a conditional story); ``return_latents=True`` adds the latents
``log_likelihood(*data)``        ``log p(observed | inputs)`` per example, in nats
================================ ==============================================================

``data`` are the story's arguments, in the story's order. A family with continuous latents has
no exact posterior or likelihood: it takes ``guide=`` (a guide from :mod:`pyro_lvm.guides`) in
``posterior``, ``map_latents`` and ``log_likelihood``, which then answer through the guide
(importance sampling for the likelihood).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pyro.nn import PyroModule

__all__ = ["LatentVariableModel", "NotAnswerable"]


class NotAnswerable(NotImplementedError):
    """A model family was asked a question of the face that it cannot answer (the message says why)."""


class LatentVariableModel(PyroModule):
    """Base class of pyro_lvm's model families (see the module docstring for the face).

    A subclass sets the class attributes ``max_plate_nesting`` and ``latent_sites``, defines the
    property ``latent_size``, implements ``forward`` (the story) and every question it can answer. The questions it cannot answer
    raise :class:`NotAnswerable` naming the family and the reason, through :meth:`cannot`.
    """

    max_plate_nesting: ClassVar[int]
    latent_sites: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("max_plate_nesting", "latent_sites"):
            if not hasattr(cls, name):
                raise TypeError(f"{cls.__name__} must set the class attribute {name!r} (see pyro_lvm.models.base)")

    @property
    def latent_size(self) -> int:
        """Values a discrete latent takes, or the dimension of a continuous one; 0 for a family without latents."""
        raise NotImplementedError(f"{type(self).__name__} must define the property latent_size (see pyro_lvm.models.base)")

    def forward(self, *data: Any, **kwargs: Any) -> Any:
        """The generative story (each family documents its arguments, sites and plates)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward, its generative story")

    def model(self, *data: Any, **kwargs: Any) -> Any:
        """The story, called through the module so that Pyro sees its parameters: ``self(*data)``."""
        return self(*data, **kwargs)

    def guide(self, *data: Any, **kwargs: Any) -> None:
        """The empty guide: right when every latent site is enumerated (summed out exactly)."""

    def cannot(self, question: str, why: str) -> NotAnswerable:
        """The error for a question this family cannot answer: ``raise self.cannot("posterior", "...")``."""
        return NotAnswerable(f"{type(self).__name__} cannot answer {question}: {why}")

    def posterior(self, *data: Any, **kwargs: Any) -> torch.distributions.Distribution:
        """The posterior over the latents given the data."""
        raise self.cannot("posterior", "it does not implement it")

    def map_latents(self, *data: Any, **kwargs: Any) -> torch.Tensor:
        """The most probable latents given the data."""
        raise self.cannot("map_latents", "it does not implement it")

    def sample(self, num_samples: int, *inputs: Any, return_latents: bool = False, **kwargs: Any) -> Any:
        """Draws from the model: the observed sites (and the latents with ``return_latents=True``)."""
        raise self.cannot("sample", "it does not implement it")

    def log_likelihood(self, *data: Any, **kwargs: Any) -> torch.Tensor:
        """``log p(observed | inputs)`` per example, in nats."""
        raise self.cannot("log_likelihood", "it does not implement it")
