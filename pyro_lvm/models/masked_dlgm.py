"""The deep latent Gaussian model with the mask as data: each example observes the values where ``mask`` is True.

``z_n ~ N(0, I)``, ``x_nd | z_n ~ p(x_nd | f(z_n)_d)`` (Bernoulli or Gaussian, as in
:class:`~pyro_lvm.models.DeepLatentGaussian`), scored where ``mask_nd``. The values are
independent given ``z``, so summing the missing ones out is dropping them: ``forward(x, mask)`` is
the exact story of ``p(x_observed)``, trained and evaluated like the VAE, any mask. The missing
values are never read (fill them with anything, e.g. zeros). The story records the decoder's mean
``E[x | z]`` (N, D) as the ``pyro.deterministic`` site ``"mean"``, whose importance-weighted posterior
expectation is the imputation of Mattei & Frellsen (2019): :meth:`impute`.

:meth:`with_missing` is the lecture notes' program: the same story with the missing values as the
latent site ``"x_missing"``, one value per element of the plate ``"values"`` (size D, dim -2, inside
the data plate at dim -1, so the site's batch shape is (D, N), the transpose of x) and scored where
``~mask``, for a guide ``q(z) q(x_missing; phi)`` (:class:`~pyro_lvm.infer.imputation.MissingValuesGuide`).
The plate is what lets ``TraceEnum_ELBO`` enumerate each binary value on its own.

The face's methods take ``(x, mask)`` where :class:`~pyro_lvm.models.DeepLatentGaussian`'s take ``(x, index)``.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch

from pyro_lvm.guides import LatentGuide
from pyro_lvm.infer import importance_draws, posterior_expectation
from pyro_lvm.infer.imputation import values_in_plate
from pyro_lvm.models.dlgm import DeepLatentGaussian
from pyro_lvm.nets import flatten_examples

__all__ = ["MaskedDeepLatentGaussian"]


class MaskedDeepLatentGaussian(DeepLatentGaussian):
    """The VAE's story observing the values where ``mask`` is True (constructor as :class:`~pyro_lvm.models.DeepLatentGaussian`;
    a trained VAE's weights load with ``load_state_dict``).

    Sites: ``z`` (latent), ``x`` (observed where ``mask``), ``mean`` (deterministic, (D,) per example),
    and in :meth:`with_missing` ``x_missing`` (latent where ``~mask``, batch shape (D, N) in the plate
    ``"values"`` at dim -2); all in the plate ``"data"`` at dim -1.
    """

    def check_mask(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, mask)`` flattened to (N, D).

        :raises ValueError: naming ``mask`` when it is not a bool tensor, has another shape than ``x``, or
            leaves an example with no observed value (naming the first such rows).
        """
        x = flatten_examples(x, self.data_dim)
        if not torch.is_tensor(mask) or mask.dtype != torch.bool:
            what = f"a {mask.dtype} tensor" if torch.is_tensor(mask) else type(mask).__name__
            raise ValueError(f"mask must be a torch.bool tensor (True where a value is observed), got {what}")
        if mask.shape[:1] != x.shape[:1] or mask[0].numel() != self.data_dim:
            raise ValueError(f"mask must have the shape of x, (N, {self.data_dim}) or (N, ...) with {self.data_dim} values "
                             f"per example for N = {x.shape[0]} examples; got {tuple(mask.shape)}")
        mask = mask.reshape(x.shape)
        empty = (~mask.any(-1)).nonzero().flatten()
        if len(empty):
            raise ValueError(f"mask masks every value of examples {empty[:5].tolist()}{' ...' if len(empty) > 5 else ''} "
                             f"({len(empty)} of {len(x)}): an example needs at least one observed value")
        return x, mask

    def _story(self, x: torch.Tensor, mask: torch.Tensor, missing_latent: bool) -> torch.Tensor:
        x, mask = self.check_mask(x, mask)
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", self.prior(x.device))
            px = self.likelihood_dist(z).base_dist  # batch (..., N, D)
            pyro.deterministic("mean", px.mean, event_dim=1)
            pyro.sample("x", px.mask(mask).to_event(1), obs=torch.where(mask, x, torch.zeros((), dtype=x.dtype)))
            if missing_latent:
                with pyro.plate("values", x.shape[-1], dim=-2):
                    pyro.sample("x_missing", self._per_value(px).mask(~mask.mT))
        return z

    @staticmethod
    def _per_value(px: dist.Distribution) -> dist.Distribution:
        """``px`` (Bernoulli or Normal, batch (..., N, D)) laid out for the plate ``"values"``: batch (..., D, N)
        (:func:`~pyro_lvm.infer.imputation.values_in_plate`)."""
        if isinstance(px, dist.Bernoulli):
            return dist.Bernoulli(logits=values_in_plate(px.logits))
        return dist.Normal(values_in_plate(px.loc), values_in_plate(px.scale))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The story of ``p(x_observed)`` for x (N, D) or (N, ...) and mask of its shape, bool; returns z (N, z_dim).

        :raises ValueError: for a bad mask (see :meth:`check_mask`).
        """
        return self._story(x, mask, missing_latent=False)

    def with_missing(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The same story with the missing values as the latent site ``"x_missing"`` (batch (D, N) in the plate
        ``"values"`` at dim -2: two plates, ``max_plate_nesting=2``); returns z (N, z_dim).

        Call it through the module's parameters as trained (``pyro.nn.PyroModule`` methods register them).
        """
        return self._story(x, mask, missing_latent=True)

    def _data(self, question: str, guide: Callable | None, x: torch.Tensor, mask: torch.Tensor | None) -> tuple:
        """``(x, mask)`` for ``guide``; refuses a missing guide or mask, and a guide that does not read ``x``."""
        if mask is None:
            raise ValueError(f"{question} needs the mask: call it with (x, mask)")
        data = super()._data(question, guide, x, mask)
        if isinstance(guide, LatentGuide):
            reads = sorted({str(k) for site in guide.sites for k in site.inputs})
            if not ({"x", "0"} & set(reads)):
                raise ValueError(f"the guide's encoders read {reads} but not the observed argument 'x' (position 0): "
                                 f"a proposal for z that ignores the observed values; build the guide with inputs=('x',)")
        return data

    @torch.no_grad()
    def impute(self, x: torch.Tensor, mask: torch.Tensor, *, guide: Callable | None = None,
               num_samples: int = 1000, batch_size: int = 100) -> torch.Tensor:
        """``E[x_missing | x_observed]`` by self-normalized importance sampling (Mattei & Frellsen, 2019), (N, D).

        ``sum_s w_s E[x | z_s]`` with ``z_s ~ q(z | x, mask)`` (the guide) and ``w_s`` proportional to
        ``p(x_observed, z_s) / q(z_s | x, mask)``; the observed entries are returned as given.

        :param guide: a guide for ``z`` called with ``(x, mask)`` (an encoder of the complete data reads
            the zero-filled x).
        :param num_samples: importance samples per example (one vectorized call per batch).
        :param batch_size: examples per call; memory grows with ``num_samples * batch_size * D``.
        :raises ValueError: for a bad mask, a missing guide, or a guide that does not read ``x``.
        """
        x, mask = self.check_mask(x, mask)
        self._data("impute", guide, x, mask)
        means = []
        for start in range(0, len(x), batch_size):
            data = x[start:start + batch_size], mask[start:start + batch_size]
            draws, log_w = importance_draws(self.model, guide, *data, num_samples=num_samples)
            means.append(posterior_expectation(draws["mean"], log_w))
        return torch.where(mask, x, torch.cat(means))
