"""Imputing missing values, against the closed-form posterior mean of a linear-Gaussian model.

z ~ N(0, I_d), x | z ~ N(W z + b, s^2 I); with the observed coordinates o, E[x_m | x_o] = W_m E[z | x_o] + b_m,
E[z | x_o] = P^{-1} W_o^T (x_o - b_o) / s^2, P = I + W_o^T W_o / s^2. (a) the notes' program (q(z) q(x_missing)
fitted by SVI with the model fixed; a Gaussian mean field has the exact means) and (b) self-normalized importance
sampling of E[W z + b] both reach it. Then the masked VAE story: its bad inputs, and its imputation running.
Last, binary values: the notes' program sums them out exactly (TraceEnum_ELBO), so on the masked VAE its objective
and gradient equal the hand-written expectation at the same draw of z, and on a logistic story its fit reaches the
mean-field fixed point.
"""

import copy

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_lvm.guides import make_guide
from pyro_lvm.infer import importance_draws, importance_resample, posterior_expectation
from pyro_lvm.infer.imputation import (
    MissingValuesGuide,
    fit_missing_values,
    missing_value_scores,
    missing_values_elbo,
    values_in_plate,
)
from pyro_lvm.models.masked_dlgm import MaskedDeepLatentGaussian

D, d, SIGMA = 5, 2, 0.5
G = torch.Generator().manual_seed(0)
W, B = torch.randn(D, d, generator=G), torch.randn(D, generator=G)


def lg_story(x, mask, missing_latent=False):
    with pyro.plate("data", x.shape[0], dim=-1):
        z = pyro.sample("z", dist.Normal(torch.zeros(d), 1.0).to_event(1))
        loc = z @ W.T + B
        pyro.deterministic("mean", loc, event_dim=1)
        px = dist.Normal(loc, SIGMA)
        pyro.sample("x", px.mask(mask).to_event(1), obs=x * mask)
        if missing_latent:  # one value per element of the plate "values": batch (D, N), as MissingValuesGuide samples it
            with pyro.plate("values", x.shape[1], dim=-2):
                pyro.sample("x_missing", dist.Normal(values_in_plate(loc), SIGMA).mask(~mask.mT))


def lg_with_missing(x, mask):
    lg_story(x, mask, missing_latent=True)


def exact_missing_mean(x, mask):
    """E[x | x_o] at every coordinate, (N, D)."""
    out = []
    for n in range(x.shape[0]):
        o = mask[n]
        Wo = W[o]
        precision = torch.eye(d) + Wo.T @ Wo / SIGMA**2
        ez = torch.linalg.solve(precision, Wo.T @ (x[n, o] - B[o])) / SIGMA**2
        out.append(W @ ez + B)
    return torch.stack(out)


def lg_data(n=8):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, d, generator=g) @ W.T + B + SIGMA * torch.randn(n, D, generator=g)
    mask = torch.rand(n, D, generator=g) < 0.5
    mask[:, 0] = True
    mask[:, -1] = False  # every example has something observed and something missing
    return x, mask


class MeanFieldZ(pyro.nn.PyroModule):
    """q(z_n) = N(m_n, diag(s_n^2)): free parameters per example."""

    def __init__(self, n):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(n, d))
        self.raw_scale = torch.nn.Parameter(torch.full((n, d), -1.0))

    def forward(self, x, mask):
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(self.loc, torch.nn.functional.softplus(self.raw_scale)).to_event(1))


def test_notes_program_fitted_by_svi_reaches_the_exact_posterior_mean_of_the_missing_values():
    x, mask = lg_data()
    pyro.clear_param_store()
    torch.manual_seed(0)
    guide = MissingValuesGuide(MeanFieldZ(len(x)), tuple(x.shape), family="normal")
    fitted = fit_missing_values(lg_with_missing, guide, x, mask, steps=2000, lr=0.02, num_particles=32)
    torch.testing.assert_close(fitted[~mask], exact_missing_mean(x, mask)[~mask], atol=0.1, rtol=0)


def prior_guide(x, mask):
    with pyro.plate("data", x.shape[0], dim=-1):
        pyro.sample("z", dist.Normal(torch.zeros(d), 1.5).to_event(1))


def test_importance_weighted_imputation_reaches_the_exact_posterior_mean():
    """A broad proposal (not the posterior): only the self-normalized weights make the mean right."""
    x, mask = lg_data()
    torch.manual_seed(0)
    draws, log_w = importance_draws(lg_story, prior_guide, x, mask, num_samples=40000)
    assert draws["mean"].shape == (40000, 8, D) and draws["z"].shape == (40000, 8, d) and log_w.shape == (40000, 8)
    estimate = posterior_expectation(draws["mean"], log_w)
    exact = exact_missing_mean(x, mask)
    torch.testing.assert_close(estimate[~mask], exact[~mask], atol=0.05, rtol=0)
    unweighted = draws["mean"].mean(0)
    assert (unweighted - exact)[~mask].abs().max() > 0.3  # the weights matter
    resampled = importance_resample(draws["mean"], log_w, 4000, generator=torch.Generator().manual_seed(0))
    assert resampled.shape == (4000, 8, D)
    torch.testing.assert_close(resampled.mean(0)[~mask], exact[~mask], atol=0.15, rtol=0)


