"""Tensor math, and nothing else of pyro_lvm: chain recursions, CTC, discrete HMMs, mixture EM."""

from pyro_lvm.ops.chain import (
    FLOOR,
    BandedTransition,
    DenseTransition,
    chain_backtrack,
    chain_forward,
    chain_log_total,
    chain_marginals,
    chain_total,
)
from pyro_lvm.ops.ctc import (
    ctc_collapse,
    ctc_greedy_decode,
    ctc_label_error_rate,
    ctc_log_likelihood,
    ctc_posterior_marginals,
    ctc_sample_alignments,
    ctc_viterbi,
    ctc_viterbi_log_likelihood,
)
from pyro_lvm.ops.hmm import hmm_log_likelihood, hmm_posterior_marginals, hmm_sample_states, hmm_viterbi

__all__ = [
    "FLOOR",
    "BandedTransition",
    "DenseTransition",
    "chain_backtrack",
    "chain_forward",
    "chain_log_total",
    "chain_marginals",
    "chain_total",
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
