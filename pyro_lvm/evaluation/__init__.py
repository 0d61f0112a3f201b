"""Recipes that examples and benchmarks share: evaluate a trained latent-Gaussian model and guide
(:func:`evaluate_latent_gaussian`), and one training-and-evaluation run of a VAE (:func:`run_vae_experiment`).

The top floor: it may import models, infer, guides and data.
"""

from pyro_lvm.evaluation.chunked import chunked_log_likelihood
from pyro_lvm.evaluation.latent_gaussian import (
    LatentGaussianEvaluation,
    evaluate_latent_gaussian,
)
from pyro_lvm.evaluation.new_examples import guide_for_examples
from pyro_lvm.evaluation.proposal import DELTA_SCALES, likelihood_proposal
from pyro_lvm.evaluation.vae_experiment import (
    DATASETS,
    JIT_GUIDES,
    VAEData,
    VAEExperiment,
    VAEExperimentResult,
    load_vae_data,
    run_vae_experiment,
)

__all__ = [
    "DATASETS",
    "DELTA_SCALES",
    "JIT_GUIDES",
    "LatentGaussianEvaluation",
    "VAEData",
    "VAEExperiment",
    "VAEExperimentResult",
    "chunked_log_likelihood",
    "evaluate_latent_gaussian",
    "guide_for_examples",
    "likelihood_proposal",
    "load_vae_data",
    "run_vae_experiment",
]