def test_posterior_expectation_needs_matching_shapes():
    with pytest.raises(ValueError, match=r"values must have shape \(S, N, ...\)"):
        posterior_expectation(torch.zeros(3, 4, 2), torch.zeros(3, 5))


def test_missing_value_scores_against_hand_computation():
    probs = torch.tensor([[0.9, 0.2, 0.5], [0.3, 0.6, 0.1]])
    x = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    mask = torch.tensor([[True, False, False], [False, True, False]])
    scores = missing_value_scores(probs, x, mask)
    # missing: (0,1) p=.2 x=1; (0,2) p=.5 x=0; (1,0) p=.3 x=0; (1,2) p=.1 x=1
    expected = torch.tensor([0.2, 0.5, 0.7, 0.1]).log().mean()
    assert scores["missing_pixel_log_likelihood"] == pytest.approx(float(expected))
    assert scores["missing_pixel_accuracy"] == pytest.approx(0.5)  # (0,2) and (1,0) are right
    with pytest.raises(ValueError, match="no missing value"):
        missing_value_scores(probs, x, torch.ones_like(mask))


# -- the masked VAE story ----------------------------------------------------------------------------------------


@pytest.fixture
def vae():
    torch.manual_seed(0)
    model = MaskedDeepLatentGaussian(16, 2, hidden_dims=(8,))
    guide = make_guide("normal", 16, 2, hidden_dims=(8,))
    x = (torch.rand(6, 16) < 0.5).float()
    mask = torch.arange(16).expand(6, 16) >= 8  # the bottom half observed
    return model, guide, x, mask


@pytest.mark.parametrize("bad, match", [
    (lambda m: m.float(), r"mask must be a torch.bool tensor .* got a torch.float32 tensor"),
    (lambda m: m[:, :10], r"mask must have the shape of x, \(N, 16\).*got \(6, 10\)"),
    (lambda m: m[:4], r"mask must have the shape of x.*got \(4, 16\)"),
    (lambda m: torch.zeros_like(m), r"mask masks every value of examples \[0, 1, 2, 3, 4\] \.\.\. \(6 of 6\)"),
])
def test_masked_story_names_a_bad_mask(vae, bad, match):
    model, guide, x, mask = vae
    with pytest.raises(ValueError, match=match):
        model.model(x, bad(mask))
    with pytest.raises(ValueError, match=match):
        model.impute(x, bad(mask), guide=guide, num_samples=3)


def test_masked_story_refuses_a_guide_that_does_not_read_the_observed_values(vae):
    model, _, x, mask = vae
    mask_only = make_guide("normal", 16, 2, hidden_dims=(8,), inputs=(1,))  # reads the mask, not x
    with pytest.raises(ValueError, match=r"the guide's encoders read \['1'\] but not the observed argument 'x'"):
        model.impute(x, mask, guide=mask_only, num_samples=3)


