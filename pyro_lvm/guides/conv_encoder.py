"""A convolutional encoder for square images: stride-2 convolutions halve the resolution, then a dense layer.

An encoder in the sense of :mod:`pyro_lvm.guides`: a :class:`torch.nn.Module` called with the
images ``x`` of shape ``(..., N, side * side)`` or ``(..., N, side, side)`` (any leading sample or
enumeration dims) that returns features ``(..., N, feature_dim)``; a guide family adds the layer
from the features to its parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyro_lvm.nets import activation as activation_module
from pyro_lvm.nets import check_widths

__all__ = ["ConvEncoder"]


class ConvEncoder(nn.Module):
    """``x -> [Conv2d(3x3, stride 2) -> activation] per channel count -> flatten -> Linear -> activation``.

    Each stride-2 convolution (padding 1) maps a side ``s`` to ``ceil(s / 2)``: 28 -> 14 -> 7 for
    MNIST with two, 8 -> 4 -> 2 for the 8x8 digits.

    :param side: images are ``side x side`` with one channel.
    :param channels: output channels of the convolutions, one stride-2 convolution each.
    :param feature_dim: F, size of the returned features.
    :param activation: name of the activation (see :func:`pyro_lvm.nets.activation`).
    """

    def __init__(self, side: int, channels: Sequence[int] = (32, 64), feature_dim: int = 256, activation: str = "relu") -> None:
        super().__init__()
        channels = check_widths(channels, "channels")
        if side < 1 or feature_dim < 1 or not channels:
            raise ValueError(f"side and feature_dim must be >= 1 and channels non-empty, got {side}, {feature_dim}, {channels}")
        self.side, self.feature_dim = side, feature_dim
        layers: list[nn.Module] = []
        size = side
        for c_in, c_out in zip((1, *channels[:-1]), channels):
            layers += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1), activation_module(activation)]
            size = (size + 1) // 2
        self.convolutions = nn.Sequential(*layers)
        self.dense = nn.Sequential(nn.Linear(channels[-1] * size * size, feature_dim), activation_module(activation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features of the images ``x`` (..., N, side * side) or (..., N, side, side): (..., N, feature_dim)."""
        pixels = self.side * self.side
        if x.shape[-1:] == (pixels,):
            lead = x.shape[:-1]
        elif x.shape[-2:] == (self.side, self.side):
            lead = x.shape[:-2]
        else:
            raise ValueError(f"ConvEncoder expects images (..., N, {pixels}) or (..., N, {self.side}, {self.side}), "
                             f"got {tuple(x.shape)}")
        h = self.convolutions(x.reshape(-1, 1, self.side, self.side))
        return self.dense(h.flatten(1)).reshape(*lead, self.feature_dim)
