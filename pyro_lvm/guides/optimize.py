"""Each example's variational parameters optimized directly, the model held fixed.

:func:`optimize_local_params` maximizes each example's ELBO over its own parameters; it is
the inner loop of the semi-amortized guide, of the amortization gap and of fitting a
per-example guide to new examples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyro
import torch
from pyro import poutine

from pyro_lvm.guides.guide import LatentGuide

__all__ = ["optimize_local_params"]

Params = dict[str, dict[str, torch.Tensor]]


def optimize_local_params(
    model: Callable,
    guide: LatentGuide,
    params: Params | Sequence[torch.Tensor],
    *args: Any,
    steps: int = 100,
    lr: float = 1e-2,
    optimizer: str = "adam",
    num_particles: int = 1,
    final_lr: float | None = None,
    **kwargs: Any,
) -> Params | tuple[torch.Tensor, ...]:
    """Maximize each example's ELBO over its own parameter rows, the model and the guide's other parameters fixed.

    :param model: the generative story, called as ``model(*args, **kwargs)`` (a batch of N examples).
    :param guide: the guide (:class:`~pyro_lvm.guides.guide.LatentGuide`) whose sites' parameters are optimized;
        its other sites sample as usual, with their parameters fixed.
    :param params: the starting parameters, site name -> name -> (N, size) (see
        :meth:`~pyro_lvm.guides.guide.LatentGuide.site_params`), or for a one-site guide the tensors
        in its head's order (not modified).
    :param steps: gradient steps; ``optimizer`` ``"adam"`` or ``"sgd"`` with learning rate ``lr``.
    :param num_particles: samples per step in the Monte Carlo ELBO (vectorized).
    :param final_lr: if given, the learning rate decays geometrically from ``lr`` to ``final_lr``
        over the steps, so the last steps average out the Monte Carlo noise instead of
        random-walking on it (with a constant rate, many parameters per example, e.g. a full
        Cholesky factor, drift away from the optimum). Default: a constant ``lr``.
    :returns: the optimized parameters, detached, in the form and shapes of ``params``. The loss
        is a sum over examples and each row only enters its own example's term, so all examples are
        optimized at once and independently.
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if final_lr is not None and not final_lr > 0:
        raise ValueError(f"final_lr must be > 0 or None, got {final_lr!r}")
    as_tuple = not isinstance(params, dict)
    if as_tuple:
        params = {guide.sites[0].name: dict(zip(guide.sites[0].head.param_sizes(), params))}
    start = {site: {k: p.detach().clone().requires_grad_(True) for k, p in ps.items()} for site, ps in params.items()}
    leaves = [p for ps in start.values() for p in ps.values()]
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(leaves, lr=lr)
    decay = 1.0 if final_lr is None or steps == 0 else (final_lr / lr) ** (1.0 / steps)
    schedule = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=decay)
    elbo = pyro.infer.Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1,
                                 max_plate_nesting=-guide.plate_dim)

    def fixed(*a: Any, **k: Any) -> None:
        guide.sample_sites(a, k, overrides=start, refine=False)

    with poutine.block(), torch.enable_grad():
        for _ in range(steps):
            loss = elbo.differentiable_loss(model, fixed, *args, **kwargs)
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
            for p, g in zip(leaves, grads):
                p.grad = torch.zeros_like(p) if g is None else g
            opt.step()
            schedule.step()
    out = {site: {k: p.detach() for k, p in ps.items()} for site, ps in start.items()}
    return tuple(next(iter(out.values())).values()) if as_tuple else out