def test_masked_story_with_a_full_mask_is_the_vae_and_imputes_only_the_missing_values(vae):
    from pyro_lvm.infer import importance_log_likelihood
    from pyro_lvm.models import DeepLatentGaussian

    model, guide, x, mask = vae
    plain = DeepLatentGaussian(16, 2, hidden_dims=(8,))
    plain.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    full = importance_log_likelihood(model.model, guide, x, torch.ones_like(mask), num_samples=20)
    torch.manual_seed(1)
    torch.testing.assert_close(full, importance_log_likelihood(plain.model, guide, x, num_samples=20))
    imputed = model.impute(x, mask, guide=guide, num_samples=50)
    assert imputed.shape == x.shape and torch.equal(imputed[mask], x[mask])
    assert ((imputed > 0) & (imputed < 1))[~mask].all()
    # the notes' program on the same story leaves the decoder as it was
    before = copy.deepcopy(model.state_dict())
    fitted = fit_missing_values(model.with_missing, MissingValuesGuide(copy.deepcopy(guide), tuple(x.shape)), x, mask, steps=5)
    assert fitted.shape == x.shape
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_example_quick_run_writes_a_row_per_method(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "impute.py"
    spec = importlib.util.spec_from_file_location("impute_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main(["--quick", "--epochs", "3", "--svi-steps", "20", "--out", str(tmp_path), "--no-progress"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["method"] for r in metrics["results"]] == ["svi", "importance", "importance_fitted", "train_mean", "knn"]
    for row in metrics["results"]:
        assert row["missing_pixel_log_likelihood"] < 0 and 0 <= row["missing_pixel_accuracy"] <= 1
    assert (tmp_path / "completions.png").exists()


# -- the enumerated objective: exact in the Bernoulli missing values ------------------------------------------------


def closed_form_elbo(model, z, log_qz, q, x, mask):
    """ELBO per example at one draw z (N, z_dim) of q(z) (log density log_qz (N,)), with the missing values of
    q = Bernoulli(q) (N, D) summed out by hand: log p(z) + log p(x_o | z) - log q(z)
    + sum over missing d of q log p_d + (1 - q) log(1 - p_d) - q log q - (1 - q) log(1 - q)."""
    logits = model.decoder(z)
    observed = (dist.Bernoulli(logits=logits).log_prob(x) * mask).sum(-1)
    expected = q * torch.nn.functional.logsigmoid(logits) + (1 - q) * torch.nn.functional.logsigmoid(-logits)
    entropy = -(q * q.log() + (1 - q) * (1 - q).log())
    return model.prior().log_prob(z) + observed - log_qz + ((expected + entropy) * ~mask).sum(-1)


def test_enumerated_objective_equals_the_closed_form_expectation_over_the_missing_values(vae):
    model, guide, x, mask = vae
    torch.manual_seed(2)
    start = torch.rand(x.shape)
    family = MissingValuesGuide(guide, tuple(x.shape), init=start)
    torch.testing.assert_close(family.mean(), start)
    fixed = pyro.poutine.block(model.with_missing, hide_types=["param"])
    losses, grads = [], []
    for seed in (0, 1):
        torch.manual_seed(seed)
        z_site = pyro.poutine.trace(guide).get_trace(x, mask).nodes["z"]
        z, log_qz = z_site["value"].detach(), z_site["fn"].log_prob(z_site["value"]).detach()
        torch.manual_seed(seed)  # the objective's one draw of z is the same draw
        loss = missing_values_elbo("bernoulli").differentiable_loss(fixed, family, x, mask)
        phi = family.loc
        expected = -closed_form_elbo(model, z, log_qz, torch.sigmoid(phi), x, mask).sum()
        torch.testing.assert_close(loss, expected)
        grad, = torch.autograd.grad(loss, phi)
        torch.testing.assert_close(grad, torch.autograd.grad(expected, phi)[0])
        assert (grad[mask] == 0).all() and (grad[~mask] != 0).all()
        losses.append(loss.detach())
        grads.append(grad)
    # phi's gradient moves only with z: at the draw's decoder output it is q(1 - q)(logit p - phi), by hand
    for seed, grad in zip((0, 1), grads):
        torch.manual_seed(seed)
        z = pyro.poutine.trace(guide).get_trace(x, mask).nodes["z"]["value"].detach()
        q = torch.sigmoid(family.loc.detach())
        by_hand = -(q * (1 - q) * (model.decoder(z).detach() - family.loc.detach())) * ~mask
        torch.testing.assert_close(grad, by_hand)


def test_missing_values_guide_refuses_a_bad_init_or_family():
    with pytest.raises(ValueError, match=r"init must have the shape \(2, 3\), got \(3, 2\)"):
        MissingValuesGuide(prior_guide, (2, 3), init=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="family must be one of"):
        missing_values_elbo("poisson")


def test_values_in_plate_moves_the_values_into_the_plate_slot():
    t = torch.arange(24.0).reshape(4, 6)  # (N, D)
    assert torch.equal(values_in_plate(t), t.T)
    particles = torch.arange(72.0).reshape(3, 1, 4, 6)  # (P, 1, N, D): z drawn in the data plate under particles
    assert torch.equal(values_in_plate(particles), particles[:, 0].mT)


# a logistic story: z ~ N(0, I_d), x_j | z ~ Bernoulli(sigmoid(W z + B)), binary values


def logistic_with_missing(x, mask):
    with pyro.plate("data", x.shape[0], dim=-1):
        z = pyro.sample("z", dist.Normal(torch.zeros(d), 1.0).to_event(1))
        logits = z @ W.T + B
        pyro.sample("x", dist.Bernoulli(logits=logits).mask(mask).to_event(1), obs=x * mask)
        with pyro.plate("values", x.shape[1], dim=-2):
            pyro.sample("x_missing", dist.Bernoulli(logits=values_in_plate(logits)).mask(~mask.mT))


def test_notes_program_with_bernoulli_values_reaches_the_mean_field_fixed_point():
    """At the ELBO's optimum in phi, logit q_j = E_q(z)[logit p(x_j | z)] = W_j E_q[z] + B_j (the log-odds of a
    Bernoulli is its logit, and the logits are linear in z): the fitted q must satisfy it up to the noise of z.
    (Mean field is not the exact posterior here: E[x_j | x_o] by quadrature differs by up to 0.13.)"""
    x, mask = lg_data()
    x = (x > B).float()
    pyro.clear_param_store()
    torch.manual_seed(0)
    z_guide = MeanFieldZ(len(x))
    guide = MissingValuesGuide(z_guide, tuple(x.shape))
    fit_missing_values(logistic_with_missing, guide, x, mask, steps=1000, lr=0.02, num_particles=32)
    fitted = fit_missing_values(logistic_with_missing, guide, x, mask, steps=500, lr=0.002, num_particles=32)  # settle
    fixed_point = torch.sigmoid(z_guide.loc.detach() @ W.T + B)
    torch.testing.assert_close(fitted[~mask], fixed_point[~mask], atol=0.02, rtol=0)
    assert (fitted[~mask] - 0.5).abs().max() > 0.2  # it moved away from its start
