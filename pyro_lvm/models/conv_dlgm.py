"""Convolutional deep latent Gaussian model: the VAE story with a decoder that upsamples by depth-to-space.

``z_n ~ N(0, I)``, ``x_n | z_n ~ Bernoulli(logits = g(z_n))`` (or ``Normal(g(z_n), sigma)``), where
``g`` maps ``z`` by a dense layer to a ``(C, side / 4, side / 4)`` feature map, then twice raises the
resolution by a stride-1 convolution to four times the channels and a depth-to-space reshape
(:class:`torch.nn.PixelShuffle`, factor 2), as in the lecture notes; a per-pixel bias ends it.
Pair it with a guide whose encoder is a :class:`~pyro_lvm.guides.conv_encoder.ConvEncoder`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyro_lvm.models.dlgm import DeepLatentGaussian
from pyro_lvm.nets import activation as activation_module
from pyro_lvm.nets import check_widths

__all__ = ["ConvDecoder", "ConvDeepLatentGaussian"]


class ConvDecoder(nn.Module):
    """``z (..., z_dim) -> logits or means (..., side * side)``.

    ``Linear -> activation -> reshape (C0, side/4, side/4) -> [Conv2d(3x3, stride 1) to 4 C_next ->
    PixelShuffle(2)]`` twice (an activation between), the second one ending in one channel, then a
    learned per-pixel ``bias`` (side * side,).

    :param z_dim: latent size.
    :param side: images are ``side x side``; a multiple of 4.
    :param channels: ``(C0, C1)``: channels of the first feature map and after the first upsampling.
    :param activation: name of the activation (see :func:`pyro_lvm.nets.activation`).
    """

    def __init__(self, z_dim: int, side: int, channels: Sequence[int] = (64, 32), activation: str = "relu") -> None:
        super().__init__()
        channels = check_widths(channels, "channels")
        if len(channels) != 2:
            raise ValueError(f"channels must be two positive ints (C0, C1), got {channels!r}")
        c0, c1 = channels
        if side < 4 or side % 4:
            raise ValueError(f"the convolutional decoder doubles the resolution twice: side must be a multiple of 4, got {side}")
        self.z_dim, self.side, self.start = z_dim, side, (c0, side // 4, side // 4)
        self.dense = nn.Sequential(nn.Linear(z_dim, c0 * (side // 4) ** 2), activation_module(activation))
        self.upsample = nn.Sequential(
            nn.Conv2d(c0, 4 * c1, kernel_size=3, padding=1), nn.PixelShuffle(2), activation_module(activation),
            nn.Conv2d(c1, 4, kernel_size=3, padding=1), nn.PixelShuffle(2),
        )
        self.bias = nn.Parameter(torch.zeros(side * side))

    @property
    def output_layer(self) -> nn.Conv2d:
        """The last convolution (its weight tells the decoder's device and dtype)."""
        return self.upsample[-2]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` (..., z_dim) -> (..., side * side); the leading dims are kept."""
        lead = z.shape[:-1]
        h = self.dense(z.reshape(-1, self.z_dim)).reshape(-1, *self.start)
        return self.upsample(h).reshape(*lead, self.side * self.side) + self.bias


class ConvDeepLatentGaussian(DeepLatentGaussian):
    """The deep latent Gaussian model with a :class:`ConvDecoder`, the face of
    :class:`~pyro_lvm.models.base.LatentVariableModel` (story, sites and questions of
    :class:`~pyro_lvm.models.DeepLatentGaussian`).

    :param side: images are ``side x side`` (D = side * side), a multiple of 4.
    :param z_dim: latent dimension.
    :param channels: the decoder's ``(C0, C1)``.
    :param activation: activation name.
    :param likelihood: ``"bernoulli"`` or ``"gaussian"``.
    :param output_bias: optional (D,) initial per-pixel bias (see :meth:`output_bias_from_data`).
    """

    max_plate_nesting = 1
    latent_sites = ("z",)

    def __init__(
        self,
        side: int,
        z_dim: int = 50,
        channels: Sequence[int] = (64, 32),
        activation: str = "relu",
        likelihood: str = "bernoulli",
        output_bias: torch.Tensor | None = None,
    ) -> None:
        super().__init__(side * side, z_dim, (), activation, likelihood)
        self.decoder = ConvDecoder(z_dim, side, channels, activation)
        if output_bias is not None:
            if output_bias.shape != (side * side,):
                raise ValueError(f"output_bias must have shape ({side * side},), got {tuple(output_bias.shape)}")
            with torch.no_grad():
                self.decoder.bias.copy_(output_bias)
