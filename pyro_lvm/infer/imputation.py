"""Missing values as latent sites: a variational family over them, fitted by SVI with the model fixed, and scores.

A story that takes its mask as data observes the values where ``mask`` is True; where it keeps
the missing values as a latent site (``x_missing``: one value per element of the plate ``"values"``
of size D at dim -2, inside the data plate at dim -1, so batch shape (D, N); masked to the missing
entries), the lecture notes' program fits ``q(z) q(x_missing; phi)`` by maximizing the ELBO of
``log p(x_observed)`` over the guide only. :class:`MissingValuesGuide` is that family: any guide for
the story's other latents beside one free parameter (or two) per missing value, Bernoulli (binary
pixels) or Normal. :func:`fit_missing_values` runs :func:`~pyro_lvm.infer.train` on it with the
model's parameters hidden, so the model stays as trained. :func:`missing_value_scores` scores a completion.

For Bernoulli values the objective, :func:`missing_values_elbo`, is :class:`~pyro.infer.TraceEnum_ELBO`:
the guide marks the values ``enumerate="parallel"``, and as each value is its own element of the
plate, the ELBO sums each one's two states exactly, weighted by ``q``: ``E_q[log p(x_d | z) - log q(x_d)]``
in closed form, so the gradient in ``phi`` has no Monte Carlo noise beyond that of ``z``.

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

__all__ = ["MissingValuesGuide", "fit_missing_values", "missing_values_elbo", "missing_value_scores", "values_in_plate"]

FAMILIES = ("bernoulli", "normal")


def values_in_plate(t: torch.Tensor) -> torch.Tensor:
    """A per-value tensor (..., N, D) laid out for the plate ``"values"`` at dim -2 inside the data plate at
    dim -1: (..., D, N).

    A size-1 dim just left of N (the values plate's place in a tensor computed from latents of the data
    plate alone, e.g. a decoder's output under vectorized particles, (P, 1, N, D)) gives way to the D
    values, so the dims left of it (particles, enumeration) keep their places: (P, D, N).
    """
    t = t.movedim(-1, -2)
    return t.squeeze(-3) if t.dim() > 2 and t.shape[-3] == 1 else t


class MissingValuesGuide(PyroModule):
    """``q(latents | x, mask) q(x_missing; phi)``: ``latent_guide`` for the story's latents, and per-example,
    per-value parameters ``phi`` (N, D) for the site ``site``, scored only where ``mask`` is False.

    Called as ``guide(x, mask)`` with the story's arguments: x (N, D), mask (N, D) bool, True where observed.
    The site is sampled in the plates ``"data"`` (dim -1) and ``"values"`` (dim -2), batch shape (D, N);
    Bernoulli values are marked for parallel enumeration (each value on its own, see :func:`missing_values_elbo`).

    :param latent_guide: the guide of the story's other latent sites, called with ``(x, mask)``.
    :param shape: (N, D), the shape of the examples it imputes (one row of parameters per example).
    :param family: ``"bernoulli"`` (``q = Bernoulli(sigmoid(phi))``, binary values) or ``"normal"``
        (``q = Normal(phi, softplus(rho))``, ``rho`` starting at 0).
    :param site: the story's latent site holding the missing values.
    :param init: the mean of ``q`` to start from, (N, D): probabilities (Bernoulli; clamped to
        ``[1e-4, 1 - 1e-4]``) or locations (Normal). Default: 0.5 or 0 everywhere.
    :raises ValueError: an unknown family, a shape that is not (N, D) with N, D >= 1, or an ``init`` of another shape.
    """

    def __init__(self, latent_guide: Callable, shape: tuple[int, int], family: str = "bernoulli",
                 site: str = "x_missing", init: torch.Tensor | None = None) -> None:
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {list(FAMILIES)}, got {family!r}")
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"shape must be (N, D), examples by values, both >= 1; got {tuple(shape)}")
        if init is not None and tuple(init.shape) != tuple(shape):
            raise ValueError(f"init must have the shape {tuple(shape)}, got {tuple(init.shape)}")
        self.latent_guide, self.family, self.site = latent_guide, family, site
        if init is None:
            loc = torch.zeros(shape)
        else:
            loc = torch.logit(init.detach().clamp(1e-4, 1 - 1e-4)) if family == "bernoulli" else init.detach().clone()
        self.loc = torch.nn.Parameter(loc)
        if family == "normal":
            self.raw_scale = torch.nn.Parameter(torch.zeros(shape, dtype=loc.dtype, device=loc.device))

    def distribution(self) -> dist.Distribution:
        """``q(x_missing; phi)`` for every value, batch shape (D, N), the site's (values by examples)."""
        if self.family == "bernoulli":
            return dist.Bernoulli(logits=self.loc.mT)
        return dist.Normal(self.loc.mT, F.softplus(self.raw_scale.mT) + 1e-4)

    def mean(self) -> torch.Tensor:
        """The mean of ``q`` at every value, (N, D): the probabilities (Bernoulli) or the locations (Normal)."""
        return self.distribution().mean.mT.detach()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        if mask.shape != self.loc.shape:
            raise ValueError(f"mask has shape {tuple(mask.shape)}, but this guide holds parameters for shape "
                             f"{tuple(self.loc.shape)}; build it with shape=mask.shape")
        self.latent_guide(x, mask)  # opens the data plate for its sites
        infer = {"enumerate": "parallel"} if self.family == "bernoulli" else {}
        # the same plate again: its subsample site is already in the trace, so only its frame is kept
        with poutine.block(hide=["data"]), pyro.plate("data", x.shape[0], dim=-1):
            with pyro.plate("values", x.shape[1], dim=-2):
                pyro.sample(self.site, self.distribution().mask(~mask.mT), infer=infer)


def missing_values_elbo(family: str = "bernoulli", num_particles: int = 1) -> pyro.infer.ELBO:
    """The objective of :func:`fit_missing_values` for a :class:`MissingValuesGuide` of ``family``, over two
    plates (``"data"`` and ``"values"``), ``num_particles`` draws of the continuous latents, vectorized.

    Bernoulli: :class:`~pyro.infer.TraceEnum_ELBO`, which sums the enumerated missing values out exactly,
    per value ``q_d log p(1 | z) + (1 - q_d) log p(0 | z) - q_d log q_d - (1 - q_d) log(1 - q_d)``.
    Normal: :class:`~pyro.infer.Trace_ELBO` (the values are reparameterized).

    :raises ValueError: an unknown family.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {list(FAMILIES)}, got {family!r}")
    elbo = pyro.infer.TraceEnum_ELBO if family == "bernoulli" else pyro.infer.Trace_ELBO
    return elbo(num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=2)


def fit_missing_values(model: Callable, guide: MissingValuesGuide, x: torch.Tensor, mask: torch.Tensor, *,
                       steps: int = 500, lr: float = 1e-2, num_particles: int = 1, progress: bool = False) -> torch.Tensor:
    """Fit ``guide`` to ``model(x, mask)`` by SVI with the model's parameters fixed; returns ``guide.mean()`` (N, D).

    All examples form one batch (the guide's rows follow their order). The model's parameters are
    hidden from the optimizer (:func:`pyro.poutine.block` of its ``param`` sites), so only the guide
    moves: the latent guide's parameters too (a per-example refinement of an encoder's output).
    The objective is :func:`missing_values_elbo`: exact in Bernoulli missing values, so the only
    Monte Carlo noise is that of the continuous latents (``num_particles`` draws per step).

    :param model: the story with the missing values as the latent site ``guide.site`` (batch (D, N) in the
        plate ``"values"`` at dim -2), called ``model(x, mask)``.
    :param steps: Adam steps at learning rate ``lr``; ``num_particles`` draws per step.
    """
    fixed = poutine.block(model, hide_types=["param"])
    train(fixed, guide, (x, mask), loss=missing_values_elbo(guide.family, num_particles), lr=lr, steps=steps, batch_size=len(x),
          shuffle=False, progress=progress)
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
