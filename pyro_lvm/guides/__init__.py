"""Guide families ``q(z | x)`` usable with any model that has the named latent site."""

from pyro_lvm.guides.amortized import AmortizedGuide, AmortizedNormal
from pyro_lvm.guides.registry import GUIDE_FAMILIES, make_guide

__all__ = ["GUIDE_FAMILIES", "AmortizedGuide", "AmortizedNormal", "make_guide"]
