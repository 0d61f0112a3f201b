"""Guide families by name, for scripts and benchmarks (``--guide NAME``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyro_lvm.guides.amortized import AmortizedGuide, AmortizedNormal
from pyro_lvm.guides.delta import AmortizedDelta
from pyro_lvm.guides.flow import AmortizedIAF
from pyro_lvm.guides.local import LocalGuide
from pyro_lvm.guides.lowrank import AmortizedLowRankNormal
from pyro_lvm.guides.mvn import AmortizedMultivariateNormal
from pyro_lvm.guides.semi_amortized import SemiAmortized

__all__ = ["GUIDE_FAMILIES", "NEEDS", "make_guide"]

_SITE_KEYS = ("site", "obs_arg", "plate", "plate_dim")


def _local(input_dim: int, latent_dim: int, num_examples: int | None = None, init_scale: float = 0.1,
           index_arg: int | str = 1, **site_kwargs) -> LocalGuide:
    """Diagonal-Gaussian rows per training example (non-amortized SVI); needs ``num_examples``."""
    if num_examples is None:
        raise ValueError("guide 'local' needs num_examples (the number of training examples, one row each)")
    site_kwargs = {k: v for k, v in site_kwargs.items() if k in _SITE_KEYS}  # no encoder: its options do not apply
    template = AmortizedNormal(input_dim, latent_dim, hidden_dims=(), **site_kwargs)  # only its distribution_from is used
    return LocalGuide.initial(template, num_examples, init_scale, index_arg=index_arg)


def _semi(input_dim: int, latent_dim: int, model: Callable | None = None, refine_steps: int = 5,
          refine_lr: float = 1e-2, **encoder_kwargs) -> SemiAmortized:
    """A diagonal-Gaussian encoder refined by ``refine_steps`` SGD steps; needs ``model``."""
    if model is None:
        raise ValueError("guide 'semi' needs model= (the model callable whose per-example ELBO it refines)")
    return SemiAmortized(AmortizedNormal(input_dim, latent_dim, **encoder_kwargs), model, refine_steps, refine_lr)


#: Guide family name -> callable ``(input_dim, latent_dim, **options)`` returning the guide.
GUIDE_FAMILIES: dict[str, Callable[..., AmortizedGuide | LocalGuide]] = {
    "delta": AmortizedDelta,
    "iaf": AmortizedIAF,
    "local": _local,
    "lowrank": AmortizedLowRankNormal,
    "mvn": AmortizedMultivariateNormal,
    "normal": AmortizedNormal,
    "semi": _semi,
}

#: The options each family requires beyond the encoder's (``local`` its table size, ``semi`` the model).
NEEDS: dict[str, tuple[str, ...]] = {"local": ("num_examples",), "semi": ("model",)}


def make_guide(name: str, input_dim: int, latent_dim: int, **options: Any) -> AmortizedGuide | LocalGuide:
    """Build the guide family ``name`` (see :data:`GUIDE_FAMILIES`; :data:`NEEDS` lists required options).

    ``local`` is called with the example ids: ``guide(x, index)`` (the model takes them too).
    """
    try:
        family = GUIDE_FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown guide {name!r}; valid guide families: {sorted(GUIDE_FAMILIES)}") from None
    return family(input_dim, latent_dim, **options)
