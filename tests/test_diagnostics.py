"""ArviZ conversion, LOO beside BIC for mixtures, and the plots."""

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from pyro_lvm.diagnostics import (
    compare_mixtures,
    mixture_posterior,
    plot_mixture,
    plot_model_selection,
    to_inference_data,
)
from pyro_lvm.estimators import GaussianMixture


def blobs(n=25, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    return np.concatenate([rng.normal(c, 0.7, size=(n, 2)) for c in centres])


def test_to_inference_data_groups_and_shapes():
    samples = {"means": torch.randn(2, 5, 3, 2), "weights": torch.rand(2, 5, 3)}
    idata = to_inference_data(samples, torch.randn(2, 5, 7), observed=torch.randn(7, 2))
    assert set(idata.groups()) == {"posterior", "log_likelihood", "observed_data"}
    assert idata.posterior["means"].shape == (2, 5, 3, 2)
    assert idata.log_likelihood["x"].shape == (2, 5, 7)
    with pytest.raises(ValueError, match="log_likelihood must have shape"):
        to_inference_data(samples, torch.randn(10, 7))
    with pytest.raises(ValueError, match=r"samples\['means'\] has leading shape"):
        to_inference_data({"means": torch.randn(3, 5, 2)}, torch.randn(2, 5, 7))


def test_laplace_posterior_log_likelihood_group_is_exact_and_read_by_loo():
    import arviz as az

    X = blobs(20)
    idata = mixture_posterior(GaussianMixture(3, "full", prior="weak", random_state=0), X, "laplace",
                              num_samples=300, svi_steps=100)
    post = idata.posterior
    ll = idata.log_likelihood["x"].values.reshape(-1, len(X))  # (S, N)
    for s in (0, 150, 299):  # log p(x_n | theta_s) by SciPy from the stored draw
        w, mu = post["weights"].values[0, s], post["means"].values[0, s]
        tril = post["scales"].values[0, s][:, :, None] * post["corr_tril"].values[0, s]
        ref = [np.log(w[k]) + multivariate_normal(mu[k], tril[k] @ tril[k].T).logpdf(X) for k in range(3)]
        assert np.allclose(ll[s], logsumexp(ref, axis=0), atol=1e-9)
    # the posterior spreads around the EM fit
    em = GaussianMixture(3, "full", random_state=0).fit(X)
    order = np.argmin(((post["means"].values[0].mean(0)[:, None] - em.means_[None]) ** 2).sum(-1), 0)
    assert np.allclose(post["means"].values[0].mean(0)[order], em.means_, atol=0.2)
    loo = az.loo(idata)
    lppd = (logsumexp(ll, axis=0) - np.log(len(ll))).sum()
    assert loo.p_loo == pytest.approx(lppd - loo.elpd_loo, abs=1e-6)
    assert 5 < loo.p_loo < 40  # 17 free parameters, well identified


def test_nuts_posterior_with_enumerated_assignments():
    X = blobs(10)
    idata = mixture_posterior(GaussianMixture(3, "diag", prior="weak", random_state=0), X, "nuts",
                              num_samples=20, warmup_steps=20)
    assert idata.posterior["means"].shape == (1, 20, 3, 2)
    assert idata.log_likelihood["x"].shape == (1, 20, len(X))
    assert np.isfinite(idata.log_likelihood["x"].values).all()


def test_compare_mixtures_finds_three_clusters_and_plots(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X = blobs(20, seed=1)
    mixtures = [GaussianMixture(k, "spherical", prior="weak", n_init=3, random_state=0) for k in (2, 3, 4)]
    result = compare_mixtures(X, mixtures, method="laplace", num_samples=200, svi_steps=100)
    assert result["best_bic"] == 3
    # LOO: two components are clearly worse; three are as good as the best within two standard errors
    table = result["loo"]
    assert table.loc["K=2", "elpd_diff"] > 4 * table.loc["K=2", "dse"]
    assert table.loc["K=3", "elpd_diff"] <= 2 * max(table.loc["K=3", "dse"], 1e-9)
    fig, (ax0, ax1) = plt.subplots(1, 2)
    plot_model_selection(result, ax0)
    plot_mixture(GaussianMixture(3, random_state=0).fit(X), X, ax1)
    fig.savefig(tmp_path / "selection.png")
    assert (tmp_path / "selection.png").stat().st_size > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="proper priors"):
        mixture_posterior(GaussianMixture(2), blobs(5), "laplace")
    with pytest.raises(ValueError, match="unknown posterior method 'gibbs'"):
        mixture_posterior(GaussianMixture(2, prior="weak"), blobs(5), "gibbs")
