"""Amortization gap against the mean-field closed form; posterior means and active units."""

import pyro
import pytest
import torch
from linear_gaussian import LinearGaussian, correlated_linear_gaussian  # tests/ is on sys.path under pytest

from pyro_lvm.guides import AmortizedDelta, AmortizedNormal, LocalGuide, make_guide, optimize_local_params
from pyro_lvm.infer import active_directions, active_units, amortization_gap, per_example_elbo, posterior_means


def test_gap_of_an_untrained_encoder_is_the_distance_to_the_mean_field_optimum():
    """Per-example optimization of a diagonal Gaussian reaches log p(x) - 0.5 (sum log diag(P) - log det P)."""
    lg = correlated_linear_gaussian()
    x = lg.sample(30)
    guide = AmortizedNormal(3, 2, hidden_dims=(8,))  # untrained: far from every posterior
    gap = amortization_gap(lg.model, guide, x, steps=400, lr=0.05, final_lr=1e-3, num_particles=8, num_samples=500)
    _, precision = lg.posterior(x)
    mean_field_kl = 0.5 * (precision.diagonal().log().sum() - torch.logdet(precision))
    best = (lg.log_marginal(x) - mean_field_kl).mean().item()
    assert gap["optimized_elbo"] == pytest.approx(best, abs=0.03)
    assert gap["encoder_elbo"] == pytest.approx(per_example_elbo(lg.model, guide, x, num_samples=500).mean().item(), abs=0.3)
    assert gap["gap"] == pytest.approx(gap["optimized_elbo"] - gap["encoder_elbo"])
    assert gap["gap"] > 1.0 and gap["per_example_gap"].shape == (30,)


def exact_mvn_guide(lg):
    """An ``mvn`` family with a linear encoder set by hand to the exact posterior of ``lg``."""
    D, d = lg.W.shape
    guide = make_guide("mvn", D, d, hidden_dims=())
    _, precision = lg.posterior(lg.b[None])
    A = torch.linalg.solve(precision, lg.W.T) / lg.sigma**2  # posterior mean = A (x - b)
    L = torch.linalg.cholesky(torch.linalg.inv(precision))
    rows, cols = torch.tril_indices(d, d, offset=-1)
    with torch.no_grad():
        layer = guide.encoder.output_layer
        layer.weight.zero_()
        layer.weight[:d] = A
        layer.bias.copy_(torch.cat([-A @ lg.b, L.diagonal().expm1().log(), L[rows, cols]]))
    return guide


def test_gap_is_zero_when_the_encoder_is_already_per_example_optimal():
    """Start an mvn family exactly at the posterior (a hand-set linear encoder): nothing is left to gain."""
    lg = correlated_linear_gaussian()
    x = lg.sample(20)
    guide = exact_mvn_guide(lg)
    assert torch.allclose(guide.distribution(x).loc, lg.posterior(x)[0], atol=1e-5)
    gap = amortization_gap(lg.model, guide, x, steps=50, lr=1e-3, num_samples=20)
    assert gap["encoder_elbo"] == pytest.approx(lg.log_marginal(x).mean().item(), abs=1e-3)
    assert abs(gap["gap"]) < 1e-2


def test_default_optimization_keeps_a_many_parameter_family_at_its_optimum():
    """16 latents, a narrow posterior (scales near 0.03), 136 Cholesky entries per example: with a
    constant step and one sample per step Adam random-walks away from the exact posterior and the
    gap turns far negative; the default (decaying step, 4 samples) stays within Monte Carlo reach."""
    torch.manual_seed(0)
    lg = LinearGaussian(torch.randn(48, 16), torch.randn(48), 0.2)
    x = lg.sample(40)
    guide = exact_mvn_guide(lg)
    pyro.set_rng_seed(1)
    default = amortization_gap(lg.model, guide, x, num_samples=200)
    assert default["encoder_elbo"] == pytest.approx(lg.log_marginal(x).mean().item(), abs=0.05)
    assert abs(default["gap"]) < 0.2
    pyro.set_rng_seed(1)
    constant = amortization_gap(lg.model, guide, x, final_lr=1e-2, num_particles=1, num_samples=200)
    assert constant["gap"] < -10.0


