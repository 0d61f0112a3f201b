"""Guide families ``q(z | x)`` usable with any model that has the named latent site."""

from pyro_lvm.guides.amortized import AmortizedGuide, AmortizedNormal
from pyro_lvm.guides.check import check_guide_sites
from pyro_lvm.guides.delta import AmortizedDelta, DeltaProposal
from pyro_lvm.guides.flow import AmortizedIAF
from pyro_lvm.guides.kl import as_multivariate_normal  # also registers the mvn/lowrank KLs to a diagonal prior
from pyro_lvm.guides.local import LocalGuide
from pyro_lvm.guides.lowrank import AmortizedLowRankNormal
from pyro_lvm.guides.mvn import AmortizedMultivariateNormal
from pyro_lvm.guides.optimize import optimize_local_params
from pyro_lvm.guides.registry import GUIDE_FAMILIES, NEEDS, make_guide
from pyro_lvm.guides.semi_amortized import SemiAmortized

__all__ = [
    "GUIDE_FAMILIES",
    "NEEDS",
    "AmortizedDelta",
    "AmortizedGuide",
    "AmortizedIAF",
    "AmortizedLowRankNormal",
    "AmortizedMultivariateNormal",
    "AmortizedNormal",
    "DeltaProposal",
    "LocalGuide",
    "SemiAmortized",
    "as_multivariate_normal",
    "check_guide_sites",
    "make_guide",
    "optimize_local_params",
]
