"""The importance proposal for ``log p(x)``: the guide itself, or a Gaussian around a point guide.

A point encoder (:class:`~pyro_lvm.guides.AmortizedDelta`) has no density, so it is no
importance proposal; ``N(f(x), scale^2 I)`` around its point is one, with the scale taken
from a grid as the one whose ELBO on the examples is the highest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from pyro_lvm.guides import AmortizedDelta
from pyro_lvm.infer import per_example_elbo

__all__ = ["DELTA_SCALES", "likelihood_proposal"]

#: Candidate proposal scales around a point encoder's z.
DELTA_SCALES = (0.01, 0.03, 0.1, 0.3, 1.0)


def likelihood_proposal(
    model: Callable, guide: Callable, x: torch.Tensor, scales: Sequence[float] = DELTA_SCALES, num_samples: int = 20
) -> tuple[Callable, str]:
    """The importance proposal for ``log p(x)`` and a description of it.

    :param model: the generative story, called as ``model(x)``.
    :param guide: the guide ``q(z | x)``; when it is an :class:`~pyro_lvm.guides.AmortizedDelta`,
        the proposal is ``guide.proposal(scale)`` for the scale of ``scales`` with the highest
        mean ELBO on ``x`` (``num_samples`` samples per example).
    :param x: (N, D) examples that choose the scale (a few hundred are enough).
    :returns: ``(proposal, description)``: the guide itself and ``"the guide"`` for any other guide.
    """
    if not isinstance(guide, AmortizedDelta):
        return guide, "the guide"
    scores = {s: per_example_elbo(model, guide.proposal(s), x, num_samples=num_samples).mean().item() for s in scales}
    scale = max(scores, key=scores.get)
    return guide.proposal(scale), f"N(point, {scale}^2 I), scale chosen by ELBO from {list(scales)}"
