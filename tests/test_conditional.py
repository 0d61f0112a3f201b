"""Conditional and partly observed stories against closed forms, and discrete sites summed inside the weights.

* p(y | x) of a conditional linear-Gaussian story with a per-value observation mask: exact under the true
  posterior; bits/dim over the observed values only; the training loop runs on (x, y, mask).
* y ~ Cat(pi), z ~ N(0, 1), x | y, z ~ N(mu_y + w z, s^2): p(x) = sum_y pi_y N(x; mu_y, w^2 + s^2). With y
  enumerated in the model the weight equals a hand-written logsumexp over y; with y enumerated in the guide and
  z from its exact posterior p(z | x, y), every weight is log p(x) exactly.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_lvm.infer import (
    bits_per_dim,
    importance_draws,
    importance_log_likelihood,
    log_importance_weights,
    observed_dims,
    per_example_elbo,
    train,
)

# -- p(y | x) with part of y observed: z ~ N(0, I_d), y | z, x ~ N(W z + V x + b, s^2 I), y_j seen where mask_nj --


class MaskedConditionalLinearGaussian:
    def __init__(self, d=2, dx=3, dy=4, s=0.5, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.W, self.V = torch.randn(dy, d, generator=g, dtype=torch.float64), torch.randn(dy, dx, generator=g, dtype=torch.float64)
        self.b, self.s, self.d = torch.randn(dy, generator=g, dtype=torch.float64), s, d

    def model(self, x, y, mask):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(self.d, dtype=x.dtype), 1.0).to_event(1))
            loc = z @ self.W.T + x @ self.V.T + self.b
            pyro.sample("y", dist.Normal(loc, self.s).mask(mask).to_event(1), obs=y)

    def exact_guide(self, x, y, mask):
        """p(z | x, y_observed): precision I + W_o^T W_o / s^2 per example, W_o the observed rows."""
        Wm = self.W * mask[..., None]  # (N, dy, d), unobserved rows zeroed
        precision = torch.eye(self.d, dtype=x.dtype) + Wm.transpose(-1, -2) @ Wm / self.s**2
        residual = ((y - x @ self.V.T - self.b) * mask)[..., None]
        mean = torch.linalg.solve(precision, Wm.transpose(-1, -2) @ residual / self.s**2)[..., 0]
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.MultivariateNormal(mean, precision_matrix=precision))

    def log_marginal(self, x, y, mask):
        """log p(y_observed | x), one Gaussian marginal per example."""
        cov = self.W @ self.W.T + self.s**2 * torch.eye(len(self.b), dtype=x.dtype)
        mean = x @ self.V.T + self.b
        out = []
        for n in range(x.shape[0]):
            o = mask[n]
            out.append(dist.MultivariateNormal(mean[n, o], cov[o][:, o]).log_prob(y[n, o]))
        return torch.stack(out)


def conditional_data(story, n=30):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = x @ story.V.T + story.b + torch.randn(n, 4, generator=g, dtype=torch.float64)
    mask = torch.rand(n, 4, generator=g) < 0.6
    mask[:, 0] = True  # every example observes something
    return x, y, mask


@pytest.mark.parametrize("vectorize", [True, False])
def test_conditional_estimator_is_exact_under_the_true_posterior_with_a_mask(vectorize):
    story = MaskedConditionalLinearGaussian()
    x, y, mask = conditional_data(story)
    exact = story.log_marginal(x, y, mask)
    ll = importance_log_likelihood(story.model, story.exact_guide, x, y, mask, num_samples=4, chunk_size=3, vectorize=vectorize)
    torch.testing.assert_close(ll, exact, rtol=0, atol=1e-9)
    elbo = per_example_elbo(story.model, story.exact_guide, x, y, mask, num_samples=2, vectorize=vectorize)
    torch.testing.assert_close(elbo, exact, rtol=0, atol=1e-9)


def test_bits_per_dim_over_the_observed_values_only():
    story = MaskedConditionalLinearGaussian()
    x, y, mask = conditional_data(story)
    counts = observed_dims(story.model, x, y, mask)
    assert torch.equal(counts, mask.sum(-1))
    ll = story.log_marginal(x, y, mask)
    torch.testing.assert_close(bits_per_dim(ll, counts), -ll / (mask.sum(-1) * math.log(2.0)))
    # a poutine.mask over examples and a .mask over values combine
    keep = torch.arange(x.shape[0]) % 2 == 0
    assert torch.equal(observed_dims(pyro.poutine.mask(story.model, mask=keep), x, y, mask), mask.sum(-1) * keep)


@pytest.mark.parametrize("num_dims", [torch.tensor([3, 0]), torch.tensor([2.0, 3.0]), torch.tensor([], dtype=torch.long)])
def test_bits_per_dim_refuses_counts_that_are_not_positive_integers(num_dims):
    with pytest.raises(ValueError, match="num_dims must be a positive int or a tensor of positive integer counts"):
        bits_per_dim(torch.tensor([-1.0, -2.0]), num_dims)


def test_observed_dims_names_a_site_outside_the_plate_and_a_model_without_observations():
    def outside(x):
        pyro.sample("x", dist.Normal(0.0, 1.0).expand([x.shape[0]]).to_event(1), obs=x)

    with pytest.raises(ValueError, match="observed site 'x' is outside the plate 'data'"):
        observed_dims(outside, torch.zeros(3))
    with pytest.raises(ValueError, match="observes no site"):
        observed_dims(lambda x: None, torch.zeros(3))


def test_training_loop_fits_a_conditional_story():
    """train on (x, y, mask): the per-example ELBO climbs and stays below the exact log p(y_o | x) (a linear
    encoder cannot reach the posterior, whose mean is not linear in the mask)."""
    story = MaskedConditionalLinearGaussian()
    x, y, mask = conditional_data(story, n=64)
    pyro.clear_param_store()
    torch.manual_seed(0)

    class Guide(pyro.nn.PyroModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(3 + 4 + 4, 2 * story.d).double()

        def forward(self, x, y, mask):
            out = self.net(torch.cat([x, y * mask, mask.double()], -1))
            with pyro.plate("data", x.shape[0], dim=-1):
                pyro.sample("z", dist.Normal(out[..., :2], torch.nn.functional.softplus(out[..., 2:]) + 1e-3).to_event(1))

    guide = Guide()
    before = per_example_elbo(story.model, guide, x, y, mask, num_samples=50).mean()
    train(story.model, guide, (x, y, mask), steps=300, batch_size=64, lr=3e-2, progress=False)
    after = per_example_elbo(story.model, guide, x, y, mask, num_samples=200).mean()
    exact = story.log_marginal(x, y, mask).mean()
    assert before + 1.0 < after <= exact + 0.02, (before, after, exact)


# -- a label enumerated beside a continuous code --------------------------------------------------------------------

PI = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
MU = torch.tensor([-3.0, 0.0, 2.5], dtype=torch.float64)
W, S = 1.5, 0.7
X = torch.tensor([-3.5, -1.0, 0.2, 1.7, 4.0], dtype=torch.float64)


def mixture_model(x):
    with pyro.plate("data", x.shape[0], dim=-1):
        y = pyro.sample("y", dist.Categorical(PI), infer={"enumerate": "parallel"})
        z = pyro.sample("z", dist.Normal(torch.zeros((), dtype=x.dtype), 1.0))
        pyro.sample("x", dist.Normal(MU[y] + W * z, S), obs=x)


def z_guide(x):
    """q(z | x): a Gaussian that ignores the label."""
    with pyro.plate("data", x.shape[0], dim=-1):
        pyro.sample("z", dist.Normal(0.3 * x, 0.8))


def exact_marginal(x):
    return torch.logsumexp(PI.log() + dist.Normal(MU, math.sqrt(W**2 + S**2)).log_prob(x[:, None]), -1)


@pytest.mark.parametrize("vectorize", [True, False])
def test_model_enumerated_label_equals_a_hand_written_logsumexp_inside_each_weight(vectorize):
    torch.manual_seed(0)
    draws, log_w = importance_draws(mixture_model, z_guide, X, num_samples=7, vectorize=vectorize)
    assert "y" not in draws and draws["z"].shape == (7, 5) and log_w.shape == (7, 5)
    z = draws["z"]
    log_joint = (PI.log() + dist.Normal(MU + W * z[..., None], S).log_prob(X[:, None])).logsumexp(-1)  # (7, 5)
    log_joint = log_joint + dist.Normal(0.0, 1.0).log_prob(z)
    by_hand = log_joint - dist.Normal(0.3 * X, 0.8).log_prob(z)
    torch.testing.assert_close(log_w, by_hand, rtol=0, atol=1e-10)


def test_model_enumerated_label_converges_to_the_closed_form_marginal():
    torch.manual_seed(0)
    ll = importance_log_likelihood(mixture_model, z_guide, X, num_samples=20000, chunk_size=5000)
    torch.testing.assert_close(ll, exact_marginal(X), rtol=0, atol=0.02)


def exact_conditional_guide(x):
    """y enumerated in the guide; z ~ p(z | x, y), the exact posterior for each label."""
    with pyro.plate("data", x.shape[0], dim=-1):
        y = pyro.sample("y", dist.Categorical(torch.ones(3, dtype=x.dtype) / 3), infer={"enumerate": "parallel"})
        precision = 1.0 + W**2 / S**2
        pyro.sample("z", dist.Normal(W * (x - MU[y]) / S**2 / precision, precision**-0.5))


@pytest.mark.parametrize("vectorize", [True, False])
def test_guide_enumerated_label_with_the_exact_conditional_posterior_is_exact(vectorize):
    torch.manual_seed(0)
    ll = importance_log_likelihood(mixture_model, exact_conditional_guide, X, num_samples=3, vectorize=vectorize)
    torch.testing.assert_close(ll, exact_marginal(X), rtol=0, atol=1e-10)
    weights = log_importance_weights(mixture_model, exact_conditional_guide, X, num_samples=4)
    torch.testing.assert_close(weights, exact_marginal(X).expand(4, -1), rtol=0, atol=1e-10)
