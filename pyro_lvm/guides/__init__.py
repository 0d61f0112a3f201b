"""Guide families ``q(z | x)`` usable with any model that has the named latent site."""

from pyro_lvm.guides.amortized import AmortizedGuide, AmortizedNormal

__all__ = ["AmortizedGuide", "AmortizedNormal"]
