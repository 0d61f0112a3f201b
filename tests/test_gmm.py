"""GaussianMixture against scikit-learn, SciPy densities, Pyro's own enumeration and Lloyd's k-means."""

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.preprocessing import StandardScaler

from pyro_lvm.estimators import GaussianMixture
from pyro_lvm.infer import HardEM, train
from pyro_lvm.ops.mixture import fit_mixture_em, m_step

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def iris():
    return load_iris().data


def wine():
    return StandardScaler().fit_transform(load_wine().data)


def cancer():
    return StandardScaler().fit_transform(load_breast_cancer().data)[:, :10]


def blobs(seed=0, n=80):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [5.0, 1.0], [1.0, 5.0]])
    covs = [np.array([[1.0, 0.6], [0.6, 1.0]]), np.diag([0.3, 1.5]), np.eye(2) * 0.5]
    return np.concatenate([rng.multivariate_normal(c, s, size=n) for c, s in zip(centres, covs)])


def reference_log_joint(X, weights, means, covariances, covariance_type):
    """log pi_k + log N(x | mu_k, Sigma_k) with SciPy, (N, K)."""
    D = X.shape[1]
    out = []
    for k in range(len(weights)):
        c = covariances if covariance_type == "tied" else covariances[k]
        cov = {"full": lambda c: c, "tied": lambda c: c, "diag": np.diag, "spherical": lambda c: c * np.eye(D)}[covariance_type](c)
        out.append(np.log(weights[k]) + multivariate_normal(means[k], cov).logpdf(X))
    return np.stack(out, -1)


@pytest.mark.parametrize("data, k", [(iris, 3), (wine, 3), (cancer, 2)], ids=["iris", "wine", "breast_cancer"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_best_of_n_score_matches_sklearn(data, k, covariance_type):
    X = data()
    sk = SkGaussianMixture(k, covariance_type=covariance_type, n_init=4, random_state=0).fit(X)
    ours = GaussianMixture(k, covariance_type=covariance_type, n_init=4, random_state=0).fit(X)
    assert ours.score(X) >= sk.score(X) - 0.01


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # the max_iter=1 run giving the start
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_same_initialisation_gives_sklearn_trajectory(covariance_type):
    """From the same initial weights, means and precisions both run the same EM iterations."""
    X = wine()
    init = SkGaussianMixture(3, covariance_type=covariance_type, max_iter=1, random_state=1).fit(X)
    kw = dict(weights_init=init.weights_, means_init=init.means_, precisions_init=init.precisions_, tol=1e-4, max_iter=500)
    sk = SkGaussianMixture(3, covariance_type=covariance_type, **kw).fit(X)
    ours = GaussianMixture(3, covariance_type=covariance_type, **kw).fit(X)
    assert ours.n_iter_ == sk.n_iter_ and ours.converged_ == sk.converged_
    assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, abs=1e-9)
    assert np.allclose(ours.lower_bounds_, sk.lower_bounds_, atol=1e-9)
    assert ours.score(X) == pytest.approx(sk.score(X), abs=1e-9)
    assert np.allclose(ours.weights_, sk.weights_, atol=1e-6)
    assert np.allclose(ours.means_, sk.means_, atol=1e-6)
    assert np.allclose(ours.covariances_, sk.covariances_, atol=1e-6)
    assert np.allclose(ours.precisions_cholesky_ ** 2 if covariance_type not in ("full", "tied") else
                       (ours.precisions_cholesky_ @ np.swapaxes(ours.precisions_cholesky_, -1, -2)), sk.precisions_, rtol=1e-6)
    assert np.allclose(ours.predict_proba(X), sk.predict_proba(X), atol=1e-8)
    assert np.array_equal(ours.predict(X), sk.predict(X))
    assert np.allclose(ours.score_samples(X), sk.score_samples(X), atol=1e-8)
    assert ours.bic(X) == pytest.approx(sk.bic(X), rel=1e-9)
    assert ours.aic(X) == pytest.approx(sk.aic(X), rel=1e-9)


@pytest.mark.parametrize("data", [iris, wine], ids=["iris", "wine"])
def test_hard_em_with_identity_covariances_is_lloyd_kmeans(data):
    X = data()
    centres, _ = kmeans_plusplus(X, 4, random_state=3)
    km = KMeans(4, init=centres, n_init=1, algorithm="lloyd", tol=0.0, max_iter=300).fit(X)
    ours = GaussianMixture(4, "identity", method="hard_em", learn_weights=False, means_init=centres, tol=0.0, max_iter=300).fit(X)
    labels = ours.predict(X)
    assert np.array_equal(labels, km.labels_)
    inertia = ((X - ours.means_[labels]) ** 2).sum()
    assert inertia == pytest.approx(km.inertia_, rel=1e-10)
    assert np.allclose(ours.means_, km.cluster_centers_, atol=1e-10)
    assert ours.converged_ and ours.n_iter_ <= 300


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES + ["identity"])
def test_enumerated_svi_loss_is_exact_negative_log_marginal(covariance_type):
    X = blobs(1, n=20)
    gmm = GaussianMixture(3, covariance_type, random_state=0, max_iter=5).fit(X)
    Xt = torch.as_tensor(X)
    conditioned = poutine.condition(gmm.model_.model, data=gmm.model_.sites())
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(conditioned, lambda X: None, Xt)
    covs = gmm.covariances_ if covariance_type != "identity" else np.ones(3)
    ref = reference_log_joint(X, gmm.weights_, gmm.means_, covs,
                              "spherical" if covariance_type == "identity" else covariance_type)
    assert loss == pytest.approx(-logsumexp(ref, axis=1).sum(), rel=1e-9)
    assert gmm.score(X) == pytest.approx(logsumexp(ref, axis=1).mean(), rel=1e-9)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_predict_proba_equals_trace_enum_marginals(covariance_type):
    X = blobs(2, n=25)
    gmm = GaussianMixture(3, covariance_type, random_state=0).fit(X)
    conditioned = poutine.condition(gmm.model_.model, data=gmm.model_.sites())
    marginals = TraceEnum_ELBO(max_plate_nesting=1).compute_marginals(conditioned, lambda X: None, torch.as_tensor(X))
    assert torch.allclose(gmm.predict_proba(torch.as_tensor(X)), marginals["z"].probs, atol=1e-10)


