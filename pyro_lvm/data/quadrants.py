"""Quadrant completion (the task of Pyro's ``examples/cvae``): observe 1, 2 or 3 quadrants, predict the rest.

An image of H x W pixels (H, W even) is cut into four quadrants. With ``observed`` quadrants
seen, as in Pyro's example:

- 1: the bottom-left quadrant;
- 2: the left half (bottom-left and top-left);
- 3: every quadrant but the bottom-right one.

:func:`mask_quadrants` turns images into the pair ``(x, y)`` of a conditional story: ``x`` the
input, the image with every missing pixel set to :data:`MISSING` (-1), and ``y`` the whole image,
of which a story scores only the pixels that ``x`` lacks (``x == MISSING``).
"""

from __future__ import annotations

import torch

__all__ = ["MISSING", "mask_quadrants", "observed_quadrant_mask"]

#: The value that marks a missing pixel in the input ``x`` (pixels lie in [0, 1]).
MISSING = -1.0


def observed_quadrant_mask(observed: int, height: int = 28, width: int = 28) -> torch.Tensor:
    """The bool mask (height, width) of the pixels seen when ``observed`` quadrants are observed (True: seen).

    :raises ValueError: ``observed`` not 1, 2 or 3; a height or width that is not a positive even int.
    """
    if isinstance(observed, bool) or observed not in (1, 2, 3):
        raise ValueError(f"observed must be the number of observed quadrants, 1, 2 or 3, got {observed!r}")
    for name, size in (("height", height), ("width", width)):
        if not isinstance(size, int) or size < 2 or size % 2:
            raise ValueError(f"{name} must be a positive even int (the image splits into quadrants), got {size!r}")
    seen = torch.zeros(height, width, dtype=torch.bool)
    h, w = height // 2, width // 2
    seen[h:, :w] = True  # bottom-left
    if observed >= 2:
        seen[:h, :w] = True  # top-left
    if observed == 3:
        seen[:h, w:] = True  # top-right
    return seen


def mask_quadrants(images: torch.Tensor, observed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The conditional story's data for quadrant completion.

    :param images: (N, H, W) or (N, 1, H, W), pixels in [0, 1] (binary for a Bernoulli story).
    :param observed: how many quadrants are seen (1, 2 or 3; see the module docstring).
    :returns: ``x`` (N, H * W), the image with the missing pixels set to :data:`MISSING`, and
        ``y`` (N, H * W), the whole image (a story scores it where ``x == MISSING``); float images
        keep their dtype, others become float32.
    :raises ValueError: images of another shape or with pixels outside [0, 1]; a bad ``observed``.
    """
    if not torch.is_tensor(images) or images.dim() not in (3, 4) or (images.dim() == 4 and images.shape[1] != 1):
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"images must be a tensor (N, H, W) or (N, 1, H, W), got {shape}")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"images must have pixels in [0, 1], got values in [{images.min().item()}, {images.max().item()}]")
    height, width = images.shape[-2:]
    seen = observed_quadrant_mask(observed, int(height), int(width)).to(images.device)
    y = images.reshape(images.shape[0], height * width)
    y = y if y.is_floating_point() else y.float()
    x = torch.where(seen.flatten(), y, torch.full_like(y, MISSING))
    return x, y
