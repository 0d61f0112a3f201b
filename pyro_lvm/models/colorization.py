"""Colorization with a latent per-pixel segmentation, and the L2 regression baseline.

The story (the lecture notes' example): ``x`` is the lightness L* of an image, ``y`` its
colour (the a*, b* channels of CIE L*a*b*), and ``z`` a segmentation that is never labelled:

    p(y | x) = prod over pixels (i, j) of  sum_k  p(z_ij = k | x) p(y_ij | z_ij = k, x).

``p(z | x)`` is a small fully convolutional network (per-pixel logits over K segments) and
``p(y_ij | z_ij = k, x)`` a Gaussian in the ab plane whose mean and scale per segment and
pixel come from a colour head on the same convolutional trunk (or, with the ``"palette"``
head, one Gaussian per segment shared by all pixels). Given ``x`` the ``z_ij`` are
independent, so the sum factorizes per pixel and :class:`~pyro.infer.TraceEnum_ELBO`
enumerates it exactly (empty guide); :class:`~pyro_lvm.infer.HardEM` replaces it by the
argmax segment per pixel.

ab is the chroma space because L*a*b* separates lightness (the input) from colour, and
Euclidean ab distances are the perceptual distances used by the AuC metric of Zhang et al.
(2016). The baseline :class:`ColorRegressor` has the same trunk and regresses ab directly
with an L2 loss (a fixed-scale Gaussian), so it predicts the conditional mean: where the
colour given the grey image is multimodal it averages the modes into desaturated, blurry
colours.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex
from torch import nn
from torch.nn import functional as F

from pyro_lvm.color import check_finite
from pyro_lvm.models.base import LatentVariableModel

__all__ = ["LatentSegmentationColorizer", "ColorRegressor", "conv_trunk", "check_colorization_data"]

#: Range of the L* input and bound on |a|, |b| accepted by the models.
L_RANGE = (0.0, 100.0)
AB_BOUND = 128.0
_L_TOL = 1e-3


def conv_trunk(hidden: int = 32, num_layers: int = 4) -> nn.Sequential:
    """A small fully convolutional trunk: (N, 1, H, W) -> (N, hidden, H, W).

    ``num_layers`` 3x3 convolutions, each followed by GroupNorm and ReLU, with dilations
    1, 2, 4, 1, 2, 4, ... (zero padding keeps H and W), so the receptive field grows quickly
    enough to see textures (17 pixels across with 4 layers).
    """
    if hidden < 1 or num_layers < 1:
        raise ValueError(f"hidden and num_layers must be >= 1, got {hidden} and {num_layers}")
    layers: list[nn.Module] = []
    in_ch = 1
    for i in range(num_layers):
        d = (1, 2, 4)[i % 3]
        layers += [nn.Conv2d(in_ch, hidden, 3, padding=d, dilation=d), nn.GroupNorm(math.gcd(hidden, 8), hidden), nn.ReLU()]
        in_ch = hidden
    return nn.Sequential(*layers)


def check_colorization_data(x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    """Check a batch: ``x`` L* (N, 1, H, W) in [0, 100]; ``y`` ab (N, 2, H, W) with ``|a|, |b| <= 128``.

    :raises ValueError: naming the argument, what was wrong and what was expected.
    """
    _check_image(x, "x", "lightness L*", 1, None)
    if x.numel() == 0:
        raise ValueError(f"x is empty (shape {tuple(x.shape)}); expected at least one pixel")
    check_finite(x, "x")
    lo, hi = float(x.min()), float(x.max())
    if lo < L_RANGE[0] - _L_TOL or hi > L_RANGE[1] + _L_TOL:
        raise ValueError(f"x must hold L* values in [0, 100], got range [{lo:.4g}, {hi:.4g}] (convert RGB with pyro_lvm.color.rgb_to_lab)")
    if y is None:
        return
    n, _, h, w = x.shape
    _check_image(y, "y", "ab colours", 2, (n, 2, h, w))
    check_finite(y, "y")
    if not y.abs().max() <= AB_BOUND:
        raise ValueError(f"y must hold a*, b* values in [-{AB_BOUND:g}, {AB_BOUND:g}], got max |y| = {float(y.abs().max()):.4g}")


def _check_image(t, name: str, what: str, channels: int, shape: tuple[int, ...] | None) -> None:
    """Raise ``ValueError`` unless ``t`` is a float tensor (N, channels, H, W), of ``shape`` when given."""
    if not torch.is_tensor(t) or not t.is_floating_point():
        got = f"dtype {t.dtype}" if torch.is_tensor(t) else type(t).__name__
        raise ValueError(f"{name} must be a floating point tensor of {what}, got {got}")
    if t.dim() != 4 or t.shape[1] != channels or (shape is not None and tuple(t.shape) != shape):
        match = f" = {shape} to match x" if shape is not None else ""
        raise ValueError(f"{name} must be a float tensor of {what} with shape (N, {channels}, H, W){match}, got {tuple(t.shape)}")


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - 50.0) / 50.0


class LatentSegmentationColorizer(LatentVariableModel):
    """``p(y | x) = prod_ij sum_k p(z_ij = k | x) N(y_ij | mu_ijk(x), sigma_ijk(x))``.

    :param num_segments: K, the number of latent segments (>= 1; ``latent_size``).
    :param hidden: channels of the convolutional trunk.
    :param num_layers: 3x3 convolution layers in the trunk (see :func:`conv_trunk`).
    :param color_head: ``"pixel"``: a 1x1 convolution on the trunk gives every segment its own
        mean and scale at every pixel; ``"palette"``: one mean and scale per segment, shared
        by all pixels and images (segments are then colour clusters, and learn faster).
    :param min_scale: lower bound of the Gaussian scales (ab units), which keeps the
        likelihood bounded.

    Sites of the story (:meth:`forward`), all in the plates ``"images"`` (N, dim -3), ``"rows"``
    (H, dim -2) and ``"cols"`` (W, dim -1), so ``max_plate_nesting=3``:

    - ``z``: the segment of each pixel, ``Categorical`` over K, marked for parallel enumeration;
    - ``y``: the ab colour of each pixel, event shape (2,), observed.

    The guide is empty (``z`` is enumerated): train with ``TraceEnum_ELBO`` (exact) or ``HardEM``.
    """

    max_plate_nesting = 3
    latent_sites = ("z",)

    def __init__(
        self, num_segments: int = 8, hidden: int = 32, num_layers: int = 4, color_head: str = "pixel", min_scale: float = 1.0
    ) -> None:
        super().__init__()
        if not isinstance(num_segments, int) or num_segments < 1:
            raise ValueError(f"num_segments (K) must be an integer >= 1, got {num_segments!r}")
        if color_head not in ("pixel", "palette"):
            raise ValueError(f"color_head must be 'pixel' or 'palette', got {color_head!r}")
        if not min_scale > 0:
            raise ValueError(f"min_scale must be positive, got {min_scale}")
        self.num_segments, self.color_head_kind, self.min_scale = num_segments, color_head, min_scale
        self.trunk = conv_trunk(hidden, num_layers)
        self.segment_head = nn.Conv2d(hidden, num_segments, 1)
        # initial segment means on a circle of radius 30 in ab: breaks the symmetry between segments
        angle = 2 * math.pi * torch.arange(num_segments) / num_segments
        circle = 0.6 * torch.stack((angle.cos(), angle.sin()), -1)
        if color_head == "pixel":
            self.color_head = nn.Conv2d(hidden, 4 * num_segments, 1)
            with torch.no_grad():
                self.color_head.bias.view(num_segments, 4)[:, :2] = circle
        else:
            self.palette = nn.Parameter(torch.cat((circle, torch.zeros(num_segments, 2)), -1))

    @property
    def latent_size(self) -> int:
        """K, the number of segments."""
        return self.num_segments

    def networks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The network outputs for L* ``x`` (N, 1, H, W).

        :returns: ``logits`` (N, H, W, K) of ``p(z | x)``, and ``loc`` and ``scale`` (N, H, W, K, 2)
            of ``p(y | z = k, x)`` in ab units (the same at every pixel for the ``"palette"``).
        """
        features = self.trunk(_normalize(x))
        n, _, h, w = x.shape
        logits = self.segment_head(features).permute(0, 2, 3, 1)
        if self.color_head_kind == "pixel":
            color = self.color_head(features).permute(0, 2, 3, 1).reshape(n, h, w, self.num_segments, 4)
        else:
            color = self.palette.expand(n, h, w, self.num_segments, 4)
        loc = 50.0 * color[..., :2]
        scale = self.min_scale + 10.0 * F.softplus(color[..., 2:])
        return logits, loc, scale

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The generative story for L* ``x`` (N, 1, H, W) and ab ``y`` (N, 2, H, W) (sampled if None).

        :returns: ``y`` as (N, H, W, 2), the observed or sampled ab colours.
        """
        check_colorization_data(x, y)
        logits, loc, scale = self.networks(x)
        n, _, h, w = x.shape
        obs = None if y is None else y.permute(0, 2, 3, 1)
        with pyro.plate("images", n, dim=-3), pyro.plate("rows", h, dim=-2), pyro.plate("cols", w, dim=-1):
            z = pyro.sample("z", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
            return pyro.sample("y", dist.Normal(Vindex(loc)[..., z, :], Vindex(scale)[..., z, :]).to_event(1), obs=obs)

    @torch.no_grad()
    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dist.Categorical:
        """The per-pixel segment posterior: ``p(z_ij | x, y)`` given the colours, ``p(z_ij | x)`` without.

        :returns: a ``Categorical`` over K with batch shape (N, H, W); its ``logits`` are the
            normalized log-probabilities (N, H, W, K).
        """
        check_colorization_data(x, y)
        logits, loc, scale = self.networks(x)
        if y is not None:
            logits = logits.log_softmax(-1) + dist.Normal(loc, scale).log_prob(y.permute(0, 2, 3, 1).unsqueeze(-2)).sum(-1)
        return dist.Categorical(logits=logits)

    @torch.no_grad()
    def map_latents(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The segmentation ``argmax_k`` of :meth:`posterior` (given the colours where ``y`` is given): int64 (N, H, W)."""
        return self.posterior(x, y).logits.argmax(-1)

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor, chunk_size: int = 100) -> torch.Tensor:
        """``log p(y | x)`` per image, (N,) nats: each pixel's mixture over the K segments, summed exactly.

        :param x: L* (N, 1, H, W); ``y``: ab (N, 2, H, W).
        :param chunk_size: images scored at once (memory grows with ``chunk_size * H * W * K``).
        """
        check_colorization_data(x, y)
        _check_chunk_size(chunk_size)
        scores = []
        for start in range(0, len(x), chunk_size):
            logits, loc, scale = self.networks(x[start : start + chunk_size])
            pixels = dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(loc, scale).to_event(1))
            scores.append(pixels.log_prob(y[start : start + chunk_size].permute(0, 2, 3, 1)).sum((-2, -1)))
        return torch.cat(scores)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, kind: str = "mode") -> torch.Tensor:
        """Predicted ab colours (N, 2, H, W) from the mixture ``p(y_ij | x)``.

        :param kind: ``"mode"``: the component mean with the highest mixture density, the
            mixture's mode up to the overlap of components (sharp colours); ``"mean"``: the
            mixture mean ``sum_k p(z = k | x) mu_k`` (what an L2 regressor estimates).
        """
        check_colorization_data(x)
        logits, loc, scale = self.networks(x)
        log_w = logits.log_softmax(-1)
        if kind == "mean":
            ab = (log_w.exp().unsqueeze(-1) * loc).sum(-2)
        elif kind == "mode":
            # log density of the mixture at each component mean: (N, H, W, K candidates, K components)
            lp = dist.Normal(loc.unsqueeze(-3), scale.unsqueeze(-3)).log_prob(loc.unsqueeze(-2)).sum(-1)
            best = torch.logsumexp(lp + log_w.unsqueeze(-2), -1).argmax(-1)
            ab = loc.gather(-2, best[..., None, None].expand(*best.shape, 1, 2)).squeeze(-2)
        else:
            raise ValueError(f"kind must be 'mode' or 'mean', got {kind!r}")
        return ab.permute(0, 3, 1, 2)

    @torch.no_grad()
    def sample(
        self, num_samples: int, x: torch.Tensor, return_latents: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Colour samples ``y ~ p(y | x)``: (num_samples, N, 2, H, W), and with ``return_latents`` the
        segments ``z ~ p(z | x)`` they were drawn from, (num_samples, N, H, W)."""
        _check_num_samples(num_samples)
        check_colorization_data(x)
        logits, loc, scale = self.networks(x)
        z = dist.Categorical(logits=logits).sample((num_samples,))  # (S, N, H, W)
        index = z[..., None, None].expand(*z.shape, 1, 2)
        pick = lambda t: t.expand(num_samples, *t.shape).gather(-2, index).squeeze(-2)  # noqa: E731
        y = dist.Normal(pick(loc), pick(scale)).sample().permute(0, 1, 4, 2, 3)
        return (y, z) if return_latents else y


def _check_num_samples(num_samples: int) -> None:
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")


def _check_chunk_size(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")


class ColorRegressor(LatentVariableModel):
    """The baseline: the same trunk regressing ab directly with an L2 loss.

    ``y_ij ~ N(f(x)_ij, sigma I)`` with a fixed ``sigma``, so the negative log-likelihood is
    ``|y - f(x)|^2 / (2 sigma^2)`` plus a constant: least squares, trained with the same
    :func:`~pyro_lvm.infer.train` loop (``Trace_ELBO``, empty guide). It has no latent variables
    (``latent_sites`` is empty, ``latent_size`` 0): :meth:`posterior` and :meth:`map_latents` say so.

    :param hidden: channels of the convolutional trunk.
    :param num_layers: 3x3 convolution layers in the trunk.
    :param sigma: the fixed noise scale (ab units); it only scales the loss.

    Site ``y`` (event shape (2,)) in the plates ``"images"`` (dim -3), ``"rows"`` (dim -2),
    ``"cols"`` (dim -1).
    """

    max_plate_nesting = 3
    latent_sites = ()

    def __init__(self, hidden: int = 32, num_layers: int = 4, sigma: float = 10.0) -> None:
        super().__init__()
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.sigma = sigma
        self.trunk = conv_trunk(hidden, num_layers)
        self.head = nn.Conv2d(hidden, 2, 1)

    @property
    def latent_size(self) -> int:
        """0: no latent variables."""
        return 0

    def networks(self, x: torch.Tensor) -> torch.Tensor:
        """Regressed ab (N, 2, H, W) for L* ``x`` (N, 1, H, W)."""
        return 50.0 * self.head(self.trunk(_normalize(x)))

    def _distribution(self, x: torch.Tensor) -> dist.Distribution:
        """``p(y | x)`` per pixel: batch shape (N, H, W), event shape (2,)."""
        return dist.Normal(self.networks(x).permute(0, 2, 3, 1), self.sigma).to_event(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``y ~ N(f(x), sigma)`` per pixel, for L* ``x`` (N, 1, H, W) and ab ``y`` (N, 2, H, W)."""
        check_colorization_data(x, y)
        n, _, h, w = x.shape
        obs = None if y is None else y.permute(0, 2, 3, 1)
        with pyro.plate("images", n, dim=-3), pyro.plate("rows", h, dim=-2), pyro.plate("cols", w, dim=-1):
            return pyro.sample("y", self._distribution(x), obs=obs)

    def posterior(self, *data: Any, **kwargs: Any) -> NoReturn:
        """None: the family has no latent variables."""
        raise self.cannot("posterior", "it has no latent variables (y is regressed on x directly)")

    def map_latents(self, *data: Any, **kwargs: Any) -> NoReturn:
        """None: the family has no latent variables."""
        raise self.cannot("map_latents", "it has no latent variables (y is regressed on x directly)")

    @torch.no_grad()
    def sample(self, num_samples: int, x: torch.Tensor, return_latents: bool = False) -> torch.Tensor:
        """Colour samples ``y ~ N(f(x), sigma)``: (num_samples, N, 2, H, W)."""
        if return_latents:
            raise self.cannot("sample with return_latents=True", "it has no latent variables")
        _check_num_samples(num_samples)
        check_colorization_data(x)
        return self._distribution(x).sample((num_samples,)).permute(0, 1, 4, 2, 3)

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor, chunk_size: int = 100) -> torch.Tensor:
        """``log p(y | x)`` per image, (N,) nats (``chunk_size`` images at a time)."""
        check_colorization_data(x, y)
        _check_chunk_size(chunk_size)
        return torch.cat([
            self._distribution(x[i : i + chunk_size]).log_prob(y[i : i + chunk_size].permute(0, 2, 3, 1)).sum((-2, -1))
            for i in range(0, len(x), chunk_size)
        ])

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted ab colours (N, 2, H, W)."""
        check_colorization_data(x)
        return self.networks(x)
