"""The evaluator against closed forms: a linear-Gaussian model has log p(x) and its posterior exactly."""

import math
import re

import pyro
import pyro.distributions as dist
import pytest
import torch
from linear_gaussian import LinearGaussian, LinearGaussianHierarchy  # tests/ is on sys.path under pytest

from pyro_lvm.guides import AmortizedDelta, check_guide_sites
from pyro_lvm.infer import bits_per_dim, importance_log_likelihood, log_importance_weights, per_example_elbo


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


# -- a one-latent model whose log p(x) is N(0, sqrt 2).log_prob(x): z ~ N(0, 1), x | z ~ N(z, 1) --------------


def scalar_model(x):
    with pyro.plate("data", x.shape[0], dim=-1):
        z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def scalar_posterior(x):
    """The exact posterior p(z | x) = N(x / 2, 1 / 2)."""
    with pyro.plate("data", x.shape[0], dim=-1):
        pyro.sample("z", dist.Normal(x / 2, math.sqrt(0.5)))


X3 = torch.tensor([0.0, 1.0, 3.0])


def test_scalar_model_under_its_posterior_is_exact():
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(X3)
    torch.testing.assert_close(importance_log_likelihood(scalar_model, scalar_posterior, X3, num_samples=4), exact)
    torch.testing.assert_close(per_example_elbo(scalar_model, scalar_posterior, X3, num_samples=4), exact)


@pytest.mark.parametrize("evaluator", [importance_log_likelihood, per_example_elbo])
def test_guide_that_misses_a_latent_site_is_refused(evaluator):
    def empty_guide(x):
        pass

    with pytest.raises(ValueError, match=r"the guide does not sample \['z'\].*latent sites are \['z'\].*observed sites \['x'\]"):
        evaluator(scalar_model, empty_guide, X3, num_samples=10)


@pytest.mark.parametrize("evaluator", [importance_log_likelihood, per_example_elbo])
def test_guide_that_samples_a_site_the_model_lacks_is_refused(evaluator):
    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(x / 2, math.sqrt(0.5)))
            pyro.sample("extra", dist.Normal(torch.zeros_like(x), 1.0))

    with pytest.raises(ValueError, match=r"samples 'extra'.*has no sample site 'extra'.*latent sites are \['z'\]"):
        evaluator(scalar_model, guide, X3, num_samples=10)