def test_batched_restarts_equal_separate_runs():
    X = torch.as_tensor(wine())
    resp = torch.distributions.Dirichlet(torch.ones(3, dtype=X.dtype)).sample((3, X.shape[0]))
    w, m, c, _ = m_step(X, resp, "full", 1e-6)
    batched = fit_mixture_em(X, w, m, c, "full", tol=1e-4, max_iter=200)
    assert len(set(batched.n_iter.tolist())) > 1  # restarts stop at different iterations
    for r in range(3):
        alone = fit_mixture_em(X, w[r : r + 1], m[r : r + 1], c[r : r + 1], "full", tol=1e-4, max_iter=200)
        assert int(alone.n_iter) == int(batched.n_iter[r])
        assert torch.allclose(alone.means[0], batched.means[r], atol=1e-10)
        assert torch.allclose(alone.covariances[0], batched.covariances[r], atol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_m_step_matches_weighted_numpy_estimates(covariance_type):
    """Weighted means and centred covariances; an empty component sits at the data mean with covariance reg_covar."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(50, 3)) + 10.0
    resp = rng.dirichlet(np.ones(3), size=50)
    resp[:, 2] = 0.0
    resp /= resp.sum(1, keepdims=True)
    weights, means, covs, _ = m_step(torch.as_tensor(X), torch.as_tensor(resp)[None], covariance_type, 1e-6)
    pooled = np.zeros((3, 3))
    for k in range(3):
        nk = resp[:, k].sum() + 10 * np.finfo(float).eps
        mu = resp[:, k] @ X / nk if k < 2 else X.mean(0)
        pooled += (resp[:, k, None] * (X - mu)).T @ (X - mu)
        if covariance_type == "tied":  # one covariance for all components: checked after the loop
            assert np.allclose(means[0, k].numpy(), mu, atol=1e-12)
            continue
        full = (resp[:, k, None] * (X - mu)).T @ (X - mu) / nk + 1e-6 * np.eye(3)
        expected = {"full": full, "diag": np.diag(full), "spherical": np.diag(full).mean()}[covariance_type]
        assert np.allclose(means[0, k].numpy(), mu, atol=1e-12)
        assert np.allclose(covs[0, k].numpy(), expected, atol=1e-10)
    if covariance_type == "tied":  # scikit-learn's pooled scatter over all components, divided by N
        assert np.allclose(covs[0].numpy(), pooled / 50 + 1e-6 * np.eye(3), atol=1e-10)
    assert np.allclose(weights[0].numpy(), (resp.sum(0) + 10 * np.finfo(float).eps) / 50)


def test_svi_reaches_the_em_maximum_likelihood():
    X = torch.as_tensor(blobs(3, n=40))
    em = GaussianMixture(3, "full", random_state=0, tol=1e-8, max_iter=500).fit(X)
    svi = GaussianMixture(3, "full", method="svi", steps=250, lr=0.05, random_state=0).fit(X)
    assert svi.score(X) == pytest.approx(em.score(X), abs=2e-3)
    assert svi.lower_bounds_[-1] > svi.lower_bounds_[0]
    order = torch.cdist(em.means_, svi.means_).argmin(-1)
    assert torch.allclose(svi.means_[order], em.means_, atol=0.05)


def test_svi_with_hard_em_objective_reaches_closed_form_hard_em_fixed_point():
    """pyro_lvm.infer.HardEM on the mixture's Pyro program converges to the closed-form hard-EM fixed point."""
    X = blobs(4, n=15)
    Xt = torch.as_tensor(X)
    closed = GaussianMixture(3, "full", method="hard_em", random_state=0, tol=0.0, max_iter=100).fit(Xt)
    assert closed.converged_
    # SVI starts from perturbed parameters with the Delta guide; Adam does the M-step on the MAP assignments
    start = closed.model_.sites_of(torch.tensor([0.5, 0.3, 0.2], dtype=Xt.dtype), closed.means_ + 0.2, closed.covariances_ * 1.3)
    guide = closed.model_.point_guide(start)
    with pyro.get_param_store().scope():
        train(closed.model_.model, guide, Xt, loss=HardEM(max_plate_nesting=1), lr=0.1, steps=200, batch_size=len(X),
              shuffle=False, progress=False, model_kwargs={"reg_covar": closed.reg_covar})
        sites = {k: v.detach() for k, v in guide.median(Xt).items()}
    assert torch.allclose(sites["weights"], closed.weights_, atol=1e-4)
    assert torch.allclose(sites["means"], closed.means_, atol=1e-4)
    # the closed-form M-step adds reg_covar (1e-6) to the maximizer, hence the tolerance
    assert torch.allclose(closed.model_.covariances_of(sites, closed.reg_covar), closed.covariances_, atol=1e-4)


def test_singular_component_is_held_by_reg_covar():
    rng = np.random.default_rng(0)
    X = np.concatenate([np.tile([[3.0, -1.0]], (15, 1)), rng.normal(size=(60, 2))])
    for method in ("em", "hard_em"):
        gmm = GaussianMixture(3, "full", method=method, random_state=0, n_init=3).fit(torch.as_tensor(X))
        assert torch.isfinite(gmm.covariances_).all() and np.isfinite(gmm.score(X))
        assert torch.linalg.eigvalsh(gmm.covariances_).min() >= 0.5e-6


def test_sample_follows_the_fitted_mixture():
    gmm = GaussianMixture(3, "full", random_state=0).fit(torch.as_tensor(blobs(5)))
    x, z = gmm.sample(20000)
    assert x.shape == (20000, 2) and z.shape == (20000,)
    assert torch.allclose(torch.bincount(z, minlength=3).double() / 20000.0, gmm.weights_, atol=0.015)
    assert torch.allclose(x.mean(0), gmm.weights_ @ gmm.means_, atol=0.05)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_is_accurate_for_data_far_from_the_origin(covariance_type):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.01, size=(200, 2)) for c in ([1000.0, 1000.0], [1000.1, 1000.0])])
    sk = SkGaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    ours = GaussianMixture(2, covariance_type, random_state=0, dtype=torch.float32).fit(torch.as_tensor(X))
    assert ours.means_.dtype == torch.float32
    assert ours.score(X) == pytest.approx(sk.score(X), abs=0.01)


