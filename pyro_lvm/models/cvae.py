"""The conditional VAE (Sohn et al., 2015) for completing partly observed binary images, and its baseline.

Story, for an input ``x`` (an image whose missing pixels are :data:`~pyro_lvm.data.quadrants.MISSING`)
and the image ``y``::

    z_n | x_n ~ N(mu(x_n), diag(sigma(x_n)^2))         the prior network p(z | x)
    y_nd | z_n, x_n ~ Bernoulli(logits = g(x_n, z_n)_d)   for every pixel d missing from x_n

so ``p(y | x) = int p(z | x) p(y | z, x) dz`` scores only the missing pixels (the observed ones
are given). The recognition network ``q(z | x, y)`` is a guide of :mod:`pyro_lvm.guides` whose
encoder reads both arguments (``make_guide("normal", ..., inputs=("x", "y"), model=...)``); the
family builds one as its own :meth:`ConditionalVAE.guide`. ``log_likelihood`` is the importance-weighted
``log p(y_n | x_n)`` (:func:`~pyro_lvm.infer.importance_log_likelihood`).

The baseline, :class:`CompletionRegressor`, is the same decoder network without ``z``, trained as
a deterministic regressor: ``y_nd ~ Bernoulli(logits = f(x_n)_d)`` on the missing pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from pyro_lvm.data.quadrants import MISSING
from pyro_lvm.guides import LatentGuide, make_guide
from pyro_lvm.guides.heads import positive_scale
from pyro_lvm.infer import importance_log_likelihood
from pyro_lvm.models.base import LatentVariableModel
from pyro_lvm.nets import MLP

__all__ = ["CompletionRegressor", "ConditionalVAE", "check_completion_data"]


def check_completion_data(x: torch.Tensor, y: torch.Tensor | None, data_dim: int) -> None:
    """Check the story's data: ``x`` (N, D) with missing pixels :data:`MISSING`, ``y`` (N, D) or None.

    :raises ValueError: naming the argument whose shape is not (N, data_dim).
    """
    if not torch.is_tensor(x) or x.dim() != 2 or x.shape[1] != data_dim:
        raise ValueError(f"x must be a tensor (N, {data_dim}) (the input image, missing pixels {MISSING}), "
                         f"got {tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    if y is not None and (not torch.is_tensor(y) or y.shape != x.shape):
        raise ValueError(f"y must be a tensor of the shape of x, {tuple(x.shape)} (the whole image), "
                         f"got {tuple(y.shape) if torch.is_tensor(y) else type(y).__name__}")


def _missing_bernoulli(logits: torch.Tensor, x: torch.Tensor) -> dist.Distribution:
    """Bernoulli pixels (..., N, D) scored only where ``x == MISSING``: batch shape (..., N), event shape (D,)."""
    return dist.Bernoulli(logits=logits).mask(x == MISSING).to_event(1)


def _complete(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x`` with its missing pixels taken from ``y`` (..., N, D)."""
    return torch.where(x == MISSING, y, x)


