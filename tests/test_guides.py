"""Guide families: each trains without NaN; exactness against closed forms; bookkeeping of local and delta."""


import re

import pyro
import pyro.distributions as dist
import pytest
import torch
from linear_gaussian import correlated_linear_gaussian  # tests/ is on sys.path under pytest
from pyro import poutine

from pyro_lvm.guides import (
    GUIDE_FAMILIES,
    AmortizedDelta,
    AmortizedNormal,
    LocalGuide,
    SemiAmortized,
    check_guide_sites,
    make_guide,
)
from pyro_lvm.infer import per_example_elbo, train
from pyro_lvm.models import DeepLatentGaussian


def small_options(name, model, n):
    return {"local": dict(num_examples=n, model=model.model), "semi": dict(model=model.model, hidden_dims=(16,), refine_steps=2)}.get(
        name, dict(hidden_dims=(16,))
    )


@pytest.mark.parametrize("loss", ["elbo", "iwae"])
@pytest.mark.parametrize("name", sorted(GUIDE_FAMILIES))
def test_every_family_trains_without_nan(name, loss):
    if name == "delta" and loss == "iwae":
        pytest.skip("a point guide has no density for importance weights")
    x = (torch.rand(60, 12) < torch.linspace(0.1, 0.9, 12)).float()
    model = DeepLatentGaussian(12, 3, (16,), output_bias=DeepLatentGaussian.output_bias_from_data(x))
    guide = make_guide(name, 12, 3, **small_options(name, model, len(x)))
    data = (x, torch.arange(len(x))) if name == "local" else x
    objective = (
        pyro.infer.TraceMeanField_ELBO(max_plate_nesting=1) if loss == "elbo"
        else pyro.infer.RenyiELBO(alpha=0.0, num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    )
    # a per-example row moves once per epoch: at 1e-2 its 4 steps stay within the loss's Monte Carlo noise
    lr = 5e-2 if name == "local" else 1e-2
    history = train(model.model, guide, data, loss=objective, epochs=4, batch_size=20, lr=lr, progress=False)
    losses = torch.tensor(history.step_loss)
    assert torch.isfinite(losses).all()
    assert history.epochs[-1]["train_loss"] < history.epochs[0]["train_loss"]
    args = (x, torch.arange(len(x))) if name == "local" else (x,)
    assert torch.isfinite(per_example_elbo(model.model, guide, *args, num_samples=2)).all()


def fit_linear_gaussian(guide_name, steps=800):
    lg = correlated_linear_gaussian()
    x = lg.sample(100)
    guide = make_guide(guide_name, 3, 2, hidden_dims=())  # a linear encoder can output the exact posterior
    optimizer = pyro.optim.ExponentialLR({"optimizer": torch.optim.Adam, "optim_args": {"lr": 0.05}, "gamma": 0.996})
    train(lg.model, guide, x, loss=pyro.infer.Trace_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=1),
          optimizer=optimizer, epochs=steps, batch_size=len(x), progress=False)
    return lg, x, guide


def test_mvn_recovers_the_exact_posterior_of_a_linear_gaussian_model():
    lg, x, guide = fit_linear_gaussian("mvn")
    elbo = per_example_elbo(lg.model, guide, x, num_samples=50)
    exact = lg.log_marginal(x)
    assert (elbo.mean() - exact.mean()).abs() < 0.01
    mean, precision = lg.posterior(x)
    q = guide.distribution(x)
    assert torch.allclose(q.loc, mean, atol=0.1)  # the means spread over [-2, 2]
    assert torch.allclose(q.covariance_matrix[0], torch.linalg.inv(precision), atol=0.02)


def test_diagonal_normal_cannot_reach_a_correlated_posterior():
    """The same fit with the diagonal family stops at the mean-field KL, 0.5 (sum log diag(P) - log det P)."""
    lg, x, guide = fit_linear_gaussian("normal")
    _, precision = lg.posterior(x)
    mean_field_kl = 0.5 * (precision.diagonal().log().sum() - torch.logdet(precision))
    # 1000 draws: with 50 the Monte Carlo error of the mean gap is about 0.015, close to the tolerance
    gap = (lg.log_marginal(x) - per_example_elbo(lg.model, guide, x, num_samples=1000)).mean()
    assert mean_field_kl > 0.05
    assert gap == pytest.approx(mean_field_kl.item(), abs=0.02)


