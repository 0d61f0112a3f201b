"""Guide families by name, for scripts and benchmarks (``--guide NAME``)."""

from __future__ import annotations

from pyro_lvm.guides.amortized import AmortizedGuide, AmortizedNormal

__all__ = ["GUIDE_FAMILIES", "make_guide"]

#: Guide family name -> class taking ``(input_dim, latent_dim, **options)``.
GUIDE_FAMILIES: dict[str, type[AmortizedGuide]] = {
    "normal": AmortizedNormal,
}


def make_guide(name: str, input_dim: int, latent_dim: int, **options) -> AmortizedGuide:
    """Build the guide family ``name`` (see :data:`GUIDE_FAMILIES`)."""
    try:
        family = GUIDE_FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown guide {name!r}; valid guide families: {sorted(GUIDE_FAMILIES)}") from None
    return family(input_dim, latent_dim, **options)
