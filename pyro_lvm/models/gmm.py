"""Gaussian mixture: the generative story with the component ``z`` enumerated, as a model family.

Generative story, for ``n = 1..N`` (plate ``"data"``, ``dim=-1``)::

    pi ~ p(pi),  mu_k ~ p(mu),  Sigma_k ~ p(Sigma)        global sites
    z_n ~ Categorical(pi)                                    enumerated in parallel
    x_n ~ MultivariateNormal(mu[z_n], Sigma[z_n])            observed

Summing ``z`` out by enumeration (``TraceEnum_ELBO(max_plate_nesting=1)``) makes the loss the
exact negative log marginal likelihood. :class:`GaussianMixtureModel` holds one value of the
globals (``weights``, ``means``, ``covariances``); its guide is the point (Delta) guide there, and
it answers the questions of the face (posterior, MAP components, samples, log-likelihood) exactly,
at those values. The estimator that fits the values (EM, hard EM, SVI) is
:class:`pyro_lvm.estimators.GaussianMixture`.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer.autoguide import AutoDelta
from pyro.infer.autoguide.initialization import init_to_value

from pyro_lvm.models.base import LatentVariableModel
from pyro_lvm.ops.mixture import COVARIANCE_TYPES, log_joint, precision_cholesky

__all__ = ["PRIORS", "GaussianMixtureModel"]

PRIORS = ("flat", "weak")


class GaussianMixtureModel(LatentVariableModel):
    r"""Gaussian mixture with enumerated assignments ``z``, at given values of its global sites.

    :param int n_components: number of components ``K``.
    :param str covariance_type: ``"full"`` (``(K, D, D)``), ``"tied"`` (one ``(D, D)`` shared by every
        component), ``"diag"`` (``(K, D)``), ``"spherical"`` (``(K,)``) or ``"identity"`` (every
        covariance fixed at ``I``; no covariance site).
    :param bool learn_weights: when False the weights are fixed at ``1 / K`` (no ``"weights"`` site).
    :param str prior: ``"flat"`` (improper uniform priors on the globals, so point estimates are
        maximum likelihood) or ``"weak"`` (proper priors centred on the data for posterior
        sampling: ``Dirichlet(1)`` weights, ``Normal(mean(X), 3 std(X))`` means, ``LogNormal(log std(X), 1)``
        scales and ``LKJCholesky(D, 1)`` correlations).
    :param weights: ``(K,)``, ``means``: ``(K, D)``, ``covariances``: by covariance type (``None`` for
        identity): the values the questions are answered at (see :meth:`set_values`).

    Global sites of the story: ``"weights"`` ``(K,)`` (absent when ``learn_weights`` is False),
    ``"means"`` ``(K, D)``, ``"scales"`` (standard deviations: ``(K, D)`` for full and diag, ``(D,)``
    for tied, ``(K,)`` for spherical) and ``"corr_tril"`` (Cholesky factor of the correlations:
    ``(K, D, D)`` for full, ``(D, D)`` for tied);
    ``Sigma_k = diag(scales_k) corr_k diag(scales_k) + reg_covar I``. Local: ``"z"`` ``(N,)``, ``"x"``.
    """

    max_plate_nesting = 1
    latent_sites = ("z",)

    def __init__(
        self,
        n_components: int,
        covariance_type: str = "full",
        *,
        learn_weights: bool = True,
        prior: str = "flat",
        weights: torch.Tensor | None = None,
        means: torch.Tensor | None = None,
        covariances: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"unknown covariance_type {covariance_type!r}; expected one of {', '.join(map(repr, COVARIANCE_TYPES))}")
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; expected one of {', '.join(map(repr, PRIORS))}")
        self.n_components, self.covariance_type = int(n_components), covariance_type
        self.learn_weights, self.prior = bool(learn_weights), prior
        self.weights = self.means = self.covariances = self.precisions_cholesky = None
        self._point_guide = None
        if means is not None:
            self.set_values(weights, means, covariances)

    @property
    def latent_size(self) -> int:
        """K, the number of components (the values ``z`` takes)."""
        return self.n_components

    @property
    def global_sites(self) -> tuple[str, ...]:
        """The names of the story's global sample sites (the ones the point guide covers)."""
        names = ("weights",) if self.learn_weights else ()
        names += ("means",)
        if self.covariance_type != "identity":
            names += ("scales",)
        if self.covariance_type in ("full", "tied"):
            names += ("corr_tril",)
        return names

    def covariance_shape(self, D: int) -> tuple[int, ...]:
        """The shape of ``covariances`` for ``D`` features (``()`` for identity)."""
        K = self.n_components
        return {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,), "identity": ()}[self.covariance_type]

    def set_values(self, weights: torch.Tensor | None, means: torch.Tensor, covariances: torch.Tensor | None) -> None:
        """Set the globals: ``weights (K,)`` (``None``: uniform), ``means (K, D)``, covariances by type.

        :raises ValueError: when a covariance is not positive definite.
        """
        K = self.n_components
        self.means = means
        self.weights = means.new_full((K,), 1.0 / K) if weights is None else weights
        self.covariances = None if self.covariance_type == "identity" else covariances
        self.precisions_cholesky = precision_cholesky(self.covariances, self.covariance_type)
        self._point_guide = None

    def _check_values(self) -> None:
        if self.means is None:
            raise ValueError(f"{type(self).__name__} has no parameter values yet: fit it or call set_values first")

    # ------------------------------------------------------------------ the Pyro program

    def forward(self, X: torch.Tensor, reg_covar: float = 0.0) -> None:
        """The generative story with ``z`` marked for parallel enumeration.

        :param X: observations ``(N, D)`` in plate ``"data"`` (``dim=-1``).
        :param reg_covar: added to the diagonal of every covariance (SVI fits pass the estimator's).
        """
        N, D = X.shape
        K, flat = self.n_components, self.prior == "flat"
        if self.learn_weights:
            prior = dist.ImproperUniform(constraints.simplex, (), (K,)) if flat else dist.Dirichlet(X.new_ones(K))
            weights = pyro.sample("weights", prior)
        else:
            weights = X.new_full((K,), 1.0 / K)
        if flat:
            means = pyro.sample("means", dist.ImproperUniform(constraints.real, (), (K, D)))
        else:
            loc, spread = X.mean(0), X.std(0) if N > 1 else X.new_ones(D)
            means = pyro.sample("means", dist.Normal(loc, 3.0 * spread).expand([K, D]).to_event(2))
        scale_tril = std = None
        if self.covariance_type != "identity":
            shape = (D,) if self.covariance_type == "tied" else self.covariance_shape(D)[:2]
            if flat:
                scales = pyro.sample("scales", dist.ImproperUniform(constraints.positive, (), shape))
            else:
                log_std = (X.std(0) if N > 1 else X.new_ones(D)).log()
                log_std = log_std if self.covariance_type != "spherical" else log_std.mean()
                scales = pyro.sample("scales", dist.LogNormal(log_std, 1.0).expand(shape).to_event(len(shape)))
            if self.covariance_type in ("full", "tied"):
                lead = (K,) if self.covariance_type == "full" else ()
                corr_prior = (
                    dist.ImproperUniform(constraints.corr_cholesky, (), (*lead, D, D))
                    if flat
                    else dist.LKJCholesky(D, X.new_tensor(1.0)).expand(lead).to_event(len(lead))
                )
                corr_tril = pyro.sample("corr_tril", corr_prior)
                scale_tril = scales.unsqueeze(-1) * corr_tril
                if reg_covar > 0:
                    cov = scale_tril @ scale_tril.mT
                    scale_tril = torch.linalg.cholesky(cov + reg_covar * torch.eye(D, dtype=X.dtype, device=X.device))
                if self.covariance_type == "tied":
                    scale_tril = scale_tril.expand(K, D, D)
            else:
                std = (scales.square() + reg_covar).sqrt()
                std = std if self.covariance_type == "diag" else std.unsqueeze(-1).expand(K, D)
        else:
            std = X.new_ones(K, D)
        with pyro.plate("data", N, dim=-1):
            z = pyro.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
            if scale_tril is not None:
                likelihood = dist.MultivariateNormal(means[z], scale_tril=scale_tril[z])
            else:
                likelihood = dist.Normal(means[z], std[z]).to_event(1)
            pyro.sample("x", likelihood, obs=X)

    def guide(self, X: torch.Tensor, reg_covar: float = 0.0) -> dict:
        """Point (Delta) guide on the global sites at the model's values (an ``AutoDelta``)."""
        self._check_values()
        if self._point_guide is None:
            self._point_guide = self.point_guide(self.sites())
        return self._point_guide(X, reg_covar)

    def point_guide(self, values: dict) -> AutoDelta:
        """A new ``AutoDelta`` on the global sites, starting at ``values`` (site name -> constrained value)."""
        return AutoDelta(poutine.block(self.model, hide=["z"]), init_loc_fn=init_to_value(values=values))

    def sites_of(self, weights: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor | None) -> dict:
        """Global site values (constrained) for one parameter set; covariances as given (with any reg)."""
        sites = {"means": means}
        if self.learn_weights:
            sites["weights"] = weights
        if self.covariance_type in ("full", "tied"):
            std = covariances.diagonal(dim1=-2, dim2=-1).sqrt()
            corr = covariances / (std.unsqueeze(-1) * std.unsqueeze(-2))
            sites["scales"], sites["corr_tril"] = std, torch.linalg.cholesky(corr)
        elif self.covariance_type in ("diag", "spherical"):
            sites["scales"] = covariances.sqrt()
        return sites

    def sites(self) -> dict:
        """The global sites at the model's values, e.g. for ``poutine.condition(model.model, data=...)``."""
        self._check_values()
        return self.sites_of(self.weights, self.means, self.covariances)

    def covariances_of(self, sites: dict, reg_covar: float = 0.0) -> torch.Tensor | None:
        """Covariances ``Sigma = diag(s) C diag(s) + reg_covar I`` from site values (any leading dims)."""
        if self.covariance_type == "identity":
            return None
        if self.covariance_type in ("full", "tied"):
            tril = sites["scales"].unsqueeze(-1) * sites["corr_tril"]
            eye = torch.eye(tril.shape[-1], dtype=tril.dtype, device=tril.device)
            return tril @ tril.mT + reg_covar * eye
        return sites["scales"].square() + reg_covar

    def log_likelihood_draws(self, X: torch.Tensor, sites: dict, reg_covar: float = 0.0) -> torch.Tensor:
        """``log p(x_n | theta_s)`` with ``z`` summed out, for ``S`` draws of the global sites.

        :param X: ``(N, D)``.
        :param sites: draws of the global sites with a leading dim ``S`` (``"means"`` ``(S, K, D)``, ...),
            e.g. from :class:`pyro.infer.MCMC` or a guide's ``Predictive``.
        :param reg_covar: the value the story was run with.
        :returns: ``(S, N)`` pointwise log-likelihoods (the draws play the role of EM restarts).
        """
        sites = {k: v.to(X.device, X.dtype) for k, v in sites.items()}
        S, K = sites["means"].shape[:2]
        weights = sites["weights"] if self.learn_weights else X.new_full((S, K), 1.0 / K)
        prec_chol = precision_cholesky(self.covariances_of(sites, reg_covar), self.covariance_type)
        return log_joint(X, weights, sites["means"], prec_chol, self.covariance_type).logsumexp(-1)

    # ------------------------------------------------------------------ the questions of the face

    def log_joint(self, X: torch.Tensor) -> torch.Tensor:
        """``log pi_k + log N(x_n | mu_k, Sigma_k)`` ``(N, K)`` at the model's values."""
        self._check_values()
        prec = None if self.precisions_cholesky is None else self.precisions_cholesky.unsqueeze(0)
        return log_joint(X, self.weights.unsqueeze(0), self.means.unsqueeze(0), prec, self.covariance_type)[0]

    def posterior(self, X: torch.Tensor) -> dist.Categorical:
        """``p(z_n | x_n)``: a ``Categorical`` with batch shape ``(N,)`` over the ``K`` components."""
        return dist.Categorical(logits=self.log_joint(X).log_softmax(-1))

    def map_latents(self, X: torch.Tensor) -> torch.Tensor:
        """The most probable component per example ``(N,)``."""
        return self.log_joint(X).argmax(-1)

    def log_likelihood(self, X: torch.Tensor) -> torch.Tensor:
        """``log p(x_n)`` per example ``(N,)`` in nats, ``z`` summed out exactly."""
        return self.log_joint(X).logsumexp(-1)

    def covariance_matrices(self) -> torch.Tensor:
        """The covariances as full matrices ``(K, D, D)`` whatever the covariance type."""
        self._check_values()
        K, D = self.means.shape
        if self.covariance_type == "full":
            return self.covariances
        if self.covariance_type == "tied":
            return self.covariances.expand(K, D, D)
        if self.covariance_type == "identity":
            variances = self.means.new_ones(K, D)
        elif self.covariance_type == "diag":
            variances = self.covariances
        else:
            variances = self.covariances.unsqueeze(-1).expand(K, D)
        return torch.diag_embed(variances)

    def sample(self, num_samples: int, return_latents: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Draw ``x (num_samples, D)`` (and ``z (num_samples,)`` with ``return_latents``) from the mixture.

        Uses torch's global RNG (seeded by ``pyro.set_rng_seed``).
        """
        self._check_values()
        z = dist.Categorical(self.weights).sample((num_samples,))
        tril = torch.linalg.cholesky(self.covariance_matrices())
        x = dist.MultivariateNormal(self.means[z], scale_tril=tril[z]).sample()
        return (x, z) if return_latents else x
