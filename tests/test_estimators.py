"""pyro_lvm.estimators.GaussianMixture as scikit-learn sees it: check_estimator, clone, Pipeline, GridSearchCV,
NumPy in -> NumPy out and tensors in -> tensors out."""

import numpy as np
import pytest
import torch
from sklearn.base import clone, is_clusterer
from sklearn.datasets import load_iris
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from pyro_lvm import GaussianMixture as TopLevelGaussianMixture
from pyro_lvm.estimators import GaussianMixture
from pyro_lvm.models import GaussianMixtureModel

# The checks that cannot apply, with the reason, skipped through scikit-learn's own mechanism.
EXPECTED_FAILED_CHECKS = {
    "default": {
        "check_clustering": "with the default n_components=1 every sample is in one component, so the check's "
        "three blobs cannot be recovered (GaussianMixture(3) passes it, see below)",
    },
}

FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_", "labels_")


def iris():
    return load_iris().data


@pytest.mark.parametrize(
    "estimator, expected_failed",
    [
        (GaussianMixture(), EXPECTED_FAILED_CHECKS["default"]),
        (GaussianMixture(3, random_state=0), {}),
        (GaussianMixture(3, method="hard_em", random_state=0), {}),
        (GaussianMixture(3, "diag", random_state=0), {}),
        (GaussianMixture(3, "tied", random_state=0), {}),
        (GaussianMixture(2, method="svi", steps=20, random_state=0), {}),
    ],
    ids=["default", "em", "hard_em", "diag", "tied", "svi"],
)
def test_check_estimator_passes(estimator, expected_failed):
    results = check_estimator(estimator, expected_failed_checks=expected_failed, on_fail=None)
    failed = {r["check_name"]: repr(r["exception"]) for r in results if r["status"] == "failed"}
    assert failed == {}
    xfailed = {r["check_name"] for r in results if r["status"] == "xfail"}
    assert xfailed == set(expected_failed)


def test_is_a_clusterer_and_density_estimator_exported_at_the_top():
    assert TopLevelGaussianMixture is GaussianMixture
    assert is_clusterer(GaussianMixture())
    assert hasattr(GaussianMixture, "score_samples") and hasattr(GaussianMixture, "fit_predict")


def test_init_stores_parameters_unchanged_and_fit_validates():
    means = np.zeros((2, 2))
    est = GaussianMixture(0, "nope", "gibbs", means_init=means, device="cpu")  # no error before fit
    assert est.n_components == 0 and est.covariance_type == "nope" and est.means_init is means
    with pytest.raises(ValueError, match="n_components"):
        est.fit(iris())
    with pytest.raises(ValueError, match="lr"):
        GaussianMixture(2, method="svi", lr=0.0).fit(iris())
    with pytest.raises(ValueError, match="steps"):
        GaussianMixture(2, method="svi", steps=0).fit(iris())


def test_clone_keeps_parameters_and_drops_the_fit():
    est = GaussianMixture(3, "diag", "hard_em", tol=1e-5, random_state=0).fit(iris())
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    assert not hasattr(copy, "means_")


def test_pipeline_with_a_scaler():
    X = iris()
    pipe = make_pipeline(StandardScaler(), GaussianMixture(3, random_state=0)).fit(X)
    labels = pipe.predict(X)
    assert isinstance(labels, np.ndarray) and labels.shape == (len(X),)
    sk = make_pipeline(StandardScaler(), SkGaussianMixture(3, random_state=0)).fit(X)
    assert pipe.score(X) >= sk.score(X) - 0.01


def test_grid_search_picks_by_held_out_log_likelihood():
    X = StandardScaler().fit_transform(iris())
    params = {"n_components": [1, 2, 3], "covariance_type": ["diag", "full"]}
    cv = KFold(3, shuffle=True, random_state=0)
    grid = GridSearchCV(GaussianMixture(random_state=0), params, cv=cv).fit(X)
    sk = GridSearchCV(SkGaussianMixture(random_state=0), params, cv=cv).fit(X)
    assert grid.best_params_ == sk.best_params_ and grid.best_params_["n_components"] > 1
    np.testing.assert_allclose(grid.cv_results_["mean_test_score"], sk.cv_results_["mean_test_score"], atol=0.05)


@pytest.mark.parametrize("method", ["em", "hard_em"])
def test_numpy_in_numpy_out(method):
    X = iris()
    est = GaussianMixture(3, method=method, random_state=0).fit(X)
    for name in FITTED:
        assert isinstance(getattr(est, name), np.ndarray), name
    for out in (est.predict(X), est.predict_proba(X), est.score_samples(X), est.fit_predict(X), *est.sample(5)):
        assert isinstance(out, np.ndarray)
    assert isinstance(est.model_, GaussianMixtureModel)
    # a tensor after a NumPy fit still gives a tensor
    assert torch.is_tensor(est.predict(torch.as_tensor(X)))


def test_tensors_in_tensors_out_on_their_device():
    X = torch.as_tensor(iris())
    est = GaussianMixture(3, random_state=0).fit(X)
    for name in FITTED:
        assert torch.is_tensor(getattr(est, name)) and getattr(est, name).device == X.device, name
    for out in (est.predict(X), est.predict_proba(X), est.score_samples(X), *est.sample(5)):
        assert torch.is_tensor(out) and out.device == X.device
    assert isinstance(est.predict(X.numpy()), np.ndarray)


def test_numpy_and_tensor_fits_agree():
    X = iris()
    a = GaussianMixture(3, random_state=0).fit(X)
    b = GaussianMixture(3, random_state=0).fit(torch.as_tensor(X))
    np.testing.assert_allclose(a.means_, b.means_.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(a.labels_, b.labels_.numpy())
