"""Generative stories, one per file."""

from pyro_lvm.models.attention import HardAttentionInflector, MonotonicAttentionInflector, SoftAttentionInflector, VariationalAttentionGuide
from pyro_lvm.models.colorization import ColorRegressor, LatentSegmentationColorizer
from pyro_lvm.models.conv_dlgm import ConvDeepLatentGaussian
from pyro_lvm.models.ctc_alignment import ctc_alignment_model
from pyro_lvm.models.ctc_recognizer import ColumnCTC
from pyro_lvm.models.cvae import CompletionRegressor, ConditionalVAE
from pyro_lvm.models.dlgm import DeepLatentGaussian
from pyro_lvm.models.gmm import GaussianMixtureModel
from pyro_lvm.models.hierarchical_dlgm import HierarchicalDeepLatentGaussian
from pyro_lvm.models.masked_dlgm import MaskedDeepLatentGaussian
from pyro_lvm.models.ssvae import SemiSupervisedVAE

__all__ = [
    "HardAttentionInflector",
    "MonotonicAttentionInflector",
    "SoftAttentionInflector",
    "VariationalAttentionGuide",
    "ColorRegressor",
    "ColumnCTC",
    "CompletionRegressor",
    "ConditionalVAE",
    "ConvDeepLatentGaussian",
    "DeepLatentGaussian",
    "GaussianMixtureModel",
    "HierarchicalDeepLatentGaussian",
    "LatentSegmentationColorizer",
    "MaskedDeepLatentGaussian",
    "SemiSupervisedVAE",
    "ctc_alignment_model",
]
