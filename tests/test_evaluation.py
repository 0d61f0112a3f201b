"""The latent-Gaussian evaluation recipe (pyro_lvm.evaluation) against closed forms of the linear-Gaussian model.

``z ~ N(0, I)``, ``x | z ~ N(W z + b, sigma^2 I)`` has ``log p(x)`` and ``p(z | x)`` in closed form
(tests/linear_gaussian.py): with the exact posterior as guide the importance weights are constant,
so the importance-weighted log-likelihood and the ELBO both equal ``log p(x)``.
"""

import math

import pytest
import torch
from linear_gaussian import LinearGaussian

from pyro_lvm.evaluation import (
    DELTA_SCALES,
    LatentGaussianEvaluation,
    chunked_log_likelihood,
    evaluate_latent_gaussian,
    guide_for_examples,
)
from pyro_lvm.guides import AmortizedDelta, AmortizedNormal, make_guide

#: The evaluation keys of the metrics.json examples/vae.py wrote before the recipe moved into the package.
VAE_EVALUATION_KEYS = {
    "test_examples", "test_elbo", "test_elbo_is_bound", "test_nll", "test_log_likelihood",
    "test_log_likelihood_stderr", "eval_samples", "likelihood_proposal", "amortization_gap",
    "gap_encoder_elbo", "gap_optimized_elbo", "gap_examples", "active_units", "latent_mean_variances",
    "active_directions", "latent_mean_principal_variances", "bits_per_dim", "eval_seconds",
}


class ExactPosterior:
    """The guide q(z | x) = p(z | x), naming its latent site as pyro_lvm's guides do."""

    site = "z"

    def __init__(self, lg: LinearGaussian):
        self.lg = lg

    def __call__(self, x, index=None):
        self.lg.exact_guide(x)


@pytest.fixture
def lg():
    return LinearGaussian.random(d=2, D=3, sigma=0.5, seed=1)


def test_exact_posterior_gives_the_closed_form_log_likelihood(lg):
    x = lg.sample(40)
    result = evaluate_latent_gaussian(lg.model, ExactPosterior(lg), x, num_samples=7, chunk_examples=15, max_weights=30)
    exact = lg.log_marginal(x)
    # q = p(z | x): every weight is log p(x), so the estimate and the ELBO are exact, not only close
    assert torch.allclose(result.log_likelihood, exact, atol=1e-9)
    assert torch.allclose(result.elbo, exact, atol=1e-9)
    assert result.test_log_likelihood == pytest.approx(exact.mean().item(), abs=1e-9)
    assert result.test_elbo == pytest.approx(exact.mean().item(), abs=1e-9)
    assert result.test_nll == pytest.approx(-exact.mean().item(), abs=1e-9)
    assert result.test_log_likelihood_stderr == pytest.approx((exact.std() / math.sqrt(40)).item(), rel=1e-9)
    assert result.bits_per_dim == pytest.approx(-exact.mean().item() / (3 * math.log(2)), rel=1e-12)
    assert result.test_examples == 40 and result.eval_samples == 7 and result.test_elbo_is_bound
    assert result.likelihood_proposal == "the guide" and result.guide.lg is lg
    # no encoder, no amortization gap
    assert result.amortization_gap is None and result.gap_examples is None and result.gap_encoder_elbo is None


def test_active_units_and_directions_of_the_exact_posterior_means(lg):
    x = lg.sample(400)
    result = evaluate_latent_gaussian(lg.model, ExactPosterior(lg), x, num_samples=2)
    mean, _ = lg.posterior(x)  # E[z | x_n], closed form; the recipe averages 100 posterior draws
    variances = mean.var(0)
    eigenvalues = torch.linalg.eigvalsh(torch.cov(mean.T)).flip(0)
    assert torch.allclose(result.latent_mean_variances, variances, rtol=0.05)
    assert torch.allclose(result.latent_mean_principal_variances, eigenvalues, rtol=0.05)
    assert result.active_units == int((variances > 0.01).sum())
    assert result.active_directions == int((eigenvalues > 0.01).sum())


def test_the_record_has_the_keys_examples_vae_wrote(lg):
    x = lg.sample(10)
    result = evaluate_latent_gaussian(lg.model, ExactPosterior(lg), x, num_samples=3)
    record = result.to_dict()
    assert set(record) == VAE_EVALUATION_KEYS == set(LatentGaussianEvaluation.RECORD_KEYS)
    assert record["eval_seconds"] > 0


