"""Generative stories, one per file."""

from pyro_lvm.models.ctc import (
    ctc_alignment_model,
    ctc_collapse,
    ctc_greedy_decode,
    ctc_log_likelihood,
    ctc_posterior_marginals,
    ctc_sample_alignments,
    ctc_viterbi,
    ctc_viterbi_log_likelihood,
)
from pyro_lvm.models.dlgm import DeepLatentGaussian

__all__ = [
    "DeepLatentGaussian",
    "ctc_alignment_model",
    "ctc_collapse",
    "ctc_greedy_decode",
    "ctc_log_likelihood",
    "ctc_posterior_marginals",
    "ctc_sample_alignments",
    "ctc_viterbi",
    "ctc_viterbi_log_likelihood",
]
