"""Synthetic colour scenes with known segments, for colorization with a latent segmentation.

Each image is a background region plus a few rectangles and ellipses. Every region has a
class ``c``; the class fixes the region's *texture* (the pattern of its lightness) and the
*distribution* of its colour: a region takes the class's primary hue with probability
``1 - secondary_prob`` and its secondary hue otherwise (one draw per region). All textures
are two-level patterns with the same two lightness values in equal shares, so a pixel's grey
level says nothing about its colour; only the spatial pattern (texture) does, and even the
texture leaves the hue bimodal. The regression to the mean of an L2 colourizer therefore
gives desaturated colours, while a mixture over segments can put its mass on the hues.

Colours are built in CIE L*a*b* (lightness ``lightness +- contrast``, chroma ``chroma``) and
converted to sRGB with :func:`pyro_lvm.color.lab_to_rgb`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pyro_lvm.color import lab_to_rgb
from pyro_lvm.data._checks import check_int, check_nonnegative

__all__ = ["make_shapes", "TEXTURES"]

#: Names of the two-level lightness textures, one per class (in class order).
TEXTURES = ("horizontal stripes", "vertical stripes", "checkerboard", "diagonal stripes", "anti-diagonal stripes", "wide vertical stripes")


def _texture(kind: int, rows: np.ndarray, cols: np.ndarray, phase: tuple[int, int]) -> np.ndarray:
    """A {-1, +1} pattern with equal shares of both levels (period 4, or 8 for the wide stripes)."""
    r, c = rows + phase[0], cols + phase[1]
    if kind == 0:
        on = (r // 2) % 2
    elif kind == 1:
        on = (c // 2) % 2
    elif kind == 2:
        on = ((r // 2) + (c // 2)) % 2
    elif kind == 3:
        on = ((r + c) // 2) % 2
    elif kind == 4:
        on = ((r - c) // 2) % 2
    else:
        on = (c // 4) % 2
    return 2.0 * on - 1.0


def _region_masks(rng: np.random.Generator, size: int, num_shapes: int) -> list[np.ndarray]:
    rows, cols = np.mgrid[0:size, 0:size]
    masks = [np.ones((size, size), dtype=bool)]
    for _ in range(num_shapes):
        h, w = rng.integers(size // 4, size // 2 + size // 4, size=2)
        r0, c0 = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        if rng.random() < 0.5:
            mask = (rows >= r0) & (rows < r0 + h) & (cols >= c0) & (cols < c0 + w)
        else:
            cr, cc = r0 + (h - 1) / 2, c0 + (w - 1) / 2
            mask = ((rows - cr) / (h / 2)) ** 2 + ((cols - cc) / (w / 2)) ** 2 <= 1.0
        masks.append(mask)
    return masks


def make_shapes(
    num_images: int,
    size: int = 32,
    num_classes: int = 4,
    max_shapes: int = 3,
    secondary_prob: float = 0.3,
    lightness: float = 60.0,
    contrast: float = 15.0,
    chroma: float = 40.0,
    noise: float = 2.0,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``num_images`` scenes of textured, coloured regions with their class map.

    Class ``c`` has texture :data:`TEXTURES` ``[c]``, primary hue angle ``2 pi c / C`` and
    secondary hue angle ``2 pi c / C + pi + pi / C`` in the ab plane (so no secondary hue
    equals a primary one). Lightness and ab get independent Gaussian pixel noise of
    standard deviation ``noise``.

    :param num_images: N.
    :param size: image height and width in pixels.
    :param num_classes: C, between 2 and ``len(TEXTURES)``.
    :param max_shapes: each image has 1 to ``max_shapes`` shapes on its background.
    :param secondary_prob: probability that a region takes its class's secondary hue.
    :param lightness: mean L* of every region.
    :param contrast: half the L* difference between a texture's two levels.
    :param chroma: distance of each hue from the grey axis in the ab plane.
    :param noise: pixel noise (L* and ab units).
    :param seed: the same seed gives the same scenes.
    :returns: ``images`` float32 in [0, 1] of shape (N, 3, size, size) (sRGB) and ``segments``
        int64 of shape (N, size, size), the class of each pixel.
    :raises TypeError: when a count or size is not an integer.
    :raises ValueError: naming the argument that is out of its range.
    """
    check_int("num_images", num_images, 1)
    check_int("size", size, 8)
    if not 2 <= check_int("num_classes", num_classes, 2) <= len(TEXTURES):
        raise ValueError(f"num_classes must be between 2 and {len(TEXTURES)}, got {num_classes}")
    check_int("max_shapes", max_shapes, 1)
    for name, value in (("contrast", contrast), ("chroma", chroma), ("noise", noise)):
        check_nonnegative(name, value)
    if not 0.0 <= secondary_prob <= 1.0:
        raise ValueError(f"secondary_prob must be in [0, 1], got {secondary_prob}")
    if not (0 <= lightness - contrast and lightness + contrast <= 100):
        raise ValueError(f"lightness +- contrast must stay in [0, 100], got {lightness} +- {contrast}")
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    angles = 2 * math.pi * np.arange(num_classes) / num_classes
    hues = np.stack([angles, angles + math.pi + math.pi / num_classes], axis=1)  # (C, 2)
    lab = np.empty((num_images, size, size, 3))
    segments = np.empty((num_images, size, size), dtype=np.int64)
    for n in range(num_images):
        classes = np.empty((size, size), dtype=np.int64)
        for mask in _region_masks(rng, size, int(rng.integers(1, max_shapes + 1))):
            c = int(rng.integers(num_classes))
            hue = hues[c, int(rng.random() < secondary_prob)]
            pattern = _texture(c, rows, cols, tuple(rng.integers(0, 8, size=2)))
            lab[n, mask, 0] = lightness + contrast * pattern[mask]
            lab[n, mask, 1] = chroma * math.cos(hue)
            lab[n, mask, 2] = chroma * math.sin(hue)
            classes[mask] = c
        segments[n] = classes
    lab += noise * rng.standard_normal(lab.shape)
    lab[..., 0] = lab[..., 0].clip(0.0, 100.0)
    images = lab_to_rgb(torch.as_tensor(lab, dtype=torch.float32), channel_dim=-1).permute(0, 3, 1, 2).contiguous()
    return images, torch.from_numpy(segments)
