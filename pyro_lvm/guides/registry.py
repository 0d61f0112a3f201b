"""Guide families by name, for scripts and benchmarks (``--guide NAME``) and for stories of one latent site.

``make_guide(name, input_dim, latent_dim, **options)``: the encoder families ``normal``, ``mvn``,
``lowrank``, ``iaf``, ``delta`` (an MLP over ``input_dim`` values, or ``encoder=`` any module over
``inputs=``), ``local`` (a table of ``family``'s parameters per example) and ``semi`` (an
encoder refined on the model's ELBO). For example ``make_guide("iaf", latent_dim=50,
encoder=my_net, feature_dim=256, inputs=("x", "y"), site="z", model=my_model)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pyro_lvm.guides.amortized import AmortizedGuide, AmortizedNormal
from pyro_lvm.guides.delta import AmortizedDelta, DeltaHead
from pyro_lvm.guides.flow import AmortizedIAF, FlowHead
from pyro_lvm.guides.guide import SingleSiteGuide
from pyro_lvm.guides.heads import Head, NormalHead
from pyro_lvm.guides.local import LocalGuide
from pyro_lvm.guides.lowrank import AmortizedLowRankNormal, LowRankNormalHead
from pyro_lvm.guides.mvn import AmortizedMultivariateNormal, MultivariateNormalHead
from pyro_lvm.guides.semi_amortized import SemiAmortized

__all__ = ["ENCODER_FAMILIES", "GUIDE_FAMILIES", "HEADS", "NEEDS", "make_guide"]

#: The encoder families: name -> class ``(input_dim, latent_dim, **options)``.
ENCODER_FAMILIES: dict[str, type[AmortizedGuide]] = {
    "delta": AmortizedDelta,
    "iaf": AmortizedIAF,
    "lowrank": AmortizedLowRankNormal,
    "mvn": AmortizedMultivariateNormal,
    "normal": AmortizedNormal,
}

#: The families as heads: name -> class ``(latent_dim, **family options)``.
HEADS: dict[str, type[Head]] = {
    "delta": DeltaHead,
    "iaf": FlowHead,
    "lowrank": LowRankNormalHead,
    "mvn": MultivariateNormalHead,
    "normal": NormalHead,
}

_HEAD_OPTIONS = {"rank", "num_flows", "context_dim", "flow_hidden_dims"}
_SITE_OPTIONS = {"site", "plate", "plate_dim", "model"}


def _local(input_dim: int | Sequence[int] | None, latent_dim: int, num_examples: int | None = None, init_scale: float = 0.1,
           index: str | int = "index", family: str = "normal", **options: Any) -> LocalGuide:
    """Rows of ``family``'s parameters per training example (non-amortized SVI); needs ``num_examples``.

    The ids come from the model argument ``index`` (keyword, or its position in ``model``'s signature).
    """
    if num_examples is None:
        raise ValueError("guide 'local' needs num_examples (the number of training examples, one row each)")
    if family not in HEADS:
        raise ValueError(f"unknown family {family!r} for guide 'local'; valid: {sorted(HEADS)}")
    head = HEADS[family](latent_dim, **{k: v for k, v in options.items() if k in _HEAD_OPTIONS})
    site_options = {k: v for k, v in options.items() if k in _SITE_OPTIONS}
    examples = options.get("obs_arg", (options.get("inputs") or (0,))[0])
    return LocalGuide.of_head(head, num_examples, index=index, init_scale=init_scale, examples=examples, **site_options)


def _semi(input_dim: int | Sequence[int] | None, latent_dim: int, model: Callable | None = None, refine_steps: int = 5,
          refine_lr: float = 1e-2, family: str = "normal", **options: Any) -> SemiAmortized:
    """``family``'s encoder refined by ``refine_steps`` SGD steps on the model's ELBO; needs ``model``."""
    if model is None:
        raise ValueError("guide 'semi' needs model= (the model callable whose per-example ELBO it refines)")
    encoder_family = ENCODER_FAMILIES[family](input_dim, latent_dim, model=model, **options)
    return SemiAmortized(encoder_family, model, refine_steps, refine_lr)


#: Guide family name -> callable ``(input_dim, latent_dim, **options)`` returning the guide.
GUIDE_FAMILIES: dict[str, Callable[..., SingleSiteGuide]] = {**ENCODER_FAMILIES, "local": _local, "semi": _semi}

#: The options each family requires beyond the encoder's (``local`` its table size, ``semi`` the model).
NEEDS: dict[str, tuple[str, ...]] = {"local": ("num_examples",), "semi": ("model",)}


def make_guide(name: str, input_dim: int | Sequence[int] | None = None, latent_dim: int | None = None,
               **options: Any) -> SingleSiteGuide:
    """Build the guide family ``name`` (see :data:`GUIDE_FAMILIES`; :data:`NEEDS` lists required options).

    :param input_dim: values per example of the input(s) the default MLP encoder reads (not needed with ``encoder=``).
    :param latent_dim: the latent site's size.
    :param options: the family's options, and ``encoder`` (any module returning features (..., N, F)),
        ``feature_dim``, ``inputs`` (model argument names or positions), ``site``, ``model``, ``plate``, ``plate_dim``.
    """
    try:
        family = GUIDE_FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown guide {name!r}; valid guide families: {sorted(GUIDE_FAMILIES)}") from None
    if latent_dim is None:
        raise ValueError(f"guide {name!r} needs latent_dim, the size of the latent site")
    return family(input_dim, latent_dim, **options)
