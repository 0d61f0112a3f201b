"""Generative stories, one per file."""

from pyro_lvm.models.colorization import ColorRegressor, LatentSegmentationColorizer
from pyro_lvm.models.ctc_alignment import ctc_alignment_model
from pyro_lvm.models.ctc_recognizer import ColumnCTC
from pyro_lvm.models.dlgm import DeepLatentGaussian
from pyro_lvm.models.gmm import GaussianMixtureModel

__all__ = [
    "ColorRegressor",
    "ColumnCTC",
    "DeepLatentGaussian",
    "GaussianMixtureModel",
    "LatentSegmentationColorizer",
    "ctc_alignment_model",
]