def test_delta_loss_is_the_hard_elbo_at_the_encoders_point():
    x = (torch.rand(8, 10) < 0.4).float()
    model = DeepLatentGaussian(10, 3, (7,))
    guide = AmortizedDelta(10, 3, hidden_dims=(5,))
    z = guide.encoder(x)
    expected = -(model.prior().log_prob(z) + model.likelihood_dist(z).log_prob(x)).sum()
    for elbo in (pyro.infer.Trace_ELBO(), pyro.infer.TraceMeanField_ELBO()):
        assert elbo.loss(model.model, guide, x) == pytest.approx(expected.item(), rel=1e-5)
    assert AmortizedDelta.is_bound is False


def test_local_guide_keeps_each_examples_parameters_across_shuffled_minibatches():
    x = torch.randn(10, 3)
    guide = make_guide("local", 3, 2, num_examples=10)
    with torch.no_grad():
        guide.params[0].copy_(torch.arange(20.0).reshape(10, 2))
    perm = torch.randperm(10)[:4]
    trace = poutine.trace(guide).get_trace(x[perm], index=perm)  # the ids by keyword: the guide has no model to bind them
    assert torch.equal(trace.nodes["z"]["fn"].base_dist.loc, guide.params[0][perm])

    # one plain SGD step on a minibatch moves exactly that minibatch's rows
    lg = correlated_linear_gaussian()
    before = [p.detach().clone() for p in guide.params]
    loss = pyro.infer.Trace_ELBO().differentiable_loss(lg.model, guide, x[perm], index=perm)
    grads = torch.autograd.grad(loss, list(guide.params))
    moved = [(g.abs().sum(-1) > 0) for g in grads]
    expected = torch.zeros(10, dtype=torch.bool)
    expected[perm] = True
    assert all(torch.equal(m, expected) for m in moved)
    assert all(torch.equal(b, p) for b, p in zip(before, guide.params))


def test_local_guide_trained_on_shuffled_minibatches_reaches_each_examples_mean_field_optimum():
    """Mean-field optimum of a Gaussian posterior N(m, P^-1): loc = m, scale = diag(P)^(-1/2)."""
    lg = correlated_linear_gaussian()
    x = lg.sample(40)
    guide = make_guide("local", 3, 2, num_examples=40, model=lg.model)  # binds the ids to model(x, index)'s position
    optimizer = pyro.optim.ClippedAdam({"lr": 0.1, "lrd": 0.997})
    loss = pyro.infer.TraceMeanField_ELBO(num_particles=16, vectorize_particles=True, max_plate_nesting=1)
    train(lg.model, guide, (x, torch.arange(40)), loss=loss, optimizer=optimizer, epochs=200, batch_size=10, progress=False)
    mean, precision = lg.posterior(x)
    q = guide.family.distribution_from(tuple(guide.params)).base_dist
    # SVI noise leaves errors of a few hundredths; rows mixed up between examples would be off by ~1
    assert (q.loc - mean).abs().mean() < 0.03 and (q.loc - mean).abs().max() < 0.15
    assert (mean - mean.mean(0)).abs().mean() > 0.5
    assert torch.allclose(q.scale.mean(0), precision.diagonal().rsqrt(), atol=0.01)
    assert torch.allclose(q.scale, precision.diagonal().rsqrt().expand(40, 2), atol=0.06)


def test_local_guide_rejects_bad_ids():
    guide = make_guide("local", 3, 2, num_examples=10)
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="ids"):
        guide(x)  # 4 examples but 10 rows and no ids
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        guide(x, index=torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match="integer example ids"):
        guide(x, index=torch.zeros(4))


def test_semi_amortized_refinement_raises_the_elbo():
    lg = correlated_linear_gaussian()
    x = lg.sample(100)
    encoder = AmortizedNormal(3, 2, hidden_dims=())
    semi = SemiAmortized(encoder, lg.model, refine_steps=20, refine_lr=0.05)
    plain = per_example_elbo(lg.model, encoder, x, num_samples=200).mean()
    refined = per_example_elbo(lg.model, semi, x, num_samples=200).mean()
    assert refined > plain + 1.0
    assert refined <= lg.log_marginal(x).mean() + 0.05


def test_iwae_with_one_particle_equals_the_elbo():
    x = (torch.rand(16, 10) < 0.5).float()
    model = DeepLatentGaussian(10, 3, (7,))
    guide = make_guide("iaf", 10, 3, hidden_dims=(8,), context_dim=4)
    pyro.set_rng_seed(3)
    iwae = pyro.infer.RenyiELBO(alpha=0.0, num_particles=1, max_plate_nesting=1).loss(model.model, guide, x)
    pyro.set_rng_seed(3)
    elbo = pyro.infer.Trace_ELBO(max_plate_nesting=1).loss(model.model, guide, x)
    assert iwae == pytest.approx(elbo, rel=1e-5)


