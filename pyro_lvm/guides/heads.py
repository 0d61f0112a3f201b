"""Variational families as heads: which per-example parameters a family needs, and the distribution they give.

A head is the part of a guide family that does not depend on how its parameters are found: an
encoder's output layer (:class:`~pyro_lvm.guides.amortized.AmortizedSite`), a table with one row
per example (:class:`~pyro_lvm.guides.local.LocalSite`) or a refinement of either
(:class:`~pyro_lvm.guides.semi_amortized.SemiAmortizedSite`) supplies them. Parameters are
unconstrained: a head makes scales positive with :func:`positive_scale`, the one place that does.
Heads with global parameters (a flow's layers) hold them as submodules.

The families: :class:`NormalHead` here; the full-covariance, low-rank, flow and point heads in
:mod:`~pyro_lvm.guides.mvn`, :mod:`~pyro_lvm.guides.lowrank`, :mod:`~pyro_lvm.guides.flow` and
:mod:`~pyro_lvm.guides.delta`.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Head", "NormalHead", "inverse_positive_scale", "positive_scale"]

#: The floor of every scale a head makes positive, so a density never divides by zero.
MIN_SCALE = 1e-5


def positive_scale(raw: torch.Tensor) -> torch.Tensor:
    """``softplus(raw) + 1e-5``: an unconstrained parameter as a positive scale (any shape)."""
    return F.softplus(raw) + MIN_SCALE


def inverse_positive_scale(scale: torch.Tensor | float) -> torch.Tensor:
    """The raw value whose :func:`positive_scale` is ``scale`` (up to the 1e-5 floor): ``softplus^-1``."""
    return torch.as_tensor(scale).expm1().log()


class Head(nn.Module):
    """A variational family for a latent of event shape (latent_dim,).

    A subclass sets :meth:`param_sizes` (name -> size of each unconstrained parameter, in the
    order an encoder's output layer lays them out) and :meth:`distribution`, and may override
    :meth:`initial_params` (the start of a per-example table).
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        self.latent_dim = latent_dim

    def param_sizes(self) -> dict[str, int]:
        """Name -> size of each per-example parameter, in output-layer order."""
        raise NotImplementedError

    def distribution(self, params: dict[str, torch.Tensor]) -> dist.Distribution:
        """``q`` from parameters of shape (..., size): batch shape (...), event shape (latent_dim,)."""
        raise NotImplementedError

    @property
    def num_params(self) -> int:
        """P, the total size of the per-example parameters (an encoder's output layer has P outputs)."""
        return sum(self.param_sizes().values())

    def split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parameters laid out side by side in ``flat`` (..., P) as a dict of (..., size) tensors."""
        sizes = self.param_sizes()
        return dict(zip(sizes, flat.split(list(sizes.values()), dim=-1)))

    def initial_params(self, num_examples: int, init_scale: float = 0.1) -> dict[str, torch.Tensor]:
        """Rows (num_examples, size) of a per-example table: every parameter 0 (a subclass sets its scales)."""
        return {name: torch.zeros(num_examples, size) for name, size in self.param_sizes().items()}


class NormalHead(Head):
    """Diagonal Gaussian ``N(loc, diag(positive_scale(scale)^2))``; parameters ``loc`` and ``scale``, each (..., d)."""

    def param_sizes(self) -> dict[str, int]:
        return {"loc": self.latent_dim, "scale": self.latent_dim}

    def distribution(self, params: dict[str, torch.Tensor]) -> dist.Distribution:
        return dist.Normal(params["loc"], positive_scale(params["scale"])).to_event(1)

    def initial_params(self, num_examples: int, init_scale: float = 0.1) -> dict[str, torch.Tensor]:
        """``q(z_n) = N(0, init_scale^2 I)`` for every example."""
        loc = torch.zeros(num_examples, self.latent_dim)
        return {"loc": loc, "scale": torch.full_like(loc, float(inverse_positive_scale(init_scale)))}