def test_dtype_and_input_types():
    X = blobs(6, n=20)
    assert GaussianMixture(2).fit(X).model_.means.dtype == torch.float64
    assert GaussianMixture(2).fit(torch.as_tensor(X, dtype=torch.float32)).means_.dtype == torch.float32
    g = GaussianMixture(2, dtype=torch.float32).fit(X.tolist())
    assert g.model_.means.dtype == torch.float32 and g.predict(X).shape == (len(X),)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: GaussianMixture(2, covariance_type="banded").fit(np.random.rand(5, 2)), "covariance_type 'banded'"),
        (lambda: GaussianMixture(0).fit(np.random.rand(5, 2)), "n_components"),
        (lambda: GaussianMixture(2, init_params="kmeans||").fit(np.random.rand(5, 2)), "init_params"),
        (lambda: GaussianMixture(2, reg_covar=-1.0).fit(np.random.rand(5, 2)), "reg_covar"),
        (lambda: GaussianMixture(2, method="gibbs").fit(np.ones((5, 2))), "method 'gibbs'"),
        (lambda: GaussianMixture(2).fit(np.array([[0.0, np.nan], [1.0, 2.0]])), "NaN or infinite"),
        (lambda: GaussianMixture(2).fit(np.array([[0.0, np.inf], [1.0, 2.0]])), "NaN or infinite"),
        (lambda: GaussianMixture(2).fit(np.ones(5)), "2-D"),
        (lambda: GaussianMixture(2).fit(np.ones((5, 2, 2))), "2-D"),
        (lambda: GaussianMixture(6).fit(np.random.rand(5, 2)), "n_components=6 must be <= n_samples=5"),
        (lambda: GaussianMixture(2, means_init=np.zeros((3, 2))).fit(np.random.rand(5, 2)), "means_init has shape"),
        (lambda: GaussianMixture(2, weights_init=[0.2, 0.2]).fit(np.random.rand(5, 2)), "sum to 1"),
        (lambda: GaussianMixture(2).predict(np.ones((3, 2))), "not fitted"),
        (lambda: GaussianMixture(2, learn_weights=False, weights_init=[0.9, 0.1]).fit(np.random.rand(5, 2)),
         r"weights_init cannot be given with learn_weights=False"),
        (lambda: GaussianMixture(2).fit(np.random.rand(9, 2)).score(np.ones((3, 3))), "3 features"),
    ],
)
def test_bad_input_raises_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_example_quick_run(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "gmm.py"
    cmd = [sys.executable, str(script), "--quick", "--max-k", "3", "--svi-steps", "100", "--num-samples", "100",
           "--n-init", "2", "--n-per-cluster", "40", "--out", str(tmp_path), "--no-progress"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("synthetic", "iris"):
        m = metrics["datasets"][name]
        assert m["em"]["score"] >= m["sklearn_em"]["score"] - 0.01
        assert m["em"]["adjusted_rand_index"] > 0.5
    assert metrics["model_selection"]["best_bic"] == 3
    assert sorted(metrics["model_selection"]["loo"]) == ["K=1", "K=2", "K=3"]
    for figure in metrics["figures"]:
        assert (tmp_path / figure).stat().st_size > 0


def _two_by_two(matrix):
    return np.array([matrix, matrix], dtype=float)


@pytest.mark.parametrize(
    "covariance_type, init, match",
    [
        ("diag", dict(precisions_init=np.zeros((2, 2))), r"precisions_init for covariance_type='diag' must be positive"),
        ("spherical", dict(precisions_init=np.array([1.0, -2.0])), r"precisions_init for covariance_type='spherical' must be positive"),
        ("full", dict(precisions_init=np.zeros((2, 2, 2))), r"'full' must be symmetric positive definite.*component 0"),
        ("full", dict(precisions_init=_two_by_two([[2.0, 1.0], [0.0, 2.0]])), r"'full' must be symmetric positive definite.*not symmetric"),
        ("full", dict(precisions_init=_two_by_two([[1.0, 2.0], [2.0, 1.0]])), r"'full' must be symmetric positive definite.*eigenvalue -1"),
        ("full", dict(precisions_init=np.ones((2, 2))), r"precisions_init has shape \(2, 2\); expected \(2, 2, 2\)"),
        ("diag", dict(precisions_init=np.ones(2)), r"precisions_init has shape \(2,\); expected \(2, 2\)"),
        ("full", dict(weights_init=[1.5, -0.5]), r"weights_init must lie in \[0, 1\] and sum to 1.*min -0.5, max 1.5"),
        ("full", dict(weights_init=[0.5, 0.5 + 1e-7]), r"weights_init must lie in \[0, 1\] and sum to 1.*sum 1.0000001"),
        ("full", dict(weights_init=[1.0]), r"weights_init has shape \(1,\); expected \(2,\)"),
        ("full", dict(means_init=np.zeros(2)), r"means_init has shape \(2,\); expected \(2, 2\)"),
    ],
)
def test_bad_initial_parameters_raise_like_sklearn(covariance_type, init, match):
    """Each bad weights_init / means_init / precisions_init is rejected by scikit-learn too, and by us with a message."""
    X = blobs(8, n=10)
    with pytest.raises(ValueError):
        SkGaussianMixture(2, covariance_type=covariance_type, **init).fit(X)
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2, covariance_type, **init).fit(X)


@pytest.mark.parametrize("hard", [False, True], ids=["em", "hard_em"])
def test_em_whose_lower_bound_is_not_finite_raises(hard):
    """Means so far off that every sample has zero density: an error, never NaN parameters reported as converged."""
    X = torch.as_tensor(blobs(9, n=10))
    w, m, c, _ = m_step(X, torch.full((1, len(X), 2), 0.5, dtype=X.dtype), "diag", 1e-6)
    far = torch.tensor([[[1e200, 1e200], [-1e200, 1e200]]], dtype=X.dtype)
    with pytest.raises(ValueError, match=r"lower bound of restart 0 is -inf at iteration 1"):
        fit_mixture_em(X, w, far, c, "diag", hard=hard)
    with pytest.raises(ValueError, match=r"lower bound .* at iteration 1.*means_init"):
        GaussianMixture(2, "diag", method="hard_em" if hard else "em", means_init=far[0].numpy()).fit(X)


def _scaled_blobs(scale):
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    return scale * np.concatenate([rng.normal(c, 1.0, size=(100, 2)) for c in centres]), np.repeat(np.arange(3), 100)


@pytest.mark.parametrize("scale", [1e-9, 1e-12])
@pytest.mark.parametrize("init_params", ["kmeans", "k-means++"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("relative_reg", [1e-6, 0.0])
def test_tiny_scale_clusters_are_found_as_by_sklearn(scale, init_params, covariance_type, relative_reg):
    """Well separated clusters shrunk to 1e-9 / 1e-12, reg_covar shrunk alike: scikit-learn's clustering and score."""
    from sklearn.metrics import adjusted_rand_score

    X, truth = _scaled_blobs(scale)
    reg_covar = relative_reg * scale**2
    sk = SkGaussianMixture(3, covariance_type=covariance_type, reg_covar=reg_covar, random_state=0).fit(X)
    ours = GaussianMixture(3, covariance_type, reg_covar=reg_covar, init_params=init_params, random_state=0).fit(X)
    assert adjusted_rand_score(sk.predict(X), ours.predict(X)) == 1.0
    assert adjusted_rand_score(truth, sk.predict(X)) == 1.0
    assert ours.converged_
    assert ours.score(X) == pytest.approx(sk.score(X), abs=1e-6)


def test_reg_covar_swamping_the_data_warns():
    """At scale 1e-9 the default reg_covar=1e-6 dwarfs the data's variance: one cluster (as in scikit-learn), and a warning."""
    X, _ = _scaled_blobs(1e-9)
    with pytest.warns(UserWarning, match=r"reg_covar=1e-06 is larger than the variance of every feature of X .*scale X"):
        ours = GaussianMixture(3, "full", random_state=0).fit(X)
    sk = SkGaussianMixture(3, random_state=0).fit(X)
    assert ours.score(X) == pytest.approx(sk.score(X), abs=1e-6)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GaussianMixture(3, "full", reg_covar=1e-6 * 1e-18, random_state=0).fit(X)


@pytest.mark.parametrize("method", ["score", "score_samples", "predict", "predict_proba", "bic"])
@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[0.0, np.nan]]), "X contains NaN or infinite values"),
        (np.array([[0.0, -np.inf]]), "X contains NaN or infinite values"),
        (np.ones(2), r"X must be 2-D \(n_samples, n_features\), got shape \(2,\).*reshape\(-1, 1\)"),
        (np.ones((0, 2)), "X is empty"),
    ],
    ids=["nan", "inf", "1-D", "empty"],
)
def test_bad_input_after_fit_raises(method, X, match):
    gmm = GaussianMixture(2, random_state=0).fit(blobs(10, n=10))
    with pytest.raises(ValueError, match=match):
        getattr(gmm, method)(X)


