"""Each example's variational parameters optimized directly, the model held fixed.

:func:`optimize_local_params` maximizes each example's ELBO over its own parameters; it is
the inner loop of the semi-amortized guide, of the amortization gap and of fitting a
per-example guide to new examples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import torch
from pyro import poutine

from pyro_lvm.guides.amortized import AmortizedGuide

__all__ = ["optimize_local_params"]


def _params_guide(family: AmortizedGuide, params: tuple[torch.Tensor, ...]):
    def guide(*args, **kwargs):
        x = family.observed(args, kwargs)
        return family.sample_from(family.distribution_from(params), x.shape[0])

    return guide


def optimize_local_params(
    model: Callable,
    family: AmortizedGuide,
    params: tuple[torch.Tensor, ...],
    *args: Any,
    steps: int = 100,
    lr: float = 1e-2,
    optimizer: str = "adam",
    num_particles: int = 1,
    final_lr: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, ...]:
    """Maximize each example's ELBO over its own parameter rows, the model and the family's globals fixed.

    :param model: the generative story, called as ``model(*args, **kwargs)`` (a batch of N examples).
    :param family: the guide family (see :class:`LocalGuide`).
    :param params: starting parameter rows, each with N rows (not modified).
    :param steps: gradient steps; ``optimizer`` ``"adam"`` or ``"sgd"`` with learning rate ``lr``.
    :param num_particles: samples per step in the Monte Carlo ELBO (vectorized).
    :param final_lr: if given, the learning rate decays geometrically from ``lr`` to ``final_lr``
        over the steps, so the last steps average out the Monte Carlo noise instead of
        random-walking on it (with a constant rate, many parameters per example, e.g. a full
        Cholesky factor, drift away from the optimum). Default: a constant ``lr``.
    :returns: the optimized rows, detached, same shapes as ``params``. The loss is a sum over
        examples and each row only enters its own example's term, so all examples are optimized
        at once and independently.
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if final_lr is not None and not final_lr > 0:
        raise ValueError(f"final_lr must be > 0 or None, got {final_lr!r}")
    params = tuple(p.detach().clone().requires_grad_(True) for p in params)
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(params, lr=lr)
    decay = 1.0 if final_lr is None or steps == 0 else (final_lr / lr) ** (1.0 / steps)
    schedule = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=decay)
    elbo = pyro.infer.Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1,
                                 max_plate_nesting=-family.plate_dim)
    guide = _params_guide(family, params)
    with poutine.block(), torch.enable_grad():
        for _ in range(steps):
            loss = elbo.differentiable_loss(model, guide, *args, **kwargs)
            grads = torch.autograd.grad(loss, params)
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
            schedule.step()
    return tuple(p.detach() for p in params)
