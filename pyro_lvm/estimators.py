"""scikit-learn estimators over pyro_lvm's stories.

:class:`GaussianMixture` fits :class:`~pyro_lvm.models.GaussianMixtureModel` (the story with ``z``
enumerated) three ways: closed-form EM, hard EM (argmax assignments) and SVI with the model's
point (Delta) guide, and exposes it fitted as ``model_``. It is a scikit-learn estimator
(``clone``, pipelines, ``GridSearchCV``, ``check_estimator``): NumPy in gives NumPy out, torch
tensors in give tensors out on their device.
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import pyro
import scipy.sparse
import torch
from pyro.infer import TraceEnum_ELBO
from sklearn.base import BaseEstimator, ClusterMixin, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from pyro_lvm.infer.distributed import ShardedRows, current_ranks
from pyro_lvm.infer.train import train
from pyro_lvm.models.gmm import PRIORS, GaussianMixtureModel
from pyro_lvm.ops.mixture import (
    COVARIANCE_TYPES,
    Rows,
    covariances_from_precisions,
    e_step,
    fit_mixture_em,
    kmeans_responsibilities,
    log_joint,
    m_step,
    precision_cholesky,
)

__all__ = ["ArrayLike", "GaussianMixture"]

#: What the estimators take as data: a NumPy array (or anything ``np.asarray`` reads) or a tensor.
ArrayLike = np.ndarray | torch.Tensor | Any

METHODS = ("em", "hard_em", "svi")
INIT_PARAMS = ("kmeans", "k-means++", "random")
# the string parameters and their values, checked in fit with a message naming the value and the choices
CHOICES = {"covariance_type": COVARIANCE_TYPES, "method": METHODS, "init_params": INIT_PARAMS, "prior": PRIORS}


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class GaussianMixture(ClusterMixin, DensityMixin, BaseEstimator):
    r"""Gaussian mixture model with enumerated assignments: a scikit-learn estimator over a Pyro story.

    :param int n_components: number of components ``K``.
    :param str covariance_type: ``"full"`` (``(K, D, D)``), ``"tied"`` (one shared ``(D, D)``),
        ``"diag"`` (``(K, D)``), ``"spherical"`` (``(K,)``) or ``"identity"`` (every covariance fixed
        at ``I``; ``covariances_`` is ones ``(K,)``).
    :param str method: ``"em"`` (closed-form EM), ``"hard_em"`` (argmax responsibilities; with
        ``covariance_type="identity"`` and ``learn_weights=False`` this is Lloyd's k-means) or
        ``"svi"`` (Adam on the enumerated model's exact marginal likelihood with a Delta guide,
        through :func:`pyro_lvm.infer.train`, from the best of the ``n_init`` initialisations).
    :param float reg_covar: added to the diagonal of every estimated covariance (keeps collapsed
        components positive definite).
    :param float tol: EM stops when the mean lower bound per sample changes by less than ``tol``.
    :param int max_iter: EM iterations per restart.
    :param int n_init: restarts, run batched; the one with the largest final lower bound is kept.
    :param str init_params: ``"kmeans"`` (responsibilities from batched Lloyd's k-means seeded by
        k-means++), ``"k-means++"`` (responsibilities from the nearest k-means++ seed) or ``"random"``
        (random responsibilities); the initial parameters are one M-step on them, as in scikit-learn.
    :param means_init: ``(K, D)`` initial means; ``weights_init``: ``(K,)``; ``precisions_init``: the
        initial precisions in scikit-learn's form for the covariance type. Each overrides its part
        of ``init_params``.
    :param bool learn_weights: when False the weights stay uniform ``1 / K``.
    :param str prior: ``"flat"`` (improper uniform priors on the globals, so point estimates are
        maximum likelihood) or ``"weak"`` (proper priors centred on the data, for posterior sampling
        with :mod:`pyro_lvm.diagnostics`; see :class:`~pyro_lvm.models.GaussianMixtureModel`).
    :param int steps: SVI steps (``method="svi"`` only; full batch). ``lr``: Adam's learning rate.
    :param bool progress: show a progress bar for SVI.
    :param random_state: seed (int) for the initialisation, or None for the global torch RNG.
    :param device: where to compute (``"cuda"``); default: the device of the data.
    :param dtype: ``torch.float32`` or ``torch.float64``; default: the data's floating dtype
        (float64 for NumPy arrays of floats), else torch's default dtype.
    :param bool sharded: ``X`` is this process's share of the rows, in a ``torch.distributed``
        process group (``torchrun``; see :mod:`pyro_lvm.infer.distributed`): every rank calls
        ``fit`` on its own rows, the E-step's sums (responsibilities, weighted sums and second
        moments, log-likelihood, and the k-means initialisation's) are all-reduced, and every rank
        gets the fit on all rows (the rows taken in rank order), the same as one process's up to
        rounding; ``labels_`` are the rank's own rows'. ``method="em"`` or ``"hard_em"``.

    Parameters are stored as given and checked in :meth:`fit` (scikit-learn's rule).

    Fitted attributes: NumPy arrays when ``fit`` got a NumPy array (or list, DataFrame), tensors on
    ``device`` when it got a tensor: ``weights_ (K,)``, ``means_ (K, D)``, ``covariances_``,
    ``precisions_cholesky_``, ``labels_ (N,)`` (the MAP component of each training sample);
    ``converged_``, ``n_iter_``, ``lower_bound_`` (scikit-learn's semantics: the mean log-likelihood per
    sample at the last E-step of the best restart; for hard EM the mean ``log p(x_n, z_n*)``),
    ``lower_bounds_`` (one value per iteration, or per SVI step), ``n_features_in_``, and ``model_``:
    the fitted :class:`~pyro_lvm.models.GaussianMixtureModel` (its story ``model_.model``, its point
    guide ``model_.guide``).
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "means_init": ["array-like", None],
        "weights_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "learn_weights": ["boolean"],
        "steps": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0.0, None, closed="neither")],
        "progress": ["boolean"],
        "random_state": [Interval(Integral, 0, None, closed="left"), None],
        "device": [str, torch.device, None],
        "dtype": [torch.dtype, None],
        "sharded": ["boolean"],
    }

    def __init__(
        self,
        n_components: int = 1,
        covariance_type: str = "full",
        method: str = "em",
        *,
        reg_covar: float = 1e-6,
        tol: float = 1e-3,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        means_init: ArrayLike | None = None,
        weights_init: ArrayLike | None = None,
        precisions_init: ArrayLike | None = None,
        learn_weights: bool = True,
        prior: str = "flat",
        steps: int = 1000,
        lr: float = 0.05,
        progress: bool = False,
        random_state: int | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        sharded: bool = False,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.method = method
        self.reg_covar = reg_covar
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.means_init = means_init
        self.weights_init = weights_init
        self.precisions_init = precisions_init
        self.learn_weights = learn_weights
        self.prior = prior
        self.steps = steps
        self.lr = lr
        self.progress = progress
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.sharded = sharded

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    def _check_params(self) -> None:
        """The parameters, as scikit-learn checks them (``_parameter_constraints``) and the string choices."""
        self._validate_params()
        for name, options in CHOICES.items():
            value = getattr(self, name)
            if not isinstance(value, str) or value not in options:
                raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, options))}")
        if self.dtype not in (None, torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32, torch.float64 or None, got {self.dtype!r}")

    # ------------------------------------------------------------------ input and output

    def _as_tensor(self, X, reset: bool = False) -> torch.Tensor:
        """``X`` as a finite ``(N, D)`` tensor: in the data's (at fit) or the fit's dtype and device.

        :raises ValueError: naming what is wrong (and, for 1-D data, how to reshape it); ``TypeError``
            when an element is not a number.
        """
        if not torch.is_tensor(X):
            if scipy.sparse.issparse(X):
                raise TypeError(f"X is a sparse {type(X).__name__}: sparse data is not supported; pass X.toarray()")
            X = np.asarray(X)
            if np.iscomplexobj(X):
                raise ValueError(f"X must hold real numbers, got dtype {X.dtype}: Complex data not supported")
            if X.dtype == object:
                X = X.astype(np.float64)  # TypeError "float() argument must be a string or a real number"
            try:
                X = torch.tensor(X)  # a copy: read-only arrays (memmaps) stay untouched
            except (TypeError, ValueError, RuntimeError) as e:
                raise ValueError(f"X must be a 2-D array of real numbers: {e}") from None
        if X.dim() != 2:
            hint = "; Reshape your data: for a single feature use X.reshape(-1, 1)" if X.dim() == 1 else ""
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {tuple(X.shape)}{hint}")
        if X.shape[0] == 0 or X.shape[1] == 0:
            what = "0 feature(s)" if X.shape[1] == 0 else "0 sample(s)"
            raise ValueError(f"X is empty: {what} (shape={tuple(X.shape)}) while a minimum of 1 is required.")
        if X.is_complex() or X.dtype == torch.bool:
            raise ValueError(f"X must hold real numbers, got dtype {X.dtype}: Complex data not supported" if X.is_complex()
                             else f"X must hold real numbers, got dtype {X.dtype}")
        if reset:
            dtype = self.dtype or (X.dtype if X.dtype in (torch.float32, torch.float64) else torch.get_default_dtype())
            device = torch.device(self.device) if self.device is not None else X.device
        else:
            check_is_fitted(self)
            if X.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {X.shape[1]} features, but {type(self).__name__} is expecting {self.n_features_in_} features as input"
                )
            dtype, device = self.model_.means.dtype, self.model_.means.device
        X = X.to(device=device, dtype=dtype)
        if not bool(torch.isfinite(X).all()):
            raise ValueError("X contains NaN or infinite values; expected finite data")
        return X

    @staticmethod
    def _like(value: torch.Tensor, X) -> torch.Tensor | np.ndarray:
        """``value`` as the caller gave ``X``: a tensor for a tensor, else a NumPy array."""
        return value if torch.is_tensor(X) else value.detach().cpu().numpy()

    def _init_override(self, value, name: str, shape: tuple, X: torch.Tensor) -> torch.Tensor:
        value = torch.as_tensor(np.asarray(value) if not torch.is_tensor(value) else value).to(X.device, X.dtype)
        if tuple(value.shape) != shape:
            raise ValueError(f"{name} has shape {tuple(value.shape)}; expected {shape} for {self.covariance_type!r} covariances")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        return value

    def _checked_weights_init(self, X: torch.Tensor) -> torch.Tensor:
        """``weights_init`` ``(K,)``, in ``[0, 1]`` and summing to 1 (scikit-learn's ``_check_weights``)."""
        if not self.learn_weights:
            raise ValueError("weights_init cannot be given with learn_weights=False (the weights stay uniform 1 / K)")
        w = self._init_override(self.weights_init, "weights_init", (self.n_components,), X)
        atol = 1e-6 if X.dtype == torch.float32 else 1e-8
        if bool((w < 0).any() | (w > 1).any()) or abs(float(w.sum()) - 1.0) > atol:
            raise ValueError(
                f"weights_init must lie in [0, 1] and sum to 1 (to within {atol:g}), got min {float(w.min()):g}, "
                f"max {float(w.max()):g}, sum {float(w.sum()):.10g}"
            )
        return w

    def _checked_precisions_init(self, X: torch.Tensor) -> torch.Tensor:
        """``precisions_init`` of the covariance type's shape: symmetric positive definite matrices ("full")
        or positive values ("diag", "spherical"), as scikit-learn's ``_check_precisions`` requires."""
        if self.covariance_type == "identity":
            raise ValueError("precisions_init cannot be given with covariance_type='identity' (fixed at I)")
        prec = self._init_override(self.precisions_init, "precisions_init", self._story().covariance_shape(X.shape[1]), X)
        what = f"precisions_init for covariance_type={self.covariance_type!r}"
        if self.covariance_type in ("full", "tied"):
            matrices = prec if self.covariance_type == "full" else prec.unsqueeze(0)
            asymmetric = ~torch.isclose(matrices, matrices.mT).all(-1).all(-1)
            smallest = torch.linalg.eigvalsh(matrices)[..., 0]
            bad = (asymmetric | (smallest <= 0)).nonzero()
            if len(bad):
                k = int(bad[0])
                reason = "is not symmetric" if asymmetric[k] else f"has smallest eigenvalue {float(smallest[k]):g}"
                raise ValueError(f"{what} must be symmetric positive definite (n_features, n_features) matrices; component {k} {reason}")
        elif bool((prec <= 0).any()):
            raise ValueError(f"{what} must be positive, got a minimum of {float(prec.min()):g}")
        return prec

    # ------------------------------------------------------------------ fitting

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.random_state is None:
            return None
        return torch.Generator(device=device).manual_seed(int(self.random_state))

    def _rows(self, X: torch.Tensor) -> Rows:
        """This process's rows of the data: all of them, or its shard (``sharded``)."""
        if not self.sharded:
            return Rows(len(X))
        if self.method == "svi":
            raise ValueError(
                "sharded=True fits by method='em' or 'hard_em', got method='svi' (pyro_lvm.infer.train runs SVI on torchrun)"
            )
        return ShardedRows(current_ranks(True), len(X))

    def _initialize(self, X: torch.Tensor, rows: Rows):
        """Initial ``weights (R, K)``, ``means (R, K, D)`` and covariances for the ``n_init`` restarts."""
        (N, D), K, R = X.shape, self.n_components, self.n_init  # N: this process's rows
        # checked before any work, as scikit-learn's _check_parameters does
        weights_init = None if self.weights_init is None else self._checked_weights_init(X)
        means_init = None if self.means_init is None else self._init_override(self.means_init, "means_init", (K, D), X)
        precisions_init = None if self.precisions_init is None else self._checked_precisions_init(X)
        gen = self._generator(X.device)
        fixed_covariances = self.covariance_type == "identity" or self.precisions_init is not None
        fixed_weights = self.weights_init is not None or not self.learn_weights
        if self.means_init is not None and fixed_covariances and fixed_weights:
            resp = torch.ones(R, N, K, dtype=X.dtype, device=X.device) / K  # everything is overridden below
        elif self.init_params == "random":
            resp = rows.own(torch.rand(R, rows.n, K, generator=gen, device=X.device, dtype=X.dtype), dim=1)
            resp = resp / resp.sum(-1, keepdim=True)
        else:
            resp = kmeans_responsibilities(X, K, R, gen, lloyd=self.init_params == "kmeans", rows=rows)
        weights, means, covariances, _ = m_step(X, resp, self.covariance_type, self.reg_covar, self.learn_weights, rows)
        if weights_init is not None:
            weights = weights_init.expand(R, K).clone()
        if means_init is not None:
            means = means_init.expand(R, K, D).clone()
        if precisions_init is not None:
            covariances = covariances_from_precisions(precisions_init, self.covariance_type).expand(R, *precisions_init.shape).clone()
        return weights, means, covariances

    def fit(self, X: ArrayLike, y: Any = None) -> GaussianMixture:
        """Estimate the parameters from ``X`` ``(N, D)`` (NumPy array, list, DataFrame or tensor) by ``method``.

        :param y: ignored (scikit-learn's signature).
        :returns: ``self``.
        :raises ValueError: for bad parameters, bad ``X`` or initial parameters (checked as scikit-learn
            checks them), or when the EM lower bound stops being finite.
        :warns UserWarning: when ``reg_covar`` exceeds the variance of every feature of ``X``;
            ``ConvergenceWarning`` when the best EM restart did not converge in ``max_iter`` iterations.
        """
        self._check_params()
        X_in, X = X, self._as_tensor(X, reset=True)
        rows = self._rows(X)
        if rows.n < self.n_components:
            raise ValueError(f"n_components={self.n_components} must be <= n_samples={rows.n}")
        self._warn_if_reg_covar_swamps(X, rows)
        weights, means, covariances = self._initialize(X, rows)
        if self.method == "svi":
            self._fit_svi(X, X_in, weights, means, covariances)
            return self
        result = fit_mixture_em(
            X, weights, means, covariances, self.covariance_type, hard=self.method == "hard_em",
            reg_covar=self.reg_covar, tol=self.tol, max_iter=self.max_iter, learn_weights=self.learn_weights, rows=rows,
        )
        best = int(result.lower_bound.argmax())
        self._set_fitted(
            X, X_in,
            result.weights[best],
            result.means[best],
            None if result.covariances is None else result.covariances[best],
            lower_bound=float(result.lower_bound[best]),
            lower_bounds=result.lower_bounds[best, : int(result.n_iter[best])].tolist(),
            n_iter=int(result.n_iter[best]),
            converged=bool(result.converged[best]),
        )
        if not self.converged_:
            warnings.warn(
                f"the best of the n_init={self.n_init} restarts did not converge in max_iter={self.max_iter} "
                f"iterations (lower bound still changing by >= tol={self.tol:g}); increase max_iter or tol, "
                "or try other initial parameters",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _warn_if_reg_covar_swamps(self, X: torch.Tensor, rows: Rows) -> None:
        """Warn when ``reg_covar`` exceeds the variance of every feature: each covariance is then mostly
        regularisation, and the components cannot separate (scikit-learn fits the same single cluster)."""
        if self.covariance_type == "identity" or self.n_components == 1:
            return
        largest = float((rows.sum((X - rows.mean(X)).square().sum(0)) / rows.n).max())
        if self.reg_covar > largest:
            warnings.warn(
                f"reg_covar={self.reg_covar:g} is larger than the variance of every feature of X (largest "
                f"{largest:.3g}): the covariances are dominated by the regularisation, so the components "
                "cannot separate; scale X (e.g. StandardScaler) or lower reg_covar with the data's scale",
                UserWarning,
                stacklevel=3,
            )

    def _fit_svi(self, X, X_in, weights, means, covariances) -> None:
        prec_chol = precision_cholesky(covariances, self.covariance_type)
        _, start_bound = e_step(log_joint(X, weights, means, prec_chol, self.covariance_type), hard=False)
        r = int(start_bound.argmax())
        story = self._story()
        guide = story.point_guide(story.sites_of(weights[r], means[r], None if covariances is None else covariances[r]))
        with pyro.get_param_store().scope():
            history = train(
                story.model, guide, X, loss=TraceEnum_ELBO(max_plate_nesting=1), lr=self.lr, steps=self.steps,
                batch_size=X.shape[0], shuffle=False, device=X.device, progress=self.progress,
                model_kwargs={"reg_covar": self.reg_covar}, distributed=False,  # this process's own fit, also on torchrun
            )
            with torch.no_grad():
                sites = {k: v.detach() for k, v in guide.median(X).items()}
        covariances = story.covariances_of(sites, self.reg_covar)
        weights = sites["weights"] if self.learn_weights else X.new_full((self.n_components,), 1.0 / self.n_components)
        losses = history.step_loss
        window = max(1, len(losses) // 10)
        self._set_fitted(
            X, X_in, weights, sites["means"], covariances,
            lower_bound=-losses[-1], lower_bounds=[-v for v in losses], n_iter=len(losses),
            converged=len(losses) > window and abs(losses[-1] - losses[-1 - window]) < self.tol,
        )

    def _set_fitted(self, X, X_in, weights, means, covariances, *, lower_bound, lower_bounds, n_iter, converged) -> None:
        """Fitted attributes (NumPy or tensors, as ``X_in``) and ``model_`` at the estimated parameters."""
        self.model_ = self._story()
        self.model_.set_values(weights, means, covariances)
        self.n_features_in_ = X.shape[1]
        self.weights_ = self._like(weights, X_in)
        self.means_ = self._like(means, X_in)
        self.covariances_ = self._like(X.new_ones(self.n_components) if covariances is None else covariances, X_in)
        prec_chol = self.model_.precisions_cholesky
        self.precisions_cholesky_ = None if prec_chol is None else self._like(prec_chol, X_in)
        self.labels_ = self._like(self.model_.map_latents(X), X_in)
        self.lower_bound_, self.lower_bounds_ = lower_bound, lower_bounds
        self.n_iter_, self.converged_ = n_iter, converged
        self._tensor_attributes = torch.is_tensor(X_in)

    # ------------------------------------------------------------------ using the fit

    def _story(self) -> GaussianMixtureModel:
        """The story with this estimator's settings (no parameter values yet)."""
        return GaussianMixtureModel(self.n_components, self.covariance_type, learn_weights=self.learn_weights, prior=self.prior)

    def score_samples(self, X: ArrayLike) -> torch.Tensor | np.ndarray:
        """``log p(x_n)`` per sample ``(N,)`` in nats."""
        Xt = self._as_tensor(X)
        return self._like(self.model_.log_likelihood(Xt), X)

    def score(self, X: ArrayLike, y: Any = None) -> float:
        """Mean log-likelihood per sample (nats); ``y`` is ignored."""
        Xt = self._as_tensor(X)
        return float(self.model_.log_likelihood(Xt).mean())

    def predict_proba(self, X: ArrayLike) -> torch.Tensor | np.ndarray:
        """Posterior responsibilities ``p(z_n = k | x_n)`` ``(N, K)``."""
        Xt = self._as_tensor(X)
        return self._like(self.model_.posterior(Xt).probs, X)

    def predict(self, X: ArrayLike) -> torch.Tensor | np.ndarray:
        """MAP component per sample ``(N,)``."""
        Xt = self._as_tensor(X)
        return self._like(self.model_.map_latents(Xt), X)

    def sample(self, n_samples: int = 1) -> tuple[torch.Tensor, torch.Tensor] | tuple[np.ndarray, np.ndarray]:
        """Draw ``(X (n, D), z (n,))`` from the fitted mixture (torch's global RNG, seeded by ``pyro.set_rng_seed``).

        NumPy arrays or tensors, as the fitted attributes.
        """
        check_is_fitted(self)
        x, z = self.model_.sample(_positive_int(n_samples, "n_samples"), return_latents=True)
        if self._tensor_attributes:
            return x, z
        return x.cpu().numpy(), z.cpu().numpy()

    def _n_parameters(self) -> int:
        K, D = self.n_components, self.n_features_in_
        cov = {"full": K * D * (D + 1) // 2, "tied": D * (D + 1) // 2, "diag": K * D, "spherical": K, "identity": 0}
        return cov[self.covariance_type] + K * D + (K - 1 if self.learn_weights else 0)

    def bic(self, X: ArrayLike) -> float:
        """Bayesian information criterion ``-2 log L + p log N`` on ``X`` (lower is better)."""
        Xt = self._as_tensor(X)
        log_lik = self.model_.log_likelihood(Xt)
        return float(-2.0 * log_lik.sum() + self._n_parameters() * math.log(log_lik.shape[0]))

    def aic(self, X: ArrayLike) -> float:
        """Akaike information criterion ``-2 log L + 2 p`` on ``X`` (lower is better)."""
        Xt = self._as_tensor(X)
        return float(-2.0 * self.model_.log_likelihood(Xt).sum() + 2.0 * self._n_parameters())
