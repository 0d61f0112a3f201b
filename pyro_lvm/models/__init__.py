"""Generative stories, one per file."""

from pyro_lvm.models.ctc import (
    ctc_alignment_model,
    ctc_collapse,
    ctc_greedy_decode,
    ctc_label_error_rate,
    ctc_log_likelihood,
    ctc_posterior_marginals,
    ctc_sample_alignments,
    ctc_viterbi,
    ctc_viterbi_log_likelihood,
)
from pyro_lvm.models.colorization import ColorRegressor, LatentSegmentationColorizer
from pyro_lvm.models.dlgm import DeepLatentGaussian
from pyro_lvm.models.hmm import hmm_log_likelihood, hmm_posterior_marginals, hmm_sample_states, hmm_viterbi
from pyro_lvm.models.gmm import GaussianMixture

__all__ = [
    "ColorRegressor",
    "DeepLatentGaussian",
    "GaussianMixture",
    "LatentSegmentationColorizer",
    "ctc_alignment_model",
    "ctc_collapse",
    "ctc_greedy_decode",
    "ctc_label_error_rate",
    "ctc_log_likelihood",
    "ctc_posterior_marginals",
    "ctc_sample_alignments",
    "ctc_viterbi",
    "ctc_viterbi_log_likelihood",
    "hmm_log_likelihood",
    "hmm_posterior_marginals",
    "hmm_sample_states",
    "hmm_viterbi",
]