def test_unknown_guide_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown guide 'nope'.*'delta', 'iaf', 'local', 'lowrank', 'mvn', 'normal', 'semi'"):
        make_guide("nope", 4, 2)


@pytest.mark.parametrize("name, missing", [("local", "num_examples"), ("semi", "model")])
def test_families_name_their_required_options(name, missing):
    with pytest.raises(ValueError, match=missing):
        make_guide(name, 4, 2)


def test_guide_on_a_model_without_its_site_names_the_sites_that_exist():
    def model(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            w = pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("obs", dist.Normal(w.sum(-1, keepdim=True).expand(-1, 3), 1.0).to_event(1), obs=x)

    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"samples 'z'.*latent sites are \['w'\].*observed sites \['obs'\]"):
        check_guide_sites(model, AmortizedNormal(3, 2, hidden_dims=(4,)), x)
    with pytest.raises(ValueError, match=r"model observes 'obs'"):
        check_guide_sites(model, AmortizedNormal(3, 2, hidden_dims=(4,), site="obs"), x)
    right = AmortizedNormal(3, 2, hidden_dims=(4,), site="w")
    state = torch.get_rng_state()
    check_guide_sites(model, right, x)  # the right site: no error
    assert torch.equal(torch.get_rng_state(), state)  # and the random stream is untouched


def test_family_options_are_checked():
    with pytest.raises(ValueError, match="rank"):
        make_guide("lowrank", 4, 2, rank=0)
    with pytest.raises(ValueError, match="num_flows"):
        make_guide("iaf", 4, 2, num_flows=0)
    with pytest.raises(ValueError, match="refine_steps"):
        SemiAmortized(AmortizedNormal(4, 2), lambda x: None, refine_steps=-1)
    with pytest.raises(ValueError, match="scale"):
        AmortizedDelta(4, 2).proposal(0.0)
    assert isinstance(make_guide("local", 4, 2, num_examples=3), LocalGuide)



