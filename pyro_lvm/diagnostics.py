"""Posterior draws to ArviZ, LOO model comparison beside BIC, and mixture plots.

ArviZ and matplotlib are imported inside the functions that need them, so ``import pyro_lvm``
stays quick.

The mixtures are :class:`pyro_lvm.estimators.GaussianMixture` estimators (taken as given: this
module sits beside the estimators and does not import them); their fitted story ``model_`` is what
NUTS and SVI run. Posterior draws over a mixture's global sites come from NUTS on the enumerated model
(``z`` summed out exactly; small data sets) or from a Laplace approximation fitted by SVI
(:class:`~pyro.infer.autoguide.AutoLaplaceApproximation`, fast). Either way the pointwise
log-likelihoods ``log p(x_n | theta_s)`` go into the ``log_likelihood`` group that
``az.loo`` and ``az.compare`` read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS, TraceEnum_ELBO
from pyro.infer.autoguide import AutoLaplaceApproximation
from pyro.infer.autoguide.initialization import init_to_value
from pyro.ops.hessian import hessian
from torch.distributions import biject_to

from pyro_lvm.estimators import ArrayLike, GaussianMixture
from pyro_lvm.infer.train import train
from pyro_lvm.models.gmm import GaussianMixtureModel

if TYPE_CHECKING:
    import arviz
    from matplotlib.axes import Axes

__all__ = [
    "compare_mixtures",
    "mixture_posterior",
    "plot_mixture",
    "plot_model_selection",
    "to_inference_data",
]

POSTERIORS = ("nuts", "laplace")


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)


def to_inference_data(
    samples: dict, log_likelihood: ArrayLike, observed: ArrayLike | None = None, obs_name: str = "x"
) -> arviz.InferenceData:
    """Posterior draws and pointwise log-likelihoods as :class:`arviz.InferenceData`.

    :param samples: site name -> draws ``(chains, draws, ...)`` (Pyro's
        ``MCMC.get_samples(group_by_chain=True)``); tensors or arrays.
    :param log_likelihood: ``(chains, draws, N)``: ``log p(x_n | theta_s)`` per draw and data point.
    :param observed: optional data ``(N, ...)`` for the ``observed_data`` group.
    :param obs_name: the variable name in ``log_likelihood`` / ``observed_data``.
    :returns: ``InferenceData`` with ``posterior`` and ``log_likelihood`` groups (and ``observed_data``).
    """
    import arviz as az

    log_likelihood = _numpy(log_likelihood)
    if log_likelihood.ndim != 3:
        raise ValueError(f"log_likelihood must have shape (chains, draws, N), got {log_likelihood.shape}")
    posterior = {name: _numpy(v) for name, v in samples.items()}
    for name, v in posterior.items():
        if v.shape[:2] != log_likelihood.shape[:2]:
            raise ValueError(
                f"samples[{name!r}] has leading shape {v.shape[:2]}; expected (chains, draws) = {log_likelihood.shape[:2]}"
            )
    groups = {"posterior": posterior, "log_likelihood": {obs_name: log_likelihood}}
    if observed is not None:
        groups["observed_data"] = {obs_name: _numpy(observed)}
    return az.from_dict(**groups)


def mixture_posterior(
    gmm: GaussianMixture,
    X: ArrayLike,
    method: str = "nuts",
    num_samples: int = 200,
    warmup_steps: int = 200,
    num_chains: int = 1,
    max_tree_depth: int = 6,
    svi_steps: int = 300,
    lr: float = 0.05,
    progress: bool = False,
) -> arviz.InferenceData:
    """Posterior draws over the global sites of ``gmm.model_`` and their pointwise log-likelihoods.

    The mixture is first fitted by EM (its ``prior`` should be ``"weak"``: NUTS needs a proper
    posterior); NUTS starts there, the Laplace approximation takes the MAP by SVI from there.

    :param gmm: an unfitted or fitted :class:`~pyro_lvm.estimators.GaussianMixture` (refitted by EM).
    :param X: data ``(N, D)``.
    :param method: ``"nuts"`` (``num_chains`` chains of ``num_samples`` after ``warmup_steps``,
        ``z`` enumerated; trajectories of at most ``2**max_tree_depth`` leapfrog steps, which bounds
        the cost when extra components are weakly identified) or ``"laplace"`` (``num_samples``
        draws, one chain; the mode from ``svi_steps`` Adam steps with learning rate ``lr``).
    :returns: :class:`arviz.InferenceData` with ``posterior`` and ``log_likelihood`` groups.
    """
    if method not in POSTERIORS:
        raise ValueError(f"unknown posterior method {method!r}; expected one of {', '.join(map(repr, POSTERIORS))}")
    if gmm.prior != "weak":
        raise ValueError(f"gmm.prior is {gmm.prior!r}; posterior sampling needs proper priors: GaussianMixture(..., prior='weak')")
    gmm.fit(X)
    story = gmm.model_
    Xt = torch.as_tensor(_numpy(X)).to(story.means)
    start = story.sites()
    if method == "nuts":
        kernel = NUTS(story.model, max_plate_nesting=1, init_strategy=init_to_value(values=start),
                      max_tree_depth=max_tree_depth, jit_compile=True, ignore_jit_warnings=True)
        mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, num_chains=num_chains, disable_progbar=not progress)
        mcmc.run(Xt)
        samples = mcmc.get_samples(group_by_chain=True)
    else:
        samples = _laplace_draws(story, Xt, start, num_samples, svi_steps, lr, progress)
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in samples.items()}
    chains, draws = next(iter(samples.values())).shape[:2]
    log_lik = story.log_likelihood_draws(Xt, flat).reshape(chains, draws, -1)
    return to_inference_data(samples, log_lik, observed=Xt)


def _laplace_draws(
    story: GaussianMixtureModel, X: torch.Tensor, start: dict, num_samples: int, svi_steps: int, lr: float, progress: bool
) -> dict:
    """Draws ``(1, S, ...)`` from a Laplace approximation in the unconstrained space of the global sites.

    The mode comes from SVI on the enumerated model (``TraceEnum_ELBO``, so ``z`` is summed out);
    the precision is the Hessian of that same loss at the mode. (Pyro's own
    ``AutoLaplaceApproximation.laplace_approximation`` replays the model without enumeration,
    which would sample ``z`` instead of summing it out.)
    """
    guide = AutoLaplaceApproximation(poutine.block(story.model, hide=["z"]), init_loc_fn=init_to_value(values=start))
    loss = TraceEnum_ELBO(max_plate_nesting=1)
    with pyro.get_param_store().scope():
        train(story.model, guide, X, loss=loss, lr=lr, steps=svi_steps, batch_size=X.shape[0], shuffle=False, progress=progress)
        precision = hessian(loss.differentiable_loss(story.model, guide, X), guide.loc).detach()
        loc = guide.loc.detach()
    precision = 0.5 * (precision + precision.mT)
    if int(torch.linalg.cholesky_ex(precision).info) != 0:
        raise ValueError("the Laplace approximation failed: the Hessian at the SVI optimum is not positive definite; raise svi_steps")
    latent = dist.MultivariateNormal(loc, precision_matrix=precision).sample((num_samples,))
    return {site["name"]: biject_to(site["fn"].support)(u).unsqueeze(0) for site, u in guide._unpack_latent(latent)}


def compare_mixtures(X: ArrayLike, mixtures: Sequence[GaussianMixture], method: str = "nuts", **posterior_kwargs: Any) -> dict:
    """Compare mixtures with ``K`` components by LOO (``az.compare``) and by BIC.

    :param X: data ``(N, D)``.
    :param mixtures: the :class:`~pyro_lvm.estimators.GaussianMixture` estimators to compare, one per
        ``K`` (their ``n_components``), with ``prior="weak"``, e.g.
        ``[GaussianMixture(k, prior="weak", n_init=3, random_state=0) for k in range(1, 7)]``.
    :param method: posterior draws by ``"nuts"`` or ``"laplace"`` (see :func:`mixture_posterior`).
    :param posterior_kwargs: passed on to :func:`mixture_posterior`.
    :returns: ``{"loo": DataFrame from az.compare (index "K=k"), "bic": {k: BIC of the EM fit},
        "idata": {k: InferenceData}, "best_loo": k, "best_bic": k}``.
    """
    import arviz as az

    idata, bic = {}, {}
    for gmm in mixtures:
        k = gmm.n_components
        if k in idata:
            raise ValueError(f"two mixtures with n_components={k}; compare_mixtures compares one mixture per K")
        idata[k] = mixture_posterior(gmm, X, method=method, **posterior_kwargs)
        bic[k] = gmm.bic(X)
    table = az.compare({f"K={k}": v for k, v in idata.items()}, ic="loo")
    best_loo = int(table.index[0].split("=")[1])
    return {"loo": table, "bic": bic, "idata": idata, "best_loo": best_loo, "best_bic": min(bic, key=bic.get)}


def plot_model_selection(comparison: dict, ax: Axes | None = None) -> Axes:
    """ELPD (LOO, with standard errors) and BIC against ``K`` from :func:`compare_mixtures`.

    :returns: the matplotlib axes (BIC on a twin axis).
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    ks = sorted(comparison["bic"])
    table = comparison["loo"]
    elpd = [table.loc[f"K={k}", "elpd_loo"] for k in ks]
    se = [table.loc[f"K={k}", "se"] for k in ks]
    ax.errorbar(ks, elpd, yerr=se, marker="o", color="C0", capsize=3, label="ELPD (LOO)")
    ax.set_xlabel("number of components K")
    ax.set_ylabel("ELPD (LOO), higher is better", color="C0")
    twin = ax.twinx()
    twin.plot(ks, [comparison["bic"][k] for k in ks], marker="s", color="C1", label="BIC")
    twin.set_ylabel("BIC, lower is better", color="C1")
    ax.set_title(f"model selection: LOO picks K={comparison['best_loo']}, BIC picks K={comparison['best_bic']}")
    return ax