class ConditionalVAE(LatentVariableModel):
    """The conditional VAE with the face of :class:`~pyro_lvm.models.base.LatentVariableModel`.

    :param data_dim: D, pixels per image (784 for MNIST).
    :param z_dim: the latent's dimension (``latent_size``).
    :param hidden_dims: hidden widths of the prior network, the decoder and the recognition network.
    :param activation: their activation, by name (see :func:`pyro_lvm.nets.activation`).

    Sites: ``z`` (latent, event shape (z_dim,)) and ``y`` (observed, event shape (D,), scored where
    ``x`` is missing), both in the plate ``"data"`` at dim -1. Networks broadcast over leading
    sample dimensions of ``z`` (the evaluators' particles).
    """

    max_plate_nesting = 1
    latent_sites = ("z",)

    def __init__(self, data_dim: int, z_dim: int = 16, hidden_dims: Sequence[int] = (500, 500),
                 activation: str = "relu") -> None:
        super().__init__()
        if data_dim < 1 or z_dim < 1:
            raise ValueError(f"data_dim and z_dim must be >= 1, got {data_dim} and {z_dim}")
        self.data_dim, self.z_dim = data_dim, z_dim
        self.prior_net = MLP(data_dim, hidden_dims, 2 * z_dim, activation)
        self.decoder = MLP(data_dim + z_dim, hidden_dims, data_dim, activation)
        self.recognition = make_guide("normal", (data_dim, data_dim), z_dim, inputs=("x", "y"), model=self.forward,
                                      hidden_dims=hidden_dims, activation=activation)

    @property
    def latent_size(self) -> int:
        """The latent dimension ``z_dim``."""
        return self.z_dim

    def prior(self, x: torch.Tensor) -> dist.Distribution:
        """The prior network ``p(z | x)`` for ``x`` (N, D): batch shape (N,), event shape (z_dim,)."""
        loc, raw = self.prior_net(x).chunk(2, dim=-1)
        return dist.Normal(loc, positive_scale(raw)).to_event(1)

    def likelihood_dist(self, x: torch.Tensor, z: torch.Tensor) -> dist.Distribution:
        """``p(y | z, x)`` for ``z`` (..., N, z_dim): batch shape (..., N), event (D,), scored where x is missing."""
        h = torch.cat([x.expand(*z.shape[:-1], x.shape[-1]), z], dim=-1)
        return _missing_bernoulli(self.decoder(h), x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The story for inputs ``x`` (N, D) and images ``y`` (N, D) (None: draw the missing pixels).

        :returns: ``y`` (N, D), drawn where missing when ``y`` is None.
        """
        check_completion_data(x, y, self.data_dim)
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", self.prior(x))
            return pyro.sample("y", self.likelihood_dist(x, z), obs=y)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The recognition network ``q(z | x, y)`` (its own, a :mod:`pyro_lvm.guides` guide reading both)."""
        if y is None:
            raise ValueError("the recognition network q(z | x, y) needs the image y; to draw completions use sample(num_samples, x)")
        return self.recognition(x, y)

    def _proposal(self, guide: Callable | None) -> Callable:
        """``guide`` (default the family's own), checked to read the observation ``y``."""
        guide = self.guide if guide is None else guide
        if isinstance(guide, LatentGuide):
            read = {key for site in guide.sites for key in site.inputs}
            if not read & {"y", 1}:
                raise ValueError(f"the guide's encoders read {sorted(map(str, read))} but not the observed argument 'y': a "
                                 f"proposal for p(z | x, y) must read the image (inputs=('x', 'y'), model=...)")
        return guide

    @torch.no_grad()
    def posterior(self, x: torch.Tensor, y: torch.Tensor, *, guide: Callable | None = None) -> dist.Distribution:
        """The guide's ``q(z | x, y)``: batch shape (N,), event shape (z_dim,)."""
        guide = self._proposal(guide)
        with poutine.block():
            return poutine.trace(guide).get_trace(x, y).nodes["z"]["fn"]

    @torch.no_grad()
    def map_latents(self, x: torch.Tensor, y: torch.Tensor, *, guide: Callable | None = None) -> torch.Tensor:
        """The mean of ``q(z | x, y)``, (N, z_dim)."""
        return self.posterior(x, y, guide=guide).mean

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor, *, guide: Callable | None = None,
                       num_samples: int = 1000, chunk_size: int = 100) -> torch.Tensor:
        """``log p(y_n | x_n)`` of the missing pixels, (N,) nats, importance-sampled with ``q(z | x, y)``.

        :param guide: the proposal (default the family's own); a :mod:`pyro_lvm.guides` guide must read ``y``.
        :raises ValueError: a guide whose encoders do not read ``y``; see also
            :func:`~pyro_lvm.infer.importance_log_likelihood`.
        """
        return importance_log_likelihood(self.model, self._proposal(guide), x, y, num_samples=num_samples, chunk_size=chunk_size)

    @torch.no_grad()
    def sample(self, num_samples: int, x: torch.Tensor, return_latents: bool = False,
               mean: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Completions of ``x`` (N, D): (num_samples, N, D), the missing pixels drawn from ``p(y | z, x)``,
        ``z ~ p(z | x)``; with ``return_latents`` also ``z`` (num_samples, N, z_dim).

        :param mean: the pixels' probabilities instead of draws.
        """
        check_completion_data(x, None, self.data_dim)
        z = self.prior(x).sample((num_samples,))
        py = self.likelihood_dist(x, z)
        y = _complete(x, py.mean if mean else py.sample())
        return (y, z) if return_latents else y


class CompletionRegressor(LatentVariableModel):
    """The baseline: the decoder network without ``z``, ``y_nd ~ Bernoulli(logits = f(x_n)_d)`` where x is missing.

    A deterministic regressor trained by maximum likelihood (binary cross-entropy on the missing
    pixels; :func:`~pyro_lvm.infer.train` with the empty guide); ``log_likelihood`` is exact. No
    latent variables: ``posterior`` and ``map_latents`` say so.

    :param data_dim: D; ``hidden_dims``, ``activation``: the network, as in :class:`ConditionalVAE`.
    """

    max_plate_nesting = 1
    latent_sites = ()

    def __init__(self, data_dim: int, hidden_dims: Sequence[int] = (500, 500), activation: str = "relu") -> None:
        super().__init__()
        if data_dim < 1:
            raise ValueError(f"data_dim must be >= 1, got {data_dim}")
        self.data_dim = data_dim
        self.network = MLP(data_dim, hidden_dims, data_dim, activation)

    @property
    def latent_size(self) -> int:
        """0: no latent variables."""
        return 0

    def likelihood_dist(self, x: torch.Tensor) -> dist.Distribution:
        """``p(y | x)``: batch shape (N,), event shape (D,), scored where ``x`` is missing."""
        return _missing_bernoulli(self.network(x), x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``y ~ Bernoulli(f(x))`` on the missing pixels of ``x`` (N, D); ``y`` (N, D) or None."""
        check_completion_data(x, y, self.data_dim)
        with pyro.plate("data", x.shape[0], dim=-1):
            return pyro.sample("y", self.likelihood_dist(x), obs=y)

    def posterior(self, *data: Any, **kwargs: Any) -> NoReturn:
        """None: the family has no latent variables."""
        raise self.cannot("posterior", "it has no latent variables (y is regressed on x directly)")

    def map_latents(self, *data: Any, **kwargs: Any) -> NoReturn:
        """None: the family has no latent variables."""
        raise self.cannot("map_latents", "it has no latent variables (y is regressed on x directly)")

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log p(y_n | x_n)`` of the missing pixels, (N,) nats, exact."""
        check_completion_data(x, y, self.data_dim)
        return self.likelihood_dist(x).log_prob(y)

    @torch.no_grad()
    def sample(self, num_samples: int, x: torch.Tensor, return_latents: bool = False, mean: bool = False) -> torch.Tensor:
        """Completions of ``x``: (num_samples, N, D), missing pixels drawn (``mean``: their probabilities)."""
        if return_latents:
            raise self.cannot("sample with return_latents=True", "it has no latent variables")
        check_completion_data(x, None, self.data_dim)
        py = self.likelihood_dist(x)
        y = py.mean if mean else py.sample((num_samples,))
        return _complete(x, y.expand(num_samples, *x.shape))
