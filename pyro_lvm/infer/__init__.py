"""Training and evaluation: one SVI loop with callbacks, hard EM, importance-weighted log-likelihood, bits/dim."""

from pyro_lvm.infer.amortization import active_directions, active_units, amortization_gap, posterior_means
from pyro_lvm.infer.annealing import linear_warmup, scale_latents
from pyro_lvm.infer.callbacks import Callback, CSVLogger, EarlyStopping, LambdaCallback, TrainState
from pyro_lvm.infer.evaluate import (
    bits_per_dim,
    importance_log_likelihood,
    log_importance_weights,
    observed_dims,
    per_example_elbo,
)
from pyro_lvm.infer.fast_path import FastPath
from pyro_lvm.infer.hard_em import HardEM
from pyro_lvm.infer.importance import importance_draws, importance_resample, posterior_expectation
from pyro_lvm.infer.jit_elbo import JitTraceMeanField_ELBO
from pyro_lvm.infer.train import History, TrainingDiverged, apply_to_first, load_weights, train

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "FastPath",
    "HardEM",
    "History",
    "JitTraceMeanField_ELBO",
    "LambdaCallback",
    "TrainState",
    "TrainingDiverged",
    "active_directions",
    "active_units",
    "amortization_gap",
    "apply_to_first",
    "bits_per_dim",
    "importance_draws",
    "importance_log_likelihood",
    "importance_resample",
    "linear_warmup",
    "load_weights",
    "log_importance_weights",
    "observed_dims",
    "per_example_elbo",
    "posterior_expectation",
    "posterior_means",
    "scale_latents",
    "train",
]
