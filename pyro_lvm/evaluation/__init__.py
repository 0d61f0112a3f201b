"""Recipes that examples and benchmarks share: evaluate a trained latent-Gaussian model and guide.

The top floor: it may import models, infer, guides and data.
"""

from pyro_lvm.evaluation.chunked import chunked_log_likelihood
from pyro_lvm.evaluation.latent_gaussian import (
    LatentGaussianEvaluation,
    evaluate_latent_gaussian,
)
from pyro_lvm.evaluation.new_examples import guide_for_examples
from pyro_lvm.evaluation.proposal import DELTA_SCALES, likelihood_proposal

__all__ = [
    "DELTA_SCALES",
    "LatentGaussianEvaluation",
    "chunked_log_likelihood",
    "evaluate_latent_gaussian",
    "guide_for_examples",
    "likelihood_proposal",
]
