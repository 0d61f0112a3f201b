"""Semi-amortized guides: an encoder's output refined by K gradient steps on each example's ELBO."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from pyro_lvm.guides.amortized import AmortizedGuide, AmortizedSite
from pyro_lvm.guides.guide import GuideCall, SingleSiteGuide
from pyro_lvm.guides.heads import Head
from pyro_lvm.guides.optimize import optimize_local_params

__all__ = ["SemiAmortized", "SemiAmortizedSite"]


class SemiAmortizedSite(nn.Module):
    """``amortized``'s site at its encoder's parameters after ``refine_steps`` SGD steps on the model's ELBO.

    Each call runs the encoder, then ``refine_steps`` steps of
    :func:`~pyro_lvm.guides.optimize.optimize_local_params` (SGD with ``refine_lr``) on every
    example's own parameters with the model fixed, then samples from the refined distribution, so
    the model update sees the refined ``q`` (Kim et al., 2018). The model is called with the
    guide's own arguments, whatever its signature. The encoder is trained with a straight-through
    gradient: the refined parameters are ``encoder + stop_gradient(refined - encoder)``, so it
    receives the ELBO gradient at the refined point (no second-order terms through the refinement).

    :param amortized: the amortized site being refined (its encoder's parameters are this site's).
    :param model: the generative story the ELBO is taken under (not a submodule: its parameters are not the guide's).
    :param refine_steps: K, refinement steps per call (0: the plain encoder).
    :param refine_lr: SGD learning rate of the refinement.
    """

    def __init__(self, amortized: AmortizedSite, model: Callable, refine_steps: int = 5, refine_lr: float = 1e-2) -> None:
        super().__init__()
        if not isinstance(refine_steps, int) or refine_steps < 0:
            raise ValueError(f"refine_steps must be a non-negative integer, got {refine_steps!r}")
        if not refine_lr > 0:
            raise ValueError(f"refine_lr must be > 0, got {refine_lr!r}")
        if not callable(model):
            raise ValueError(f"model must be the model callable whose ELBO is refined, got {type(model).__name__}")
        self.amortized = amortized
        self.name, self.inputs = amortized.name, amortized.inputs
        self._model = (model,)
        self.refine_steps, self.refine_lr = refine_steps, refine_lr

    @property
    def head(self) -> Head:
        return self.amortized.head

    def params(self, inputs: tuple[torch.Tensor, ...], call: GuideCall) -> dict[str, torch.Tensor]:
        """The refined parameters, name -> (..., N, size), straight-through to the encoder's."""
        params = self.amortized.params(inputs, call)
        if self.refine_steps == 0 or not call.refine:
            return params
        refined = optimize_local_params(self._model[0], call.guide, {self.name: params}, *call.args, steps=self.refine_steps,
                                        lr=self.refine_lr, optimizer="sgd", **call.kwargs)[self.name]
        return {k: p + (refined[k] - p).detach() for k, p in params.items()}


class SemiAmortized(AmortizedGuide):
    """A one-site guide refining ``family``'s encoder (see :class:`SemiAmortizedSite`); an encoder family itself.

    :param family: the encoder family being refined (e.g. an :class:`~pyro_lvm.guides.AmortizedNormal`);
        it names the site, plate and inputs, and its encoder is trained through this guide.
    :param model: the generative story the ELBO is taken under, called with the guide's arguments.
    :param refine_steps: K, refinement steps per call (0: the plain encoder); ``refine_lr`` their SGD rate.
    """

    def __init__(self, family: AmortizedGuide, model: Callable, refine_steps: int = 5, refine_lr: float = 1e-2) -> None:
        site = SemiAmortizedSite(family.sites[0], model, refine_steps, refine_lr)
        SingleSiteGuide.__init__(self, [site], plate=family.plate, plate_dim=family.plate_dim, examples=family.examples)
        self._signature = family._signature
        self._family, self._network, self.input_dim = (family,), family._network, family.input_dim

    @property
    def family(self) -> AmortizedGuide:
        return self._family[0]

    @property
    def refine_steps(self) -> int:
        return self.sites[0].refine_steps

    def local_params(self, *inputs: Any) -> tuple[torch.Tensor, ...]:
        """The refined parameters for a model called with the inputs alone (``model(x)``)."""
        return tuple(self.sites[0].params(inputs, GuideCall(self, inputs, {})).values())