def plot_mixture(
    gmm: GaussianMixture, X: ArrayLike, ax: Axes | None = None, dims: tuple[int, int] = (0, 1), n_std: float = 2.0
) -> Axes:
    """Data coloured by responsibilities and each component's ``n_std`` covariance ellipse.

    :param gmm: a fitted mixture; ``X``: ``(N, D)``; ``dims``: the two features to show.
    :returns: the matplotlib axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    X = _numpy(X)
    idx = list(dims)
    resp = _numpy(gmm.predict_proba(X))
    K = resp.shape[1]
    palette = plt.get_cmap("tab10")(np.arange(K) % 10)[:, :3]
    ax.scatter(X[:, idx[0]], X[:, idx[1]], c=np.clip(resp @ palette, 0, 1), s=8, alpha=0.8, linewidths=0)
    covs = _numpy(gmm.model_.covariance_matrices())[:, idx][:, :, idx]
    means = _numpy(gmm.means_)[:, idx]
    weights = _numpy(gmm.weights_)
    for k in range(K):
        vals, vecs = np.linalg.eigh(covs[k])
        angle = math.degrees(math.atan2(vecs[1, -1], vecs[0, -1]))
        width, height = 2 * n_std * np.sqrt(np.maximum(vals[::-1], 0))
        ax.add_patch(Ellipse(means[k], width, height, angle=angle, fill=False, color=palette[k], lw=2))
        ax.annotate(f"{weights[k]:.2f}", means[k], ha="center", va="center", fontsize=8)
    ax.set_xlabel(f"x[{idx[0]}]")
    ax.set_ylabel(f"x[{idx[1]}]")
    return ax