def test_enumerated_site_left_to_the_model_is_summed_not_scored_as_one_draw():
    """A site marked for enumeration counts as covered, and the evaluators sum it exactly inside the weights."""

    def mixture(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            c = pyro.sample("c", dist.Categorical(torch.tensor([0.5, 0.5])), infer={"enumerate": "parallel"})
            pyro.sample("x", dist.Normal(torch.tensor([-1.0, 1.0])[c], 1.0), obs=x)

    def empty_guide(x):
        pass

    check_guide_sites(mixture, empty_guide, X3)  # covered: training with TraceEnum_ELBO sums it exactly
    by_hand = torch.logsumexp(dist.Normal(torch.tensor([-1.0, 1.0]), 1.0).log_prob(X3[:, None]), -1) - math.log(2.0)
    for evaluator in (importance_log_likelihood, per_example_elbo):
        torch.testing.assert_close(evaluator(mixture, empty_guide, X3, num_samples=10), by_hand)


@pytest.mark.parametrize("wrap", ["plain", "masked"])
def test_point_guide_is_refused_as_an_importance_proposal(wrap):
    def point_guide(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            q = dist.Delta(x / 2)
            pyro.sample("z", q.mask(torch.ones_like(x, dtype=torch.bool)) if wrap == "masked" else q)

    with pytest.raises(ValueError, match=r"point mass \(Delta\) at \['z'\].*proposal\(scale\)"):
        importance_log_likelihood(scalar_model, point_guide, X3, num_samples=10)
    # its ELBO is the hard ELBO log p(x, f(x)), which per_example_elbo still reports
    hard = dist.Normal(0.0, 1.0).log_prob(X3 / 2) + dist.Normal(X3 / 2, 1.0).log_prob(X3)
    torch.testing.assert_close(per_example_elbo(scalar_model, point_guide, X3), hard)


def test_point_encoder_is_refused_and_its_gaussian_proposal_is_accepted(lg):
    x = data(lg).float()
    model = LinearGaussian(lg.W.float(), lg.b.float(), lg.sigma).model
    point = AmortizedDelta(3, 2, hidden_dims=(8,))  # Delta(f(x), event_dim=1): an Independent-style point mass
    with pytest.raises(ValueError, match=r"point mass \(Delta\) at \['z'\]"):
        importance_log_likelihood(model, point, x, num_samples=10)
    ll = importance_log_likelihood(model, point.proposal(1.0), x, num_samples=10)
    assert ll.shape == (50,) and torch.isfinite(ll).all()


@pytest.mark.parametrize("num_dims", [2.5, True, 0, -3, "784"])
def test_bits_per_dim_needs_a_positive_integer_num_dims(num_dims):
    with pytest.raises((ValueError, TypeError), match=r"num_dims must be a positive int.*got " + re.escape(repr(num_dims))):
        bits_per_dim(-1.0, num_dims)


def test_bits_per_dim_refuses_nan_and_keeps_infinities():
    with pytest.raises(ValueError, match="log_likelihood is NaN"):
        bits_per_dim(float("nan"), 784)
    with pytest.raises(ValueError, match=r"log_likelihood is NaN at 1 of 3"):
        bits_per_dim(torch.tensor([-1.0, float("nan"), -2.0]), 784)
    # an impossible example (log p = -inf) costs infinitely many bits: a right number, not an error
    assert bits_per_dim(float("-inf"), 784) == float("inf")
    torch.testing.assert_close(bits_per_dim(torch.tensor([-784 * math.log(2.0), float("-inf")]), 784), torch.tensor([1.0, float("inf")]))


@pytest.mark.parametrize("evaluator", [importance_log_likelihood, per_example_elbo])
def test_evaluators_refuse_an_empty_data_plate(evaluator):
    with pytest.raises(ValueError, match=r"no examples \(argument 0 has shape \(0,\)\)"):
        evaluator(scalar_model, scalar_posterior, torch.zeros(0), num_samples=3)
    # an encoder guide names the argument it reads
    lg_model = LinearGaussian.random(dtype=torch.float32).model
    with pytest.raises(ValueError, match=r"observed argument 0 has no examples.*shape \(0, 3\)"):
        evaluator(lg_model, AmortizedDelta(3, 2, hidden_dims=(4,)).proposal(1.0), torch.zeros(0, 3), num_samples=3)


def test_empty_data_with_a_guide_that_opens_no_plate_names_the_argument():
    def latent_free_model(x):  # no latent site: the empty guide covers it, and the model opens the first plate
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)

    with pytest.raises(ValueError, match=r"no examples \(argument 0 has shape \(0,\)\)"):
        importance_log_likelihood(latent_free_model, lambda x: None, torch.zeros(0), num_samples=3)
    # with examples, a model without latents has the exact log p(x) = log N(x; 0, 1)
    torch.testing.assert_close(importance_log_likelihood(latent_free_model, lambda x: None, X3, num_samples=3),
                               dist.Normal(0.0, 1.0).log_prob(X3))


# -- the particle dimension: vectorized draws (latents with a leading sample dim) or one training-shaped call per draw --


def test_vectorized_and_looped_draws_give_the_same_log_weights(lg):
    """Same seed, same draws: torch's CPU generator fills normals 16 at a time, so with N * d = 16 one (k, N, d)
    draw and k draws of (N, d) are the same numbers; the weights then agree to rounding."""
    x = data(lg, n=8)  # N * d = 8 * 2
    weights = {}
    for vectorize in (True, False):
        torch.manual_seed(1)
        weights[vectorize] = log_importance_weights(lg.model, lg.prior_guide, x, num_samples=5, vectorize=vectorize)
    assert weights[True].shape == weights[False].shape == (5, 8)
    torch.testing.assert_close(weights[True], weights[False], rtol=0, atol=1e-12)
    # and so do the estimators built on them, chunk by chunk
    ll = {}
    for vectorize in (True, False):
        torch.manual_seed(2)
        ll[vectorize] = importance_log_likelihood(lg.model, lg.prior_guide, x, num_samples=7, chunk_size=3, vectorize=vectorize)
    torch.testing.assert_close(ll[True], ll[False], rtol=0, atol=1e-12)


@pytest.mark.parametrize("vectorize", [True, False])
def test_two_latent_sites_are_exact_under_the_true_posterior(vectorize):
    """z2 -> z1 -> x with q(z2 | x) q(z1 | z2, x) = p(z2, z1 | x): every weight is log p(x), for both settings."""
    h = LinearGaussianHierarchy.random()
    x = h.marginal().sample((40,))
    exact = h.log_marginal(x)
    ll = importance_log_likelihood(h.model, h.exact_guide, x, num_samples=6, chunk_size=4, vectorize=vectorize)
    torch.testing.assert_close(ll, exact, rtol=0, atol=1e-6)
    elbo = per_example_elbo(h.model, h.exact_guide, x, num_samples=3, vectorize=vectorize)
    torch.testing.assert_close(elbo, exact, rtol=0, atol=1e-6)


def test_two_latent_sites_from_their_priors_are_below_and_tighten():
    """A prior proposal over both sites: a lower bound that the vectorized and looped estimators agree on."""
    h = LinearGaussianHierarchy.random()
    x = h.marginal().sample((30,))

    def prior_guide(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z2 = pyro.sample("z2", dist.Normal(torch.zeros(h.d2, dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("z1", dist.Normal(z2 @ h.A.T + h.c, h.tau).to_event(1))

    truth = h.log_marginal(x).mean()
    few = importance_log_likelihood(h.model, prior_guide, x, num_samples=2, vectorize=False).mean()
    many = importance_log_likelihood(h.model, prior_guide, x, num_samples=20000, chunk_size=5000).mean()
    assert few < many < truth and truth - many < 0.2 * (truth - few)


class ConditionalLinearGaussian:
    """p(y | x) = sum_z p(z) p(y | z, x): z ~ N(0, I_d), y | z, x ~ N(decoder([z, x]), sigma^2 I) with a linear decoder,
    so p(y | x) = N(V x + b, W W^T + sigma^2 I) for decoder weight [W, V] and bias b."""

    def __init__(self, d=2, dx=3, dy=4, sigma=0.5, broadcast=True):
        torch.manual_seed(0)
        self.d, self.sigma, self.broadcast = d, sigma, broadcast
        self.decoder = torch.nn.Linear(d + dx, dy).double()
        W, V, b = self.decoder.weight[:, :d].detach(), self.decoder.weight[:, d:].detach(), self.decoder.bias.detach()
        self.W, self.V, self.b = W, V, b
        # the exact posterior p(z | x, y) = N(M_x x + M_y y + m, P^{-1}): a user's encoder of two arguments, set to it
        precision = torch.eye(d, dtype=W.dtype) + W.T @ W / sigma**2
        gain = torch.linalg.solve(precision, W.T) / sigma**2  # (d, dy)
        self.encoder = TwoArgumentEncoder(dx, dy, d)
        with torch.no_grad():
            self.encoder.linear.weight.copy_(torch.cat([-gain @ V, gain], dim=1))
            self.encoder.linear.bias.copy_(-gain @ b)
        self.scale_tril = torch.linalg.cholesky(torch.linalg.inv(precision))

    def model(self, x, y):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(self.d, dtype=x.dtype), 1.0).to_event(1))
            # torch.cat([z, x]) fails once z has a leading sample dimension; expanding x first broadcasts
            inputs = torch.cat([z, x.expand(z.shape[:-1] + x.shape[-1:]) if self.broadcast else x], dim=-1)
            pyro.sample("y", dist.Normal(self.decoder(inputs), self.sigma).to_event(1), obs=y)

    def guide(self, x, y):
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.MultivariateNormal(self.encoder(x, y), scale_tril=self.scale_tril))

    def log_marginal(self, x, y):
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(self.W.shape[0], dtype=x.dtype)
        return dist.MultivariateNormal(x @ self.V.T + self.b, cov).log_prob(y)


class TwoArgumentEncoder(torch.nn.Module):
    """A user's recognition network q(z | x, y): called with two arguments, returns the mean (N, d)."""

    def __init__(self, dx, dy, d):
        super().__init__()
        self.linear = torch.nn.Linear(dx + dy, d).double()

    def forward(self, x, y):
        return self.linear(torch.cat([x, y], dim=-1))


@pytest.mark.parametrize("vectorize", [True, False])
def test_user_encoder_of_two_arguments_is_exact_for_both_settings(vectorize):
    story = ConditionalLinearGaussian()
    x = torch.randn(20, 3, dtype=torch.float64)
    y = x @ story.V.T + story.b + torch.randn(20, 4, dtype=torch.float64)
    exact = story.log_marginal(x, y)
    ll = importance_log_likelihood(story.model, story.guide, x, y, num_samples=5, chunk_size=2, vectorize=vectorize)
    torch.testing.assert_close(ll, exact, rtol=0, atol=1e-6)
    torch.testing.assert_close(per_example_elbo(story.model, story.guide, x, y, num_samples=2, vectorize=vectorize), exact,
                               rtol=0, atol=1e-6)


def test_decoder_that_concatenates_a_latent_with_an_input_needs_the_loop():
    story = ConditionalLinearGaussian(broadcast=False)
    x = torch.randn(20, 3, dtype=torch.float64)
    y = x @ story.V.T + story.b
    with pytest.raises(ValueError, match=r"leading particle dimension.*Pass vectorize=False.*RuntimeError"):
        importance_log_likelihood(story.model, story.guide, x, y, num_samples=5)
    ll = importance_log_likelihood(story.model, story.guide, x, y, num_samples=5, vectorize=False)
    torch.testing.assert_close(ll, story.log_marginal(x, y), rtol=0, atol=1e-6)


class ConvDecoder(torch.nn.Module):
    """z (N, d) -> a 4x4 image (N, 16): a linear layer to (N, 4, 2, 2) by ``.view(-1, 4, 2, 2)``, a stride-1 convolution
    and a depth-to-space reshape (PixelShuffle). The reshape assumes one batch dimension, as such decoders do. Linear
    (no nonlinearity), so the story stays linear-Gaussian with a closed form."""

    def __init__(self, d):
        super().__init__()
        self.fc = torch.nn.Linear(d, 16)
        self.conv = torch.nn.Conv2d(4, 4, kernel_size=3, padding=1)
        self.shuffle = torch.nn.PixelShuffle(2)

    def forward(self, z):
        return self.shuffle(self.conv(self.fc(z).view(-1, 4, 2, 2))).view(-1, 16)


def test_conv_decoder_with_a_fixed_batch_reshape_works_with_the_loop_and_names_the_flag_otherwise():
    torch.manual_seed(0)
    d, sigma = 3, 0.5
    decoder = ConvDecoder(d).double()

    def model(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(d, dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(decoder(z), sigma).to_event(1), obs=x)

    # the decoder is affine, decoder(z) = J z + decoder(0): the reference linear-Gaussian model and its exact posterior
    with torch.no_grad():
        offset = decoder(torch.zeros(1, d, dtype=torch.float64))[0]
        J = (decoder(torch.eye(d, dtype=torch.float64)) - offset).T  # (16, d)
    reference = LinearGaussian(J, offset, sigma)
    x = reference.marginal().sample((10,))

    with pytest.raises(ValueError, match=r"leading particle dimension.*view\(-1, C, H, W\).*Pass vectorize=False.*Shape mismatch"):
        importance_log_likelihood(model, reference.exact_guide, x, num_samples=5)
    with pytest.raises(ValueError, match=r"Pass vectorize=False"):
        per_example_elbo(model, reference.exact_guide, x, num_samples=5)
    ll = importance_log_likelihood(model, reference.exact_guide, x, num_samples=5, chunk_size=2, vectorize=False)
    torch.testing.assert_close(ll, reference.log_marginal(x), rtol=0, atol=1e-6)
    elbo = per_example_elbo(model, reference.exact_guide, x, num_samples=3, vectorize=False)
    torch.testing.assert_close(elbo, reference.log_marginal(x), rtol=0, atol=1e-6)


def test_vectorize_must_be_a_bool():
    with pytest.raises(ValueError, match=r"vectorize must be True or False, got 'no'"):
        importance_log_likelihood(scalar_model, scalar_posterior, X3, num_samples=2, vectorize="no")
