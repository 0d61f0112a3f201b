"""Tensor operations the models share: exact inference on chains of discrete states."""

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

__all__ = [
    "FLOOR",
    "BandedTransition",
    "DenseTransition",
    "chain_backtrack",
    "chain_forward",
    "chain_log_total",
    "chain_marginals",
    "chain_total",
]
