"""Dynamic binarization: a fresh Bernoulli draw of every grey image each time it is seen."""

from __future__ import annotations

import torch

__all__ = ["dynamic_binarize"]


def dynamic_binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw binary pixels with probabilities ``x`` (the protocol of Burda et al., 2015).

    Used as the training loop's ``batch_transform``, every image is redrawn once per
    epoch, since each appears once per epoch.

    :param x: grey levels in [0, 1], any shape.
    :returns: a float tensor of 0/1 values, shape of ``x``.
    """
    if x.is_floating_point() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"dynamic_binarize expects grey levels in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")
    return torch.bernoulli(x, generator=generator)
