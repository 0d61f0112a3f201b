"""A guide over several latent sites of one story: the sites in order, inside the data plate opened once.

:class:`LatentGuide` is called with the model's arguments. It opens the data plate once (or
none, ``plate=None``, inside the user's own plate) and samples its sites in order; each site
(:class:`~pyro_lvm.guides.amortized.AmortizedSite`, :class:`~pyro_lvm.guides.local.LocalSite`,
:class:`~pyro_lvm.guides.semi_amortized.SemiAmortizedSite`) reads model arguments, by name or
position, and the latents sampled before it, so ``q(z1 | x) q(z2 | z1, x)`` is two sites::

    guide = LatentGuide([AmortizedSite("z1", NormalHead(100), inputs=("x",), input_dims=(784,)),
                         AmortizedSite("z2", NormalHead(50), inputs=("z1",), input_dims=(100,))], model=model)

A site's head turns its parameters into ``q``; latents keep their leading sample or enumeration
dims, so a later site's encoder sees them too. Whether the guide covers exactly the model's latent
sites is checked by :func:`~pyro_lvm.guides.check.check_guide_sites` (``train`` and the evaluators call it).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.distributions import Distribution
from pyro.nn import PyroModule
from torch import nn

__all__ = ["GuideCall", "LatentGuide", "SingleSiteGuide"]

_MISSING = object()


@dataclass
class GuideCall:
    """One call of a :class:`LatentGuide`: its arguments, and whether semi-amortized sites refine."""

    guide: LatentGuide
    args: tuple
    kwargs: dict
    refine: bool = True

    def argument(self, key: str | int, default: Any = _MISSING) -> Any:
        """The model argument ``key`` (a name or a position) of this call; ``default`` when the call lacks it."""
        return self.guide.argument(key, self.args, self.kwargs, default)


class LatentGuide(PyroModule):
    """``q(z_1, ..., z_K | args) = prod_k q(z_k | inputs of site k)``, sampled in order inside the data plate.

    :param sites: the sites, in the order the story needs; each has ``name``, ``head``, ``inputs``
        (model argument names or positions, or names of earlier sites) and
        ``params(inputs, call) -> dict``.
    :param model: the model callable; when given, argument names are bound to positions through
        its signature (a module's: that of its ``forward``), and each name a site reads is checked against it.
    :param plate: the data plate's name (None: open no plate, for use inside the user's own);
        ``plate_dim`` its dim.
    :param examples: the model argument whose first dim counts the examples (the plate's size);
        default the first model argument a site reads, else position 0.
    :raises ValueError: a site covered twice; a site reading a name that is neither an earlier site
        nor (when ``model`` is given) a parameter of the model, naming both.
    """

    def __init__(self, sites: Sequence[nn.Module], model: Callable | None = None, plate: str | None = "data",
                 plate_dim: int = -1, examples: str | int | None = None) -> None:
        super().__init__()
        sites = list(sites)
        if not sites:
            raise ValueError("a LatentGuide needs at least one site")
        self._signature = _parameter_names(model)
        earlier: list[str] = []
        for site in sites:
            if site.name in earlier:
                raise ValueError(f"site {site.name!r} is covered twice in this guide (sites {[s.name for s in sites]}); "
                                 f"give each latent site one family")
            for key in site.inputs:
                self._check_input(site.name, key, earlier)
            earlier.append(site.name)
        self.sites = nn.ModuleList(sites)
        self.plate, self.plate_dim = plate, plate_dim
        model_inputs = [k for s in sites for k in s.inputs if k not in earlier]
        self.examples = examples if examples is not None else (model_inputs[0] if model_inputs else 0)

    def _check_input(self, site: str, key: str | int, earlier: list[str]) -> None:
        if isinstance(key, str) and key not in earlier and self._signature is not None and key not in self._signature:
            raise ValueError(f"site {site!r} reads {key!r}, which is neither an earlier latent site {earlier} nor an "
                             f"argument of the model call; the model's parameters are {self._signature}")

    @property
    def site_names(self) -> list[str]:
        return [s.name for s in self.sites]

    @property
    def is_bound(self) -> bool:
        """False when a site is a point mass: the ELBO is then the hard ELBO, not a bound on log p(x)."""
        return all(getattr(s.head, "is_bound", True) for s in self.sites)

    def argument(self, key: str | int, args: tuple, kwargs: dict, default: Any = _MISSING) -> Any:
        """The model argument ``key`` of the call ``(args, kwargs)``: a keyword, or a position (bound by name
        through the model's signature when the guide has one).

        :raises ValueError: when the call lacks it and no ``default`` is given, naming what the call had.
        """
        if isinstance(key, str):
            if key in kwargs:
                return kwargs[key]
            if self._signature is not None and key in self._signature:
                position = self._signature.index(key)
                if position < len(args):
                    return args[position]
        elif key < len(args):
            return args[key]
        if default is not _MISSING:
            return default
        bound = "" if self._signature is None else f" (the model's parameters are {self._signature})"
        raise ValueError(f"the guide reads argument {key!r}, but the call had {len(args)} positional arguments and "
                         f"keywords {sorted(kwargs)}{bound}; pass model= to bind names to positions")

    def observed(self, key: str | int, args: tuple, kwargs: dict) -> torch.Tensor:
        """The model argument ``key`` as a tensor of examples (N, ...); an empty one is a ValueError naming it."""
        x = self.argument(key, args, kwargs)
        if torch.is_tensor(x) and x.dim() >= 1 and x.shape[0] == 0:
            raise ValueError(f"observed argument {key!r} has no examples (shape {tuple(x.shape)}); expected at least one example")
        return x

    def plate_size(self, args: tuple, kwargs: dict) -> int:
        """N, the size of the data plate: the first dim of the argument ``examples``."""
        x = self.observed(self.examples, args, kwargs)
        return int(x.shape[0]) if torch.is_tensor(x) and x.dim() else 1

    def inputs_of(self, site: nn.Module, values: dict[str, torch.Tensor], call: GuideCall) -> tuple[torch.Tensor, ...]:
        """What ``site`` reads: earlier latents from ``values``, model arguments from the call."""
        return tuple(values[k] if k in values else self.observed(k, call.args, call.kwargs) for k in site.inputs)

    def sample_sites(self, args: tuple, kwargs: dict, overrides: dict[str, dict[str, torch.Tensor]] | None = None,
                     refine: bool = True, record: dict | None = None) -> dict[str, torch.Tensor]:
        """Sample every site in order; returns name -> value.

        The parameters of the sites that read only model arguments are computed first, outside the
        plate; a site reading earlier latents gets its parameters inside, after those latents.

        :param overrides: site name -> parameters to use instead of the site's own (per-example optimization).
        :param refine: False: semi-amortized sites skip their refinement.
        :param record: if given, filled with site name -> the parameters each site used.
        """
        call = GuideCall(self, args, kwargs, refine)
        values: dict[str, torch.Tensor] = {}
        given = dict(overrides or {})
        for site in self.sites:  # outside the plate: a semi-amortized site's refinement runs the model, which opens it
            if site.name not in given and not any(k in self.site_names for k in site.inputs):
                given[site.name] = site.params(self.inputs_of(site, values, call), call)
        plate = (contextlib.nullcontext() if self.plate is None
                 else pyro.plate(self.plate, self.plate_size(args, kwargs), dim=self.plate_dim))
        with plate:
            for site in self.sites:
                params = given[site.name] if site.name in given else site.params(self.inputs_of(site, values, call), call)
                if record is not None:
                    record[site.name] = params
                values[site.name] = pyro.sample(site.name, site.head.distribution(params))
        return values

    def site_params(self, *args: Any, **kwargs: Any) -> dict[str, dict[str, torch.Tensor]]:
        """Each site's parameters for this call (one draw of the guide, nothing recorded by Pyro):
        site name -> name -> (N, size) for sites that read only model arguments."""
        record: dict = {}
        with poutine.block():
            self.sample_sites(args, kwargs, record=record)
        return record

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Sample the sites for the model call ``(*args, **kwargs)``; returns the last site's value."""
        return self.sample_sites(args, kwargs)[self.sites[-1].name]


class SingleSiteGuide(LatentGuide):
    """A guide of one latent site (the families of ``make_guide``): names for its site, head and parameters."""

    @property
    def site(self) -> str:
        """The name of the latent site."""
        return self.sites[0].name

    @property
    def head(self) -> nn.Module:
        return self.sites[0].head

    @property
    def latent_dim(self) -> int:
        return self.head.latent_dim

    def distribution_from(self, params: Sequence[torch.Tensor]) -> Distribution:
        """``q`` from parameter tensors in the head's order (each (..., size)): batch shape (...)."""
        return self.head.distribution(dict(zip(self.head.param_sizes(), params)))


def _parameter_names(model: Callable | None) -> list[str] | None:
    """The names of ``model``'s parameters in order (None without a model or a signature); for a module
    (a ``PyroModule`` story, called as ``module(*args)``) or an alias ``module.model(*args, **kwargs)``
    of its story, those of its ``forward``."""
    if model is None:
        return None
    if not callable(model):
        raise ValueError(f"model must be the model callable, got {type(model).__name__}")
    try:
        parameters = inspect.signature(model.forward if isinstance(model, nn.Module) else model).parameters
        if all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters.values()):  # an alias, e.g. module.model
            owner = getattr(model, "__self__", None)
            if isinstance(owner, nn.Module):
                parameters = inspect.signature(owner.forward).parameters
        return [name for name, p in parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    except (TypeError, ValueError):
        return None
