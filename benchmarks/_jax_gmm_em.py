"""The peer of ``gmm_em.py``: the same EM for a Gaussian mixture in JAX, the whole fit one
``jax.jit`` (a ``lax.while_loop`` over iterations), float64.

It follows scikit-learn's ``GaussianMixture.fit`` step for step from a given start (means,
weights, precisions): E-step, M-step, stop when the mean lower bound changes by less than
``tol`` or after ``max_iter`` iterations, then one last E-step; ``reg_covar`` on every
covariance's diagonal. ``full`` and ``diag`` covariances.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["JaxMixtureEM"]


class JaxMixtureEM:
    """``JaxMixtureEM(X, init, covariance_type, tol, max_iter, reg_covar).fit()`` runs EM to
    convergence; ``score()`` is the final mean log-likelihood per sample, ``n_iter_`` the
    iterations taken. ``init`` holds scikit-learn's ``means_init``, ``weights_init`` and
    ``precisions_init`` (numpy arrays)."""

    def __init__(self, X: np.ndarray, init: dict, covariance_type: str, tol: float, max_iter: int, reg_covar: float) -> None:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        if covariance_type not in ("full", "diag"):
            raise ValueError(f"covariance_type must be 'full' or 'diag', got {covariance_type!r}")
        self.X = jnp.asarray(X, dtype=jnp.float64)
        precisions = np.asarray(init["precisions_init"], dtype=np.float64)
        prec_chol = np.linalg.cholesky(precisions) if covariance_type == "full" else np.sqrt(precisions)
        self.start = (
            jnp.asarray(init["weights_init"], dtype=jnp.float64),
            jnp.asarray(init["means_init"], dtype=jnp.float64),
            jnp.asarray(prec_chol),
        )
        self._fit = jax.jit(_make_fit(covariance_type, float(tol), int(max_iter), float(reg_covar)))
        self.n_iter_, self.lower_bound_ = 0, float("nan")

    def fit(self) -> JaxMixtureEM:
        n_iter, lower_bound, final = self._fit(self.X, *self.start)
        self.n_iter_, self.lower_bound_, self._score = int(n_iter), float(lower_bound), float(final)
        return self

    def score(self) -> float:
        return self._score


def _make_fit(covariance_type: str, tol: float, max_iter: int, reg_covar: float):
    import jax
    import jax.numpy as jnp
    from jax.scipy.linalg import solve_triangular
    from jax.scipy.special import logsumexp

    def e_step(X, weights, means, prec_chol):
        """Mean ``log p(x)`` and the log responsibilities (N, K)."""
        d = X.shape[1]
        if covariance_type == "full":  # prec_chol (K, D, D): Sigma^-1 = P P^T
            y = jnp.einsum("nd,kde->kne", X, prec_chol) - jnp.einsum("kd,kde->ke", means, prec_chol)[:, None]
            log_det = jnp.log(jnp.diagonal(prec_chol, axis1=1, axis2=2)).sum(-1)
        else:  # prec_chol (K, D): 1 / std
            y = X[None] * prec_chol[:, None] - (means * prec_chol)[:, None]
            log_det = jnp.log(prec_chol).sum(-1)
        log_prob = -0.5 * (d * math.log(2 * math.pi) + jnp.square(y).sum(-1)) + log_det[:, None]  # (K, N)
        weighted = log_prob.T + jnp.log(weights)
        norm = logsumexp(weighted, axis=1)
        return norm.mean(), weighted - norm[:, None]

    def m_step(X, log_resp):
        resp = jnp.exp(log_resp)
        nk = resp.sum(0) + 10 * jnp.finfo(resp.dtype).eps
        means = resp.T @ X / nk[:, None]
        if covariance_type == "full":
            diff = X[None] - means[:, None]  # (K, N, D)
            cov = jnp.einsum("nk,knd,kne->kde", resp, diff, diff) / nk[:, None, None] + reg_covar * jnp.eye(X.shape[1])
            chol = jnp.linalg.cholesky(cov)
            eye = jnp.broadcast_to(jnp.eye(X.shape[1]), cov.shape)
            prec_chol = jnp.swapaxes(solve_triangular(chol, eye, lower=True), -1, -2)
        else:
            var = resp.T @ jnp.square(X) / nk[:, None] - jnp.square(means) + reg_covar
            prec_chol = 1.0 / jnp.sqrt(var)
        return nk / nk.sum(), means, prec_chol

    def fit(X, weights, means, prec_chol):
        def running(state):
            i, previous, current, *_ = state
            return (i < max_iter) & ((i == 0) | (jnp.abs(current - previous) >= tol))

        def iteration(state):
            i, _, current, params = state
            lower_bound, log_resp = e_step(X, *params)
            return i + 1, current, lower_bound, m_step(X, log_resp)

        state = (0, -jnp.inf, -jnp.inf, (weights, means, prec_chol))
        n_iter, _, lower_bound, params = jax.lax.while_loop(running, iteration, state)
        return n_iter, lower_bound, e_step(X, *params)[0]

    return fit
