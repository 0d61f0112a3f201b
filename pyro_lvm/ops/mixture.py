"""Closed-form EM and hard EM for Gaussian mixtures, batched over restarts.

Every function takes a leading restart dim ``R``: ``weights (R, K)``, ``means (R, K, D)`` and
covariances ``(R, K, D, D)`` ("full"), ``(R, D, D)`` ("tied": one covariance shared by every
component), ``(R, K, D)`` ("diag"), ``(R, K)`` ("spherical") or ``None`` ("identity": every
covariance is ``I``). ``n_init`` restarts therefore run as one
tensor program, and on whatever device the tensors live.

The E-step computes ``log pi_k + log N(x_n | mu_k, Sigma_k)`` from Cholesky factors of the
precisions (as scikit-learn does); soft EM turns it into responsibilities, hard EM into
one-hot argmax assignments. The M-step is weighted means and centred weighted covariances
plus ``reg_covar`` on the diagonal. Convergence follows scikit-learn's ``GaussianMixture``:
a restart stops when the mean lower bound (the mean log-likelihood per sample under the
parameters *before* the M-step of that iteration; for hard EM the mean of
``log p(x_n, z_n*)``) changes by less than ``tol``; hard EM also stops when no assignment changes.

The rows of ``X`` may be split across processes (each holding its own ``(n_r, D)``): every
function that sums over rows takes ``rows``, a :class:`Rows` that says how to complete a sum
over this process's rows into one over all of them; :class:`Rows` itself (the default) holds
every row, and :class:`pyro_lvm.infer.distributed.ShardedRows` all-reduces. The E-step's
sufficient statistics (responsibility sums, weighted sums and second moments, the
log-likelihood) are such sums, so a sharded fit is the fit on all rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "COVARIANCE_TYPES",
    "MixtureEMResult",
    "Rows",
    "covariances_from_precisions",
    "e_step",
    "fit_mixture_em",
    "kmeans_plusplus",
    "kmeans_responsibilities",
    "log_joint",
    "m_step",
    "precision_cholesky",
]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical", "identity")

# Rows of X per chunk: one (rows, R, K, D) temporary stays below this many elements (cache-sized blocks).
_CHUNK_ELEMENTS = 1 << 18


class Rows:
    """All the rows of ``X`` are on this process: sums over rows are complete as they are.

    A subclass for rows split across processes overrides every method (see the module's docs);
    row numbers are positions in the concatenation of all processes' rows.

    :ivar n: rows over all processes; ``offset``: the first of this process's rows; ``local``: their number.
    """

    def __init__(self, local_rows: int) -> None:
        self.n, self.offset, self.local = local_rows, 0, local_rows

    def sum(self, partial: torch.Tensor) -> torch.Tensor:
        """A sum over this process's rows, completed over all rows (same shape)."""
        return partial

    def max(self, partial: torch.Tensor) -> torch.Tensor:
        """A maximum over this process's rows, completed over all rows."""
        return partial

    def mean(self, X: torch.Tensor) -> torch.Tensor:
        """The mean row ``(D,)`` of ``X``."""
        return X.mean(0)

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """Every process's ``local`` ``(n_r, ...)`` concatenated along dim 0: ``(n, ...)``."""
        return local

    def take(self, X: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The rows at (global) positions ``index`` (any shape): ``index.shape + (D,)``."""
        return X[index]

    def own(self, full: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """This process's part, along ``dim``, of a tensor over all ``n`` rows."""
        return full


def precision_cholesky(covariances: torch.Tensor | None, covariance_type: str) -> torch.Tensor | None:
    """Cholesky factors ``P`` of the precisions, ``Sigma^-1 = P P^T`` (scikit-learn's ``precisions_cholesky_``).

    :param covariances: ``(..., K, D, D)``, ``(..., D, D)``, ``(..., K, D)``, ``(..., K)`` or ``None`` by covariance type.
    :returns: upper-triangular ``(..., K, D, D)`` for "full" and ``(..., D, D)`` for "tied", ``1 / sqrt(covariances)`` for "diag"
        and "spherical", ``None`` for "identity".
    :raises ValueError: when a covariance is not positive definite (raise ``reg_covar``).
    """
    if covariance_type == "identity":
        return None
    if covariance_type in ("full", "tied"):
        chol, info = torch.linalg.cholesky_ex(covariances)
        if bool((info != 0).any()):
            raise ValueError(
                "a component's covariance is not positive definite (collapsed onto fewer points than "
                "dimensions or badly scaled data); increase reg_covar or scale the data"
            )
        eye = torch.eye(covariances.shape[-1], dtype=covariances.dtype, device=covariances.device)
        return torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False).mT
    if bool((covariances <= 0).any()):
        raise ValueError("a component's variance is zero or negative; increase reg_covar or scale the data")
    return covariances.rsqrt()


def covariances_from_precisions(precisions: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """Invert scikit-learn-style ``precisions_init`` (matrices, diagonals or scalars per component)."""
    if covariance_type in ("full", "tied"):
        return torch.cholesky_inverse(torch.linalg.cholesky(precisions))
    return precisions.reciprocal()


def _row_chunks(n: int, per_row: int):
    step = max(1, _CHUNK_ELEMENTS // max(per_row, 1))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def log_joint(
    X: torch.Tensor,
    weights: torch.Tensor,
    means: torch.Tensor,
    prec_chol: torch.Tensor | None,
    covariance_type: str,
    rows: Rows | None = None,
) -> torch.Tensor:
    """``log pi_k + log N(x_n | mu_k, Sigma_k)`` for every restart, sample and component.

    :param X: data ``(N, D)`` (this process's rows; ``rows`` see the module's docs).
    :param weights: ``(R, K)``; ``means``: ``(R, K, D)``; ``prec_chol`` from :func:`precision_cholesky`.
    :returns: ``(R, N, K)``.
    """
    # the quadratic forms are translation invariant: work about the data mean, so that the expanded
    # forms do not cancel catastrophically for data far from the origin (float32)
    centre = (rows or Rows(len(X))).mean(X)
    return _log_joint(X - centre, weights, means - centre, prec_chol, covariance_type)


def _log_joint(X, weights, means, prec_chol, covariance_type: str) -> torch.Tensor:
    """:func:`log_joint` for data already centred near the origin."""
    N, D = X.shape
    R, K = weights.shape
    const = -0.5 * D * math.log(2 * math.pi)
    if covariance_type == "tied":  # the shared factor, once per component
        prec_chol = prec_chol.unsqueeze(-3).expand(R, K, D, D)
    if covariance_type in ("full", "tied"):
        log_det = prec_chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (R, K)
        mu_p = (means.unsqueeze(-2) @ prec_chol).squeeze(-2)  # (R, K, D)
        # one GEMM for all restarts and components: X (n, D) @ [P_rk] (D, R K D)
        p_all = prec_chol.permute(2, 0, 1, 3).reshape(D, R * K * D)
        maha = torch.empty(N, R, K, dtype=X.dtype, device=X.device)
        for rows in _row_chunks(N, R * K * D):
            y = (X[rows] @ p_all).view(-1, R, K, D).sub_(mu_p)  # (n, R, K, D)
            maha[rows] = torch.linalg.vector_norm(y, dim=-1).square_()
        maha = maha.permute(1, 0, 2)  # (R, N, K), a view
    else:
        if covariance_type == "identity":
            prec = torch.ones_like(means)
            log_det = torch.zeros_like(weights)
        elif covariance_type == "diag":
            prec = prec_chol.square()  # (R, K, D)
            log_det = prec_chol.log().sum(-1)
        else:  # spherical
            prec = prec_chol.square().unsqueeze(-1).expand_as(means)
            log_det = D * prec_chol.log()
        # sum_d prec_kd (x_nd - mu_kd)^2 expanded into matrix products, as scikit-learn does
        maha = torch.baddbmm(
            (means.square() * prec).sum(-1).unsqueeze(-2),  # (R, 1, K)
            X.square().expand(R, N, D),
            prec.mT,
        ).baddbmm_(X.expand(R, N, D), (means * prec).mT, alpha=-2.0)  # (R, N, K)
    bias = const + log_det + weights.log()  # (R, K)
    return maha.mul_(-0.5).add_(bias.unsqueeze(-2))


def e_step(log_joint_values: torch.Tensor, hard: bool, rows: Rows | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Responsibilities and the mean lower bound from :func:`log_joint`.

    :param log_joint_values: ``(R, N, K)``.
    :param hard: one-hot argmax responsibilities (hard EM) instead of the posterior.
    :returns: ``resp (R, N, K)`` and ``lower_bound (R,)``: the mean over samples of
        ``log p(x_n)`` (soft) or ``max_k log p(x_n, z_n = k)`` (hard).
    """
    rows = rows or Rows(log_joint_values.shape[-2])
    if hard:
        best, labels = log_joint_values.max(-1)
        resp = torch.nn.functional.one_hot(labels, log_joint_values.shape[-1]).to(log_joint_values.dtype)
        return resp, _row_mean(best, rows)
    log_norm = log_joint_values.logsumexp(-1, keepdim=True)
    return (log_joint_values - log_norm).exp(), _row_mean(log_norm.squeeze(-1), rows)


def _row_mean(values: torch.Tensor, rows: Rows) -> torch.Tensor:
    """The mean over all rows of ``values (R, n)``: ``(R,)``."""
    return values.mean(-1) if type(rows) is Rows else rows.sum(values.sum(-1)) / rows.n


def m_step(
    X: torch.Tensor,
    resp: torch.Tensor,
    covariance_type: str,
    reg_covar: float,
    learn_weights: bool = True,
    rows: Rows | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Weighted means and centred weighted covariances (plus ``reg_covar``) from responsibilities.

    :param X: ``(N, D)``; ``resp``: ``(R, N, K)``.
    :returns: ``weights (R, K)`` (uniform when ``learn_weights`` is False), ``means (R, K, D)``,
        covariances by type and the soft counts ``nk (R, K)`` (before scikit-learn's ``10 * eps``).
        A component with no responsibility gets the data mean and covariance ``reg_covar I``.
    """
    rows = rows or Rows(len(X))
    centre = rows.mean(X)  # work about the data mean to limit cancellation (see _m_step)
    weights, means, covariances, counts = _m_step(X - centre, resp, covariance_type, reg_covar, learn_weights, rows)
    return weights, means + centre, covariances, counts


def _m_step(X, resp, covariance_type: str, reg_covar: float, learn_weights: bool, rows: Rows):
    """:func:`m_step` for data already centred near the origin.

    Second moments are accumulated as one GEMM about the origin and then centred on each mean
    with the exact expansion ``sum_n r_nk (x_n - mu_k)^2 = S_k - 2 mu_k A_k + counts_k mu_k^2``,
    which also gives an empty component ``reg_covar`` alone, as scikit-learn does.
    """
    N, D = X.shape
    R, _, K = resp.shape
    counts = rows.sum(resp.sum(-2))  # (R, K)
    nk = counts + 10 * torch.finfo(X.dtype).eps
    first = rows.sum(resp.mT @ X)  # (R, K, D)
    means = first / nk.unsqueeze(-1)
    if learn_weights:
        weights = nk / rows.n
    else:
        weights = torch.full_like(nk, 1.0 / K)
    if covariance_type == "identity":
        covariances = None
    elif covariance_type == "tied":
        # sum_k sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T / sum_k nk = (X^T X - sum_k nk mu_k mu_k^T) / sum_k nk
        covariances = (rows.sum(X.mT @ X) - (nk.unsqueeze(-1) * means).mT @ means) / nk.sum(-1)[..., None, None]
        covariances.diagonal(dim1=-2, dim2=-1).add_(reg_covar)
    elif covariance_type == "full":
        scatter = torch.zeros(R * K * D, D, dtype=X.dtype, device=X.device)  # sum_n r_nk x_n x_n^T, one GEMM
        for chunk in _row_chunks(N, R * K * D):
            weighted = resp[:, chunk].permute(1, 0, 2).unsqueeze(-1) * X[chunk, None, None, :]  # (n, R, K, D)
            scatter += weighted.reshape(-1, R * K * D).mT @ X[chunk]
        scatter = rows.sum(scatter)
        cross = first.unsqueeze(-1) * means.unsqueeze(-2)  # A_k mu_k^T
        covariances = scatter.view(R, K, D, D) - cross - cross.mT + counts[..., None, None] * means.unsqueeze(-1) * means.unsqueeze(-2)
        covariances = covariances / nk[..., None, None]
        covariances.diagonal(dim1=-2, dim2=-1).add_(reg_covar)
    else:
        avg_x2 = rows.sum(resp.mT @ X.square()) / nk.unsqueeze(-1)
        avg_x_means = means * first / nk.unsqueeze(-1)
        covariances = avg_x2 - 2.0 * avg_x_means + (counts / nk).unsqueeze(-1) * means.square() + reg_covar  # (R, K, D)
        if covariance_type == "spherical":
            covariances = covariances.mean(-1)
    return weights, means, covariances, counts


@dataclass
class MixtureEMResult:
    """The outcome of :func:`fit_mixture_em` for every restart.

    :ivar weights: ``(R, K)``; ``means``: ``(R, K, D)``; ``covariances`` by type (``None`` for identity).
    :ivar lower_bound: ``(R,)`` the last lower bound of each restart (scikit-learn's ``lower_bound_``).
    :ivar lower_bounds: ``(R, T)`` the lower bound at every iteration (NaN after a restart stopped).
    :ivar n_iter: ``(R,)`` iterations run; ``converged``: ``(R,)`` bool.
    """

    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor | None
    lower_bound: torch.Tensor
    lower_bounds: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor


def _select(mask: torch.Tensor, new: torch.Tensor | None, old: torch.Tensor | None) -> torch.Tensor | None:
    if new is None:
        return None
    return torch.where(mask.reshape(mask.shape + (1,) * (new.dim() - mask.dim())), new, old)


def fit_mixture_em(
    X: torch.Tensor,
    weights: torch.Tensor,
    means: torch.Tensor,
    covariances: torch.Tensor | None,
    covariance_type: str,
    *,
    hard: bool = False,
    reg_covar: float = 1e-6,
    tol: float = 1e-3,
    max_iter: int = 100,
    learn_weights: bool = True,
    rows: Rows | None = None,
) -> MixtureEMResult:
    """Run EM (or hard EM) from initial parameters, all restarts at once.

    Each iteration: E-step under the current parameters (its mean lower bound is recorded),
    then the M-step. A restart stops when its lower bound changed by less than ``tol`` since
    the previous iteration (and, for hard EM, when no assignment changed); stopped restarts
    keep their parameters while the others go on.

    In hard EM a component that receives no sample keeps its previous mean and covariance
    (and gets weight 0 when weights are learnt), as in Lloyd's algorithm without relocation.

    :param X: ``(N, D)``; initial ``weights (R, K)``, ``means (R, K, D)``, covariances by type.
    :param rows: how this process's rows of ``X`` make up all rows (see the module's docs).
    :raises ValueError: when the lower bound of a running restart is NaN or infinite (some sample
        has zero or undefined density under every component), instead of going on with NaN parameters.
    """
    R = weights.shape[0]
    rows = rows or Rows(len(X))
    centre = rows.mean(X)  # iterate about the data mean (see log_joint and m_step)
    X, means = X - centre, means - centre
    prec_chol = precision_cholesky(covariances, covariance_type)
    lower = torch.full((R,), -math.inf, dtype=X.dtype, device=X.device)
    active = torch.ones(R, dtype=torch.bool, device=X.device)
    converged = torch.zeros_like(active)
    n_iter = torch.zeros(R, dtype=torch.long, device=X.device)
    history = []
    labels = None
    for iteration in range(1, max_iter + 1):
        resp, bound = e_step(_log_joint(X, weights, means, prec_chol, covariance_type), hard, rows)
        _check_finite_bound(bound, active, iteration)
        new_w, new_m, new_c, counts = _m_step(X, resp, covariance_type, reg_covar, learn_weights, rows)
        done = (bound - lower).abs() < tol
        if hard:
            empty = counts == 0
            new_m = torch.where(empty.unsqueeze(-1), means, new_m)
            if new_c is not None and covariance_type != "tied":  # a tied covariance belongs to no component
                new_c = torch.where(empty.reshape(empty.shape + (1,) * (new_c.dim() - 2)), covariances, new_c)
            if learn_weights:
                new_w = counts / rows.n
            new_labels = resp.argmax(-1)
            if labels is not None:
                done = done | (rows.sum((new_labels != labels).sum(-1)) == 0)
            labels = new_labels
        weights, means = _select(active, new_w, weights), _select(active, new_m, means)
        covariances = _select(active, new_c, covariances)
        prec_chol = precision_cholesky(covariances, covariance_type)
        lower = torch.where(active, bound, lower)
        history.append(torch.where(active, bound, torch.full_like(bound, math.nan)))
        n_iter += active.long()
        converged |= active & done
        active &= ~done
        if not bool(active.any()):
            break
    return MixtureEMResult(
        weights=weights,
        means=means + centre,
        covariances=covariances,
        lower_bound=lower,
        lower_bounds=torch.stack(history, -1),
        n_iter=n_iter,
        converged=converged,
    )


def _check_finite_bound(bound: torch.Tensor, active: torch.Tensor, iteration: int) -> None:
    """Raise when a running restart's lower bound is NaN or infinite (its parameters would turn NaN)."""
    bad = active & ~torch.isfinite(bound)
    if bool(bad.any()):
        r = int(bad.nonzero()[0])
        raise ValueError(
            f"the EM lower bound of restart {r} is {float(bound[r])} at iteration {iteration}: some sample has "
            "zero or undefined density under every component; expected a finite mean log-likelihood "
            "(check means_init / precisions_init / weights_init against the data, or scale X)"
        )


def kmeans_responsibilities(
    X: torch.Tensor, n_components: int, n_init: int, generator: torch.Generator | None = None, lloyd: bool = True,
    rows: Rows | None = None,
) -> torch.Tensor:
    """One-hot responsibilities ``(n_init, N, K)`` from k-means++ seeds, refined by Lloyd's k-means if ``lloyd``.

    Lloyd's k-means is hard EM with identity covariances and fixed uniform weights, and a sample goes to
    its nearest centre. Both run on ``X`` centred and divided by its root-mean-square spread: the
    labels do not change under a common rescaling, but the identity log-joint adds the constant
    ``-D/2 log(2 pi) - log K`` to ``-|x - mu|^2 / 2``, so for data at scale ``1e-9`` the squared
    distances (``~1e-16``) would vanish in its rounding and every sample would tie into component 0.
    (scikit-learn's ``KMeans`` compares squared distances alone, which is scale-free.)
    """
    rows = rows or Rows(len(X))
    centred = X - rows.mean(X)
    peak = rows.max(centred.abs().max())
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    # root mean square, without overflow or underflow
    spread = peak * (rows.sum((centred / peak).square().sum()) / (rows.n * X.shape[1]) if type(rows) is not Rows
                     else (centred / peak).square().mean()).sqrt()
    X = centred / torch.where(spread > 0, spread, torch.ones_like(spread))
    centres = kmeans_plusplus(X, n_components, n_init, generator, rows)
    uniform = X.new_full((n_init, n_components), 1.0 / n_components)
    if lloyd:
        centres = fit_mixture_em(X, uniform, centres, None, "identity", hard=True, tol=0.0, max_iter=300, learn_weights=False,
                                 rows=rows).means
    return e_step(log_joint(X, uniform, centres, None, "identity", rows), hard=True)[0]


def kmeans_plusplus(
    X: torch.Tensor, n_components: int, n_init: int, generator: torch.Generator | None = None, rows: Rows | None = None
) -> torch.Tensor:
    """k-means++ seeding (Arthur and Vassilvitskii, 2007) for ``n_init`` restarts at once.

    The first centre is a uniformly drawn sample, each next one a sample drawn with
    probability proportional to its squared distance to the nearest centre chosen so far.

    :param X: ``(N, D)``; ``rows``: see the module's docs (the draws use the distances to all rows).
    :returns: centres ``(n_init, n_components, D)``, rows of ``X``.
    """
    rows = rows or Rows(len(X))
    idx = torch.randint(rows.n, (n_init,), generator=generator, device=X.device)
    centres = [rows.take(X, idx)]
    d2 = (X.unsqueeze(0) - centres[0].unsqueeze(1)).square().sum(-1)  # (R, N)
    for _ in range(1, n_components):
        probs = rows.gather(d2.mT).mT + torch.finfo(X.dtype).tiny  # all-equal points still give a valid distribution
        idx = torch.multinomial(probs / probs.sum(-1, keepdim=True), 1, generator=generator).squeeze(-1)
        centres.append(rows.take(X, idx))
        d2 = torch.minimum(d2, (X.unsqueeze(0) - centres[-1].unsqueeze(1)).square().sum(-1))
    return torch.stack(centres, 1)
