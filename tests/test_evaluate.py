"""The evaluator against closed forms: a linear-Gaussian model has log p(x) and its posterior exactly."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_lvm.infer import bits_per_dim, importance_log_likelihood, per_example_elbo

from linear_gaussian import LinearGaussian  # tests/ is on sys.path under pytest


@pytest.fixture
def lg():
    return LinearGaussian.random()


def data(lg, n=50):
    return lg.marginal().sample((n,))


def test_exact_under_true_posterior(lg):
    x = data(lg)
    ll = importance_log_likelihood(lg.model, lg.exact_guide, x, num_samples=7, chunk_size=3)
    assert ll.shape == (50,)
    torch.testing.assert_close(ll, lg.marginal().log_prob(x), rtol=0, atol=1e-10)
    # the ELBO is exact too when q is the posterior
    torch.testing.assert_close(per_example_elbo(lg.model, lg.exact_guide, x, num_samples=3), lg.marginal().log_prob(x), rtol=0, atol=1e-10)


def test_prior_proposal_is_below_and_tightens_with_k(lg):
    x = data(lg, n=200)
    truth = lg.marginal().log_prob(x).mean()
    estimates = [importance_log_likelihood(lg.model, lg.prior_guide, x, num_samples=k, chunk_size=500).mean() for k in (1, 10, 100, 5000)]
    assert all(a < b for a, b in zip(estimates, estimates[1:])), estimates
    assert all(e < truth for e in estimates[:3])  # a lower bound in expectation, clearly below for small k
    assert abs(truth - estimates[-1]) < 0.05 * (truth - estimates[0])  # k=5000 closes most of the gap


def test_monte_carlo_elbo_matches_analytic_kl(lg):
    """ELBO = E_q[log p(x|z)] - KL(q || p), with both terms in closed form for a Gaussian q."""
    x = data(lg, n=5)
    loc = torch.randn(5, lg.d, dtype=torch.float64)
    scale = torch.rand(5, lg.d, dtype=torch.float64) + 0.3

    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    q = dist.Normal(loc, scale).to_event(1)
    p = dist.Normal(torch.zeros_like(loc), 1.0).to_event(1)
    kl = torch.distributions.kl_divergence(q, p)
    mean = loc @ lg.W.T + lg.b
    var_term = (lg.W**2 @ (scale**2).T).T  # diag(W S W^T) per example
    expected_loglik = (
        -0.5 * lg.D * math.log(2 * math.pi * lg.sigma**2) - (((x - mean) ** 2 + var_term) / (2 * lg.sigma**2)).sum(-1)
    )
    analytic = expected_loglik - kl

    n = 40000
    elbo = per_example_elbo(lg.model, guide, x, num_samples=n, chunk_size=10000)
    # standard error from the per-sample log weights' spread
    from pyro_lvm.infer import log_importance_weights

    spread = log_importance_weights(lg.model, guide, x, num_samples=4000).std(0)
    assert (elbo - analytic).abs().max() < 5 * (spread / math.sqrt(n)).max()


def test_site_outside_data_plate_is_rejected(lg):
    def model(x):
        scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("x", dist.Normal(0.0, scale), obs=x)

    def guide(x):
        pyro.sample("scale", dist.LogNormal(0.0, 1.0))

    with pytest.raises(ValueError, match="'scale' is outside the plate 'data'"):
        importance_log_likelihood(model, guide, torch.zeros(4), num_samples=2)


def test_other_plate_name_and_extra_plates(lg):
    """A plate named differently, at dim -2, with an inner plate over features."""
    x = torch.randn(6, 4)

    def model(x):
        with pyro.plate("examples", 6, dim=-2):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            with pyro.plate("features", 4, dim=-1):
                pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("examples", 6, dim=-2):
            pyro.sample("z", dist.Normal(x.mean(-1, keepdim=True) * 0.8, math.sqrt(0.2)))

    ll = importance_log_likelihood(model, guide, x, num_samples=5, plate="examples")
    # exact posterior of z given 4 unit-variance observations: N(4/5 mean, 1/5), so the estimate is exact
    cov = torch.ones(4, 4) + torch.eye(4)
    torch.testing.assert_close(ll, dist.MultivariateNormal(torch.zeros(4), cov).log_prob(x), atol=1e-4, rtol=0)


def test_bits_per_dim():
    assert bits_per_dim(-784 * math.log(2.0), 784) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="num_dims"):
        bits_per_dim(-1.0, 0)
