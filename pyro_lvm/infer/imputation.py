"""Missing values as latent sites: a variational family over them, fitted by SVI with the model fixed, and scores.

A story that takes its mask as data observes the values where ``mask`` is True; where it keeps
the missing values as a latent site (``x_missing``, masked to the missing entries), the lecture
notes' program fits ``q(z) q(x_missing; phi)`` by maximizing the ELBO of ``log p(x_observed)`` over
the guide only. :class:`MissingValuesGuide` is that family: any guide for the story's other latents
beside one free parameter (or two) per missing value, Bernoulli (binary pixels) or Normal.
:func:`fit_missing_values` runs :func:`~pyro_lvm.infer.train` on it with the model's parameters
hidden, so the model stays as trained. :func:`missing_value_scores` scores a completion.

The other route, the importance-weighted posterior expectation of the decoder's mean (Mattei &
Frellsen, 2019), is :func:`~pyro_lvm.infer.posterior_expectation` over
:func:`~pyro_lvm.infer.importance_draws`.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule
from torch.nn import functional as F

from pyro_lvm.infer.train import train

__all__ = ["MissingValuesGuide", "fit_missing_values", "missing_value_scores"]

FAMILIES = ("bernoulli", "normal")


class MissingValuesGuide(PyroModule):
    """``q(latents | x, mask) q(x_missing; phi)``: ``latent_guide`` for the story's latents, and per-example,
    per-value parameters ``phi`` (N, D) for the site ``site``, scored only where ``mask`` is False.

    Called as ``guide(x, mask)`` with the story's arguments: x (N, D), mask (N, D) bool, True where observed.

    :param latent_guide: the guide of the story's other latent sites, called with ``(x, mask)``.
    :param shape: (N, D), the shape of the examples it imputes (one row of parameters per example).
    :param family: ``"bernoulli"`` (``q = Bernoulli(sigmoid(phi))``, binary values) or ``"normal"``
        (``q = Normal(phi, softplus(rho))``).
    :param site: the story's latent site holding the missing values (event shape (D,)).
    :raises ValueError: an unknown family, or a shape that is not (N, D) with N, D >= 1.
    """

    def __init__(self, latent_guide: Callable, shape: tuple[int, int], family: str = "bernoulli",
                 site: str = "x_missing") -> None:
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {list(FAMILIES)}, got {family!r}")
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"shape must be (N, D), examples by values, both >= 1; got {tuple(shape)}")
        self.latent_guide, self.family, self.site = latent_guide, family, site
        self.loc = torch.nn.Parameter(torch.zeros(shape))
        if family == "normal":
            self.raw_scale = torch.nn.Parameter(torch.zeros(shape))

    def distribution(self) -> dist.Distribution:
        """``q(x_missing; phi)`` for every value, batch shape (N, D)."""
        if self.family == "bernoulli":
            return dist.Bernoulli(logits=self.loc)
        return dist.Normal(self.loc, F.softplus(self.raw_scale) + 1e-4)

    def mean(self) -> torch.Tensor:
        """The mean of ``q`` at every value, (N, D): the probabilities (Bernoulli) or the locations (Normal)."""
        return self.distribution().mean.detach()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        if mask.shape != self.loc.shape:
            raise ValueError(f"mask has shape {tuple(mask.shape)}, but this guide holds parameters for shape "
                             f"{tuple(self.loc.shape)}; build it with shape=mask.shape")
        self.latent_guide(x, mask)  # opens the data plate for its sites
        # the same plate again: its subsample site is already in the trace, so only its frame is kept
        with poutine.block(hide=["data"]), pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample(self.site, self.distribution().mask(~mask).to_event(1))


def fit_missing_values(model: Callable, guide: MissingValuesGuide, x: torch.Tensor, mask: torch.Tensor, *,
                       steps: int = 500, lr: float = 1e-2, num_particles: int = 1, progress: bool = False) -> torch.Tensor:
    """Fit ``guide`` to ``model(x, mask)`` by SVI with the model's parameters fixed; returns ``guide.mean()`` (N, D).

    All examples form one batch (the guide's rows follow their order). The model's parameters are
    hidden from the optimizer (:func:`pyro.poutine.block` of its ``param`` sites), so only the guide
    moves: the latent guide's parameters too (a per-example refinement of an encoder's output).
    The objective is :class:`~pyro.infer.Trace_ELBO`; for Bernoulli values its gradient in ``phi`` is
    a score-function estimate (Pyro's closed-form mean-field KL needs a reparameterized guide), so
    give it particles and steps.

    :param model: the story with the missing values as the latent site ``guide.site``, called ``model(x, mask)``.
    :param steps: Adam steps at learning rate ``lr``; ``num_particles`` draws per step.
    """
    fixed = poutine.block(model, hide_types=["param"])
    loss = pyro.infer.Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1)
    train(fixed, guide, (x, mask), loss=loss, lr=lr, steps=steps, batch_size=len(x), shuffle=False, progress=progress)
    return guide.mean()


def missing_value_scores(probs: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> dict[str, float]:
    """How well predicted probabilities ``probs`` (N, D) of binary values ``x`` (N, D) score the missing ones (``~mask``).

    :returns: ``missing_pixel_log_likelihood``, the mean Bernoulli log-likelihood per missing value
        (nats; probabilities clamped to ``[eps, 1 - eps]``), and ``missing_pixel_accuracy``, the share of
        missing values that ``probs > 0.5`` predicts.
    :raises ValueError: when the shapes differ or nothing is missing.
    """
    if probs.shape != x.shape or mask.shape != x.shape:
        raise ValueError(f"probs, x and mask must have one shape (N, D); got {tuple(probs.shape)}, {tuple(x.shape)} "
                         f"and {tuple(mask.shape)}")
    missing = ~mask
    if not missing.any():
        raise ValueError("mask marks every value observed: there is no missing value to score")
    p = probs.clamp(eps, 1 - eps)
    log_lik = dist.Bernoulli(probs=p).log_prob(x.to(p.dtype))[missing].mean()
    accuracy = ((p > 0.5) == (x > 0.5))[missing].float().mean()
    return {"missing_pixel_log_likelihood": float(log_lik), "missing_pixel_accuracy": float(accuracy)}
