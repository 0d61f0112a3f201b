"""Dynamic binarization: a fresh Bernoulli draw of every grey image each time it is seen."""

from __future__ import annotations

import torch

from pyro_lvm.color import check_finite

__all__ = ["dynamic_binarize"]


def dynamic_binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw binary pixels with probabilities ``x`` (the protocol of Burda et al., 2015).

    Used as the training loop's ``batch_transform=apply_to_first(dynamic_binarize)``, every image is redrawn once per
    epoch, since each appears once per epoch.

    :param x: grey levels in [0, 1], any shape.
    :returns: a float tensor of 0/1 values, shape of ``x`` (empty when ``x`` is).
    :raises TypeError: when ``x`` is not a float tensor.
    :raises ValueError: when ``x`` holds NaN, infinite or values outside [0, 1].
    """
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating point tensor of grey levels in [0, 1], got dtype {x.dtype}")
    if x.numel() == 0:
        return torch.empty_like(x)
    check_finite(x, "x")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"dynamic_binarize expects grey levels in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")
    return torch.bernoulli(x, generator=generator)
