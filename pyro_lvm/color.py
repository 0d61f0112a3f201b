"""sRGB <-> CIE L*a*b* conversion in torch: differentiable, batched, on any device.

The conversion is the standard one (sRGB companding, the sRGB/D65 RGB -> XYZ matrix,
the D65 white point for the 2 degree observer, CIE 1976 L*a*b*), the same convention
as ``skimage.color.rgb2lab`` / ``lab2rgb`` with their defaults. ``L`` lies in [0, 100];
``a`` and ``b`` lie roughly in [-128, 127] (within about [-87, 99] and [-108, 95]
for colours in the sRGB gamut).

Both functions take the colour channels along ``channel_dim`` (default -3, i.e. images
of shape (..., 3, H, W)); every other dim is a batch dim.
"""

from __future__ import annotations

import torch

__all__ = ["rgb_to_lab", "lab_to_rgb", "split_lab", "check_finite", "WHITE_D65"]

#: Reference white of the D65 illuminant, 2 degree observer (X, Y, Z), as in scikit-image.
WHITE_D65 = (0.95047, 1.0, 1.08883)

_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_EPSILON = 0.008856  # (6/29)**3 as rounded by the CIE
_KAPPA = 7.787  # (29/6)**2 / 3
_TINY = 1e-12  # keeps fractional powers away from 0, where their gradient is infinite


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` when ``t`` holds NaN or infinite values."""
    bad = ~torch.isfinite(t)
    if bad.any():
        raise ValueError(f"{name} holds NaN or infinite values ({int(bad.sum())} of {t.numel()}); expected finite values")


def _move_channels_last(t: torch.Tensor, channel_dim: int, name: str, expected: str, hint: str = "") -> torch.Tensor:
    """Check a colour tensor (float dtype first, then 3 channels, then finite) and move its channels last.

    :param expected: what its values should be, for the dtype message (e.g. "sRGB values in [0, 1]").
    :param hint: how to convert a tensor of the wrong dtype, appended to that message.
    """
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating point tensor of {expected}, got dtype {t.dtype}{hint}")
    if t.dim() == 0 or not -t.dim() <= channel_dim < t.dim() or t.shape[channel_dim] != 3:
        raise ValueError(f"{name} must have 3 colour channels along dim {channel_dim}, got shape {tuple(t.shape)}")
    check_finite(t, name)
    return t.movedim(channel_dim, -1)


def _matrix(t: torch.Tensor) -> torch.Tensor:
    return torch.tensor(_XYZ_FROM_RGB, dtype=t.dtype, device=t.device)


def rgb_to_lab(rgb: torch.Tensor, channel_dim: int = -3) -> torch.Tensor:
    """Convert sRGB values in [0, 1] to CIE L*a*b* (D65, 2 degree observer).

    :param rgb: tensor with 3 channels (R, G, B) along ``channel_dim``, values in [0, 1],
        e.g. images (N, 3, H, W).
    :param channel_dim: the colour dim of ``rgb`` (and of the result).
    :returns: L*a*b* of the same shape: L in [0, 100], a and b roughly in [-128, 127].
    :raises ValueError: if ``rgb`` is not a float tensor, the channel dim does not have size 3,
        or values are NaN, infinite or outside [0, 1].
    """
    c = _move_channels_last(rgb, channel_dim, "rgb", "sRGB values in [0, 1]", " (8-bit images: rgb.float() / 255)")
    if c.numel() and (c.min() < -1e-4 or c.max() > 1 + 1e-4):
        raise ValueError(f"rgb values must lie in [0, 1], got range [{float(c.min()):.4g}, {float(c.max()):.4g}]")
    c = c.clamp(0.0, 1.0)
    linear = torch.where(c > 0.04045, ((c.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = linear @ _matrix(c).T / torch.tensor(WHITE_D65, dtype=c.dtype, device=c.device)
    f = torch.where(xyz > _EPSILON, xyz.clamp_min(_TINY) ** (1.0 / 3.0), _KAPPA * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(-1)
    lab = torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=-1)
    return lab.movedim(-1, channel_dim)


def split_lab(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sRGB images to the input and the target of colorization: their lightness and their colour.

    :param rgb: sRGB images (N, 3, H, W), values in [0, 1].
    :returns: L* (N, 1, H, W) in [0, 100] and ab (N, 2, H, W), both contiguous; see :func:`rgb_to_lab`.
    :raises ValueError: for a tensor that is not 4-D, and as :func:`rgb_to_lab`.
    """
    if not torch.is_tensor(rgb) or rgb.dim() != 4:
        got = tuple(rgb.shape) if torch.is_tensor(rgb) else type(rgb).__name__
        raise ValueError(f"rgb must be sRGB images of shape (N, 3, H, W), got {got}")
    lab = rgb_to_lab(rgb)
    return lab[:, :1].contiguous(), lab[:, 1:].contiguous()


def lab_to_rgb(lab: torch.Tensor, channel_dim: int = -3, clip: bool = True) -> torch.Tensor:
    """Convert CIE L*a*b* (D65, 2 degree observer) to sRGB, the inverse of :func:`rgb_to_lab`.

    :param lab: tensor with 3 channels (L, a, b) along ``channel_dim``.
    :param channel_dim: the colour dim of ``lab`` (and of the result).
    :param clip: clip the result to [0, 1] (colours outside the sRGB gamut are clipped
        per channel, as ``skimage.color.lab2rgb`` does); ``False`` returns the unclipped
        values (negative linear values are companded with the linear segment).
    :returns: sRGB of the same shape.
    :raises ValueError: if ``lab`` is not a float tensor, the channel dim does not have size 3,
        or values are NaN or infinite.
    """
    c = _move_channels_last(lab, channel_dim, "lab", "L*a*b* values")
    L, a, b = c.unbind(-1)
    fy = (L + 16.0) / 116.0
    f = torch.stack((fy + a / 500.0, fy, (fy - b / 200.0).clamp_min(0.0)), dim=-1)  # z >= 0, as skimage
    xyz = torch.where(f > 0.2068966, f**3, (f - 16.0 / 116.0) / _KAPPA)
    xyz = xyz * torch.tensor(WHITE_D65, dtype=c.dtype, device=c.device)
    linear = xyz @ torch.linalg.inv(_matrix(c)).T
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055, 12.92 * linear)
    if clip:
        rgb = rgb.clamp(0.0, 1.0)
    return rgb.movedim(-1, channel_dim)