def test_single_feature_message_says_how_to_reshape():
    with pytest.raises(ValueError, match=r"reshape\(-1, 1\)"):
        GaussianMixture(2).fit(np.arange(6.0))


def test_tiny_scale_clusters_in_float32():
    from sklearn.metrics import adjusted_rand_score

    X, _ = _scaled_blobs(1e-9)
    sk = SkGaussianMixture(3, reg_covar=1e-24, random_state=0).fit(X)
    ours = GaussianMixture(3, "full", reg_covar=1e-24, random_state=0, dtype=torch.float32).fit(X)
    assert adjusted_rand_score(sk.predict(X), ours.predict(X)) == 1.0
    assert ours.score(X) == pytest.approx(sk.score(X), abs=1e-4)


@pytest.mark.parametrize("method", ["em", "hard_em"])
def test_unconverged_fit_warns_like_sklearn(method):
    """max_iter too small: converged_ is False and a ConvergenceWarning says so, as scikit-learn's does."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    X = wine()
    with pytest.warns(ConvergenceWarning):
        SkGaussianMixture(3, max_iter=2, tol=1e-10, random_state=0).fit(X)
    with pytest.warns(ConvergenceWarning, match=r"did not converge in max_iter=2 iterations"):
        ours = GaussianMixture(3, method=method, max_iter=2, tol=1e-10, init_params="random", random_state=0).fit(X)
    assert not ours.converged_ and ours.n_iter_ == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert GaussianMixture(3, method=method, max_iter=500, init_params="random", random_state=0).fit(X).converged_


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_model_family_answers_the_face_as_sklearn(covariance_type):
    """GaussianMixtureModel at scikit-learn's fitted parameters: posterior, MAP, log-likelihood and samples."""
    from pyro_lvm.models import GaussianMixtureModel

    X = wine()
    sk = SkGaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    model = GaussianMixtureModel(3, covariance_type, weights=torch.as_tensor(sk.weights_),
                                 means=torch.as_tensor(sk.means_), covariances=torch.as_tensor(sk.covariances_))
    Xt = torch.as_tensor(X)
    assert model.max_plate_nesting == 1 and model.latent_sites == ("z",)
    posterior = model.posterior(Xt)
    assert posterior.batch_shape == (len(X),)
    assert np.allclose(posterior.probs.numpy(), sk.predict_proba(X), atol=1e-8)
    assert np.array_equal(model.map_latents(Xt).numpy(), sk.predict(X))
    assert np.allclose(model.log_likelihood(Xt).numpy(), sk.score_samples(X), atol=1e-8)
    x, z = model.sample(5, return_latents=True)
    assert x.shape == (5, X.shape[1]) and z.shape == (5,)
