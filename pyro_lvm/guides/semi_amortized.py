"""Semi-amortized guide: the encoder's output refined by K gradient steps on each example's ELBO."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.distributions import Distribution

from pyro_lvm.guides.amortized import AmortizedGuide
from pyro_lvm.guides.optimize import optimize_local_params

__all__ = ["SemiAmortized"]


class SemiAmortized(AmortizedGuide):
    """``q(z | x)`` of ``family`` at the encoder's parameters after ``refine_steps`` SGD steps on the ELBO.

    Each call runs the encoder, then ``refine_steps`` steps of
    :func:`~pyro_lvm.guides.optimize_local_params` (SGD with ``refine_lr``) on every
    example's own parameters with the model fixed, then samples from the refined
    distribution, so the model update sees the refined ``q`` (Kim et al., 2018).
    The encoder is trained with a straight-through gradient: the refined parameters
    are ``encoder(x) + stop_gradient(refined - encoder(x))``, so it receives the
    ELBO gradient at the refined point (no second-order terms through the refinement).

    :param family: the guide family being refined (e.g. an
        :class:`~pyro_lvm.guides.AmortizedNormal`); it names the site, plate and observation.
    :param model: the generative story the ELBO is taken under, called with the guide's arguments.
    :param refine_steps: K, refinement steps per call (0: the plain encoder).
    :param refine_lr: SGD learning rate of the refinement.
    """

    def __init__(self, family: AmortizedGuide, model: Callable, refine_steps: int = 5, refine_lr: float = 1e-2) -> None:
        if not isinstance(refine_steps, int) or refine_steps < 0:
            raise ValueError(f"refine_steps must be a non-negative integer, got {refine_steps!r}")
        if not refine_lr > 0:
            raise ValueError(f"refine_lr must be > 0, got {refine_lr!r}")
        if not callable(model):
            raise ValueError(f"model must be the model callable whose ELBO is refined, got {type(model).__name__}")
        super().__init__(family.input_dim, family.latent_dim, site=family.site, obs_arg=family.obs_arg,
                         plate=family.plate, plate_dim=family.plate_dim)
        self.family = family
        self._model = (model,)  # not a submodule: the model's parameters are not this guide's
        self.refine_steps, self.refine_lr = refine_steps, refine_lr

    def refine(self, params: tuple[torch.Tensor, ...], args: tuple, kwargs: dict) -> tuple[torch.Tensor, ...]:
        """Refined per-example parameters, straight-through to ``params`` (same shapes)."""
        if self.refine_steps == 0:
            return params
        refined = optimize_local_params(self._model[0], self.family, params, *args, steps=self.refine_steps,
                                        lr=self.refine_lr, optimizer="sgd", **kwargs)
        return tuple(p + (r - p).detach() for p, r in zip(params, refined))

    def local_params(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Refined parameters for a model called as ``model(x)``."""
        return self.refine(self.family.local_params(x), (x,), {})

    def distribution_from(self, params: tuple[torch.Tensor, ...]) -> Distribution:
        return self.family.distribution_from(params)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        x = self.observed(args, kwargs)
        params = self.refine(self.family.local_params(x), args, kwargs)
        return self.sample_from(self.distribution_from(params), x.shape[0])
