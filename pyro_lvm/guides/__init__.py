"""Guide families ``q(z | x)`` usable with any model that has the named latent sites.

A family is a head (:mod:`~pyro_lvm.guides.heads`), its parameters come from an encoder
(:mod:`~pyro_lvm.guides.amortized`), a per-example table (:mod:`~pyro_lvm.guides.local`) or a
refined encoder (:mod:`~pyro_lvm.guides.semi_amortized`), and a guide
(:mod:`~pyro_lvm.guides.guide`) samples one or several sites in the story's order.
"""

from pyro_lvm.guides.amortized import AmortizedGuide, AmortizedNormal, AmortizedSite
from pyro_lvm.guides.check import check_guide_sites
from pyro_lvm.guides.conv_encoder import ConvEncoder
from pyro_lvm.guides.delta import AmortizedDelta, DeltaHead, DeltaProposal
from pyro_lvm.guides.encoders import MLPEncoder
from pyro_lvm.guides.flow import AmortizedIAF, FlowHead
from pyro_lvm.guides.guide import LatentGuide
from pyro_lvm.guides.heads import Head, NormalHead, positive_scale
from pyro_lvm.guides.kl import as_multivariate_normal  # also registers the mvn/lowrank KLs to a diagonal prior
from pyro_lvm.guides.local import LocalGuide, LocalSite
from pyro_lvm.guides.lowrank import AmortizedLowRankNormal, LowRankNormalHead
from pyro_lvm.guides.mvn import AmortizedMultivariateNormal, MultivariateNormalHead
from pyro_lvm.guides.optimize import optimize_local_params
from pyro_lvm.guides.registry import ENCODER_FAMILIES, GUIDE_FAMILIES, NEEDS, make_guide
from pyro_lvm.guides.semi_amortized import SemiAmortized, SemiAmortizedSite

__all__ = [
    "ENCODER_FAMILIES",
    "GUIDE_FAMILIES",
    "NEEDS",
    "AmortizedDelta",
    "AmortizedGuide",
    "AmortizedIAF",
    "AmortizedLowRankNormal",
    "AmortizedMultivariateNormal",
    "AmortizedNormal",
    "AmortizedSite",
    "ConvEncoder",
    "DeltaHead",
    "DeltaProposal",
    "FlowHead",
    "Head",
    "LatentGuide",
    "LocalGuide",
    "LocalSite",
    "LowRankNormalHead",
    "MLPEncoder",
    "MultivariateNormalHead",
    "NormalHead",
    "SemiAmortized",
    "SemiAmortizedSite",
    "as_multivariate_normal",
    "check_guide_sites",
    "make_guide",
    "optimize_local_params",
    "positive_scale",
]