def _vae_example():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "vae.py"
    spec = importlib.util.spec_from_file_location("vae_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["delta", "local", "semi"])
def test_vae_example_runs_the_families_that_need_extra_care(name, tmp_path):
    """delta is labelled a hard ELBO; local has no encoder (no gap) and is fitted on the test examples."""
    import json

    vae = _vae_example()
    vae.EVAL_CHUNK = 16  # log p(x) in three calls: local's rows must follow each chunk's example ids
    vae.main(["--quick", "--guide", name, "--epochs", "2", "--eval-samples", "20", "--eval-examples", "40",
                         "--gap-examples", "10", "--gap-steps", "5", "--local-steps", "10", "--refine-steps", "2",
                         "--no-progress", "--out", str(tmp_path)])
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["guide"] == name and m["test_examples"] == 40 and m["test_nll"] > 0
    assert m["test_nll"] == pytest.approx(-m["test_log_likelihood"])
    assert 0 <= m["active_units"] <= m["z_dim"] and 0 <= m["active_directions"] <= m["z_dim"]
    assert len(m["latent_mean_principal_variances"]) == m["z_dim"]
    assert m["test_elbo_is_bound"] is (name != "delta")
    if name == "delta":
        assert "hard ELBO" in m["objective"] and "N(point" in m["likelihood_proposal"]
    if name == "local":
        assert m["amortization_gap"] is None
    else:
        assert m["amortization_gap"] == pytest.approx(m["gap_optimized_elbo"] - m["gap_encoder_elbo"], abs=1e-4)
    assert (tmp_path / "reconstructions.png").exists()


def test_vae_example_rejects_iwae_with_a_point_guide(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _vae_example().parse_args(["--guide", "delta", "--loss", "iwae", "--out", str(tmp_path)])
    assert "--loss iwae needs a guide with" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["mvn", "lowrank"])
def test_full_and_low_rank_families_get_the_closed_form_kl_to_a_diagonal_prior(name):
    """KL(N(m, S) || N(mu, diag(s^2))) = 0.5 [tr(D^-1 S) + (mu - m)^T D^-1 (mu - m) - d + log det D - log det S]."""
    x = torch.randn(5, 6)
    q = make_guide(name, 6, 3, hidden_dims=(4,)).distribution(x)
    prior = dist.Normal(torch.tensor([0.5, -1.0, 0.0]), torch.tensor([1.0, 2.0, 0.5])).to_event(1)
    S, m = q.covariance_matrix, q.loc
    D = prior.base_dist.scale**2
    diff = prior.base_dist.loc - m
    expected = 0.5 * ((S.diagonal(dim1=-2, dim2=-1) / D).sum(-1) + (diff**2 / D).sum(-1) - 3 + D.log().sum() - torch.logdet(S))
    assert torch.allclose(torch.distributions.kl_divergence(q, prior), expected, atol=1e-4)
    samples = q.rsample((20000,))
    monte_carlo = (q.log_prob(samples) - prior.log_prob(samples)).mean(0)
    assert torch.allclose(monte_carlo, expected, atol=0.05)


def test_train_stops_on_a_guide_for_a_missing_site_before_any_step():
    def model(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            w = pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("obs", dist.Normal(w.sum(-1, keepdim=True).expand(-1, 3), 1.0).to_event(1), obs=x)

    guide = AmortizedNormal(3, 2, hidden_dims=(4,))  # site "z", which the model does not have
    before = [p.detach().clone() for p in guide.parameters()]
    with pytest.raises(ValueError, match=r"samples 'z'.*latent sites are \['w'\]"):
        train(model, guide, torch.randn(8, 3), epochs=1, batch_size=4, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, guide.parameters()))


@pytest.mark.parametrize("hidden_dims", [(0,), (16, 0), (-2,), (2.5,), (True,)])
@pytest.mark.parametrize("name", sorted(set(GUIDE_FAMILIES) - {"local"}))  # local has no encoder: it ignores them
def test_every_encoder_family_refuses_a_width_that_is_not_a_positive_int(name, hidden_dims):
    """hidden_dims=(0,) used to build an encoder whose output is its last bias: q(z | x) ignored x."""
    options = {"model": lambda x: None} if name == "semi" else {}
    with pytest.raises(ValueError, match=r"hidden_dims must be positive ints.*got " + re.escape(repr(hidden_dims))):
        make_guide(name, 4, 2, hidden_dims=hidden_dims, **options)


def test_flow_layer_widths_are_checked_too():
    with pytest.raises(ValueError, match=r"flow_hidden_dims must be positive ints.*got \(0,\)"):
        make_guide("iaf", 4, 2, flow_hidden_dims=(0,))
    assert make_guide("normal", 4, 2, hidden_dims=()).distribution(torch.randn(3, 4)).batch_shape == (3,)  # linear: fine


@pytest.mark.parametrize("name", sorted(GUIDE_FAMILIES))
def test_every_family_names_an_empty_batch(name):
    model = DeepLatentGaussian(4, 2, (8,))
    guide = make_guide(name, 4, 2, **small_options(name, model, 3))
    with pytest.raises(ValueError, match=r"observed argument 0 has no examples.*shape \(0, 4\)"):
        guide(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))


def test_guide_of_another_latent_size_names_the_site_and_both_shapes():
    """It used to fail inside the decoder: 'mat1 and mat2 shapes cannot be multiplied'."""
    model = DeepLatentGaussian(12, 3, (8,))
    guide = AmortizedNormal(12, 2, hidden_dims=(8,))
    x = (torch.rand(10, 12) < 0.5).float()
    message = r"site 'z'.*guide samples shape \(10, 2\).*model expects shape \(10, 3\)"
    with pytest.raises(ValueError, match=message):
        check_guide_sites(model.model, guide, x)
    with pytest.raises(ValueError, match=message.replace("10", "5")):
        train(model.model, guide, x, epochs=1, batch_size=5, progress=False)
    # a model that would broadcast the wrong shape silently is caught as well
    def broadcasting_model(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(3), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True).expand(-1, 12), 1.0).to_event(1), obs=x)

    with pytest.raises(ValueError, match=message):
        check_guide_sites(broadcasting_model, guide, x)


def test_train_refuses_a_guide_that_leaves_a_latent_site_to_the_prior():
    def model(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            w = pyro.sample("w", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z.sum(-1) + w, 1.0), obs=x)

    with pytest.raises(ValueError, match=r"the guide does not sample \['w'\].*latent sites are \['w', 'z'\]"):
        train(model, AmortizedNormal(1, 2, hidden_dims=(4,)), torch.randn(8), epochs=1, batch_size=4, progress=False)
