"""pyro_lvm: latent variable models for Pyro.

Models are Pyro programs (``pyro_lvm.models``), guides are amortized encoder
families (``pyro_lvm.guides``), training is one SVI loop and evaluation an
importance-weighted log-likelihood per example (``pyro_lvm.infer``), and data
loaders work offline (``pyro_lvm.data``).
"""

__version__ = "0.2.0"

from pyro_lvm import data, diagnostics, distributions, estimators, guides, infer, models, ops  # noqa: E402
from pyro_lvm.estimators import GaussianMixture  # noqa: E402
from pyro_lvm.guides import AmortizedNormal  # noqa: E402
from pyro_lvm.infer import HardEM, bits_per_dim, importance_log_likelihood, per_example_elbo, train  # noqa: E402
from pyro_lvm.models import DeepLatentGaussian  # noqa: E402

__all__ = [
    "__version__",
    "AmortizedNormal",
    "DeepLatentGaussian",
    "GaussianMixture",
    "HardEM",
    "bits_per_dim",
    "data",
    "diagnostics",
    "distributions",
    "estimators",
    "guides",
    "importance_log_likelihood",
    "infer",
    "models",
    "ops",
    "per_example_elbo",
    "train",
]