def posterior_mean_map(lg: LinearGaussian) -> tuple[torch.Tensor, torch.Tensor]:
    """E[z | x] = A x + c as a linear layer's (weight, bias)."""
    precision = torch.eye(lg.d) + lg.W.T @ lg.W / lg.sigma**2
    A = torch.linalg.solve(precision, lg.W.T) / lg.sigma**2
    return A, -A @ lg.b


def test_a_point_guide_is_scored_with_a_gaussian_around_its_point():
    lg = LinearGaussian.random(d=2, D=3, sigma=0.5, seed=1, dtype=torch.float32)
    guide = AmortizedDelta(3, 2, hidden_dims=())
    weight, bias = posterior_mean_map(lg)
    with torch.no_grad():  # the point is the exact posterior mean
        guide.encoder.output_layer.weight.copy_(weight)
        guide.encoder.output_layer.bias.copy_(bias)
    x = lg.sample(60)
    result = evaluate_latent_gaussian(lg.model, guide, x, num_samples=3000, gap_examples=20, gap_steps=5)
    # the scale is the grid's best by the ELBO, whose closed form here is log p(x) - KL(N(m, s^2 I) || p(z | x))
    _, precision = lg.posterior(x)
    covariance = torch.linalg.inv(precision)

    def kl(s):
        return 0.5 * (torch.trace(precision) * s**2 - 2 + torch.logdet(covariance) - 4 * math.log(s)).item()

    best = min(DELTA_SCALES, key=kl)
    assert result.likelihood_proposal == f"N(point, {best}^2 I), scale chosen by ELBO from {list(DELTA_SCALES)}"
    assert not result.test_elbo_is_bound
    # the hard ELBO is log p(x, E[z | x]) = log p(x) + log N(0; 0, Sigma), Sigma the posterior covariance
    hard = lg.log_marginal(x) + torch.distributions.MultivariateNormal(torch.zeros(2), covariance).log_prob(torch.zeros(2))
    assert torch.allclose(result.elbo, hard, atol=1e-4)
    # a Gaussian proposal around the exact posterior mean: the closed form, up to the estimator's noise
    assert result.test_log_likelihood == pytest.approx(lg.log_marginal(x).mean().item(), abs=0.1)
    assert result.gap_examples == 20 and result.amortization_gap is not None


def test_an_encoder_has_an_amortization_gap_and_its_likelihood_is_below_nothing_exact():
    lg = LinearGaussian.random(d=2, D=3, sigma=0.5, seed=1, dtype=torch.float32)
    guide = AmortizedNormal(3, 2, hidden_dims=())
    x = lg.sample(30)
    result = evaluate_latent_gaussian(lg.model, guide, x, num_samples=2000, gap_examples=10, gap_steps=200)
    exact = lg.log_marginal(x).mean().item()
    # an untrained encoder: the ELBO is a bound, the importance-weighted estimate closes most of the distance
    assert result.test_elbo < exact
    assert result.test_elbo < result.test_log_likelihood <= exact + 0.05
    assert result.gap_examples == 10 and result.amortization_gap > 0  # optimizing per example beats the encoder


def test_a_local_guide_gets_rows_fitted_to_the_test_examples():
    lg = LinearGaussian.random(d=2, D=3, sigma=0.5, seed=1, dtype=torch.float32)
    trained = make_guide("local", 3, 2, num_examples=5)  # rows of 5 training examples
    x = lg.sample(30)
    fitted = guide_for_examples(lg.model, trained, x, steps=300, chunk_size=12)
    assert fitted.num_examples == 30 and fitted.family is trained.family
    mean, _ = lg.posterior(x)  # the fitted rows' means approach the exact posterior means
    assert torch.allclose(fitted.params[0], mean, atol=0.15)
    # chunks of examples carry their ids, so each chunk is scored with its own rows
    ll = chunked_log_likelihood(lg.model, fitted, x, num_samples=2000, chunk_examples=7)
    assert torch.allclose(ll, lg.log_marginal(x), atol=0.1)
    result = evaluate_latent_gaussian(lg.model, trained, x, num_samples=50, local_steps=20)
    assert result.guide.num_examples == 30 and result.amortization_gap is None
    assert guide_for_examples(lg.model, AmortizedNormal(3, 2), x) is not None
