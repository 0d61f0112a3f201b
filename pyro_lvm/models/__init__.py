"""Generative stories, one per file."""

from pyro_lvm.models.dlgm import DeepLatentGaussian

__all__ = ["DeepLatentGaussian"]
