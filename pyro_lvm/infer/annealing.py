"""KL (beta) annealing: scale the log-density of every latent site by ``beta``.

Wrapping both model and guide in :class:`scale_latents` turns the ELBO into
``E_q[log p(x|z)] + beta * E_q[log p(z) - log q(z|x)]``, i.e. the reconstruction
term plus ``beta`` times the negative KL, for any model (no site names needed).
"""

from __future__ import annotations

from collections.abc import Callable

from pyro.poutine.messenger import Messenger

__all__ = ["scale_latents", "linear_warmup"]


class scale_latents(Messenger):
    """Multiply the ``scale`` of every non-observed sample site by ``beta``."""

    def __init__(self, beta: float) -> None:
        if not beta >= 0:
            raise ValueError(f"beta must be a non-negative number, got {beta}")
        super().__init__()
        self.beta = beta

    def _process_message(self, msg) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            msg["scale"] = self.beta * msg["scale"]


def linear_warmup(warmup_steps: int, start: float = 0.0, end: float = 1.0) -> Callable[[int], float]:
    """A beta schedule rising linearly from ``start`` to ``end`` over ``warmup_steps`` steps, then flat."""
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")

    def beta(step: int) -> float:
        if warmup_steps == 0 or step >= warmup_steps:
            return end
        return start + (end - start) * step / warmup_steps

    return beta