def test_gap_needs_an_encoder():
    lg = correlated_linear_gaussian()
    with pytest.raises(ValueError, match="encoder family"):
        amortization_gap(lg.model, make_guide("local", 3, 2, num_examples=4), lg.sample(4))


def test_optimize_local_params_leaves_the_start_and_the_model_alone():
    lg = correlated_linear_gaussian()
    x = lg.sample(5)
    family = AmortizedNormal(3, 2, hidden_dims=())
    start = tuple(p.detach() for p in family.local_params(x))
    copy = tuple(p.clone() for p in start)
    out = optimize_local_params(lg.model, family, start, x, steps=3)
    assert all(torch.equal(a, b) for a, b in zip(start, copy))
    assert all(o.shape == s.shape and not o.requires_grad for o, s in zip(out, start))
    with pytest.raises(ValueError, match="optimizer"):
        optimize_local_params(lg.model, family, start, x, optimizer="lbfgs")


def test_posterior_means_exact_for_closed_forms_and_sampled_otherwise():
    x = torch.randn(6, 4)
    delta = AmortizedDelta(4, 3, hidden_dims=(5,))
    assert torch.allclose(posterior_means(delta, x), delta.encoder(x))
    rows = torch.randn(6, 3)
    local = LocalGuide(AmortizedNormal(4, 3, hidden_dims=()), (rows, torch.full((6, 3), -3.0)))
    means = posterior_means(local, x, num_samples=4000)  # a per-example table: Monte Carlo
    assert torch.allclose(means, rows, atol=0.01)  # scale softplus(-3) ~ 0.05, error ~ 0.05 / sqrt(4000)
    iaf = make_guide("iaf", 4, 3, hidden_dims=(5,), context_dim=2)
    pyro.set_rng_seed(1)
    draws = iaf.distribution(x).sample((20000,))
    assert torch.allclose(posterior_means(iaf, x, num_samples=20000), draws.mean(0), atol=0.05)


def test_active_units_counts_dimensions_whose_mean_varies_across_examples():
    means = torch.randn(2000, 4) * torch.tensor([1.0, 0.2, 0.05, 0.0])  # variances 1, 0.04, 0.0025, 0
    count, variances = active_units(means)
    assert count == 2
    assert torch.allclose(variances, torch.tensor([1.0, 0.04, 0.0025, 0.0]), rtol=0.1, atol=1e-6)
    assert active_units(means, threshold=0.001)[0] == 3
    with pytest.raises(ValueError, match="means"):
        active_units(torch.zeros(1, 4))


def test_active_directions_do_not_depend_on_the_axes():
    """Two used directions, rotated across all six axes: every axis varies, two directions do."""
    torch.manual_seed(0)
    aligned = torch.randn(3000, 6) * torch.tensor([1.0, 0.3, 0.02, 0.02, 0.0, 0.0])
    rotation = torch.linalg.qr(torch.randn(6, 6))[0]
    rotated = aligned @ rotation.T
    assert active_units(aligned)[0] == active_directions(aligned)[0] == 2
    assert active_units(rotated, threshold=0.001)[0] == 6
    count, variances = active_directions(rotated)
    assert count == 2
    assert torch.allclose(variances[:2], torch.tensor([1.0, 0.09]), rtol=0.1) and (variances.diff() <= 0).all()
    assert variances.sum() == pytest.approx(rotated.var(0).sum().item(), rel=1e-5)  # a rotation keeps the total
    assert active_directions(torch.randn(50, 1))[1].shape == (1,)
    with pytest.raises(ValueError, match="means"):
        active_directions(torch.zeros(1, 4))
