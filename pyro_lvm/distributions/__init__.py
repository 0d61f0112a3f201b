"""Distributions pyro_lvm adds to ``pyro.distributions``."""

from pyro_lvm.distributions.bernoulli import IndependentBernoulli
from pyro_lvm.distributions.ctc import CTC

__all__ = ["CTC", "IndependentBernoulli"]
