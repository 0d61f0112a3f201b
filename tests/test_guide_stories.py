"""Guides for the stories users write, against closed forms: a user encoder over two arguments, a two-site
hierarchy, per-example and semi-amortized guides of a two-argument model, the old families unchanged, bad input."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule
from torch import nn

from pyro_lvm.guides import AmortizedSite, LatentGuide, MultivariateNormalHead, NormalHead, check_guide_sites, make_guide
from pyro_lvm.infer import amortization_gap, importance_log_likelihood, per_example_elbo, train

#: The old families at the committed MNIST sizes 784-200-200-50 (parameter counts and shapes), and
#: at 6-5-4-3 (seed 0, weights set by _fill) their q's mean and log q of two points, computed with
#: the code before the heads (git show c806670:pyro_lvm/guides/...).
OLD = {'delta': {'count': 207250,
           'log_prob': None,
           'mean': [[-0.19198583994234109, -0.21095454135270617, -0.2459487676827708],
                    [-0.19083557818292812, -0.2090535335413945, -0.2467542945094418]],
           'shapes': [[200, 784], [200], [200, 200], [200], [50, 200], [50]]},
 'iaf': {'count': 267750,
         'log_prob': [-2.356020591395053, -3.3750323145629277],
         'mean': None,
         'shapes': [[200, 784], [200], [200, 200], [200], [150, 200], [150], [100, 100], [100], [100, 100], [100], [100, 100],
                    [100], [100, 100], [100]]},
 'lowrank': {'count': 237400,
             'log_prob': [-2.9633116980104193, -2.599898656491017],
             'mean': [[-0.19198583994234109, -0.21095454135270617, -0.2459487676827708],
                      [-0.19083557818292812, -0.2090535335413945, -0.2467542945094418]],
             'shapes': [[200, 784], [200], [200, 200], [200], [200, 200], [200]]},
 'mvn': {'count': 463525,
         'log_prob': [-2.276330526229248, -2.0067500672621126],
         'mean': [[-0.19198583994234109, -0.21095454135270617, -0.2459487676827708],
                  [-0.19083557818292812, -0.2090535335413945, -0.2467542945094418]],
         'shapes': [[200, 784], [200], [200, 200], [200], [1325, 200], [1325]]},
 'normal': {'count': 217300,
            'log_prob': [-2.6019796079661694, -1.9909408307099847],
            'mean': [[-0.19198583994234109, -0.21095454135270617, -0.2459487676827708],
                     [-0.19083557818292812, -0.2090535335413945, -0.2467542945094418]],
            'shapes': [[200, 784], [200], [200, 200], [200], [100, 200], [100]]}}


def _fill(module):
    for k, p in enumerate(module.parameters()):
        with torch.no_grad():
            p.copy_((torch.sin(torch.arange(p.numel(), dtype=torch.float64) * 0.37 + k) * 0.3).reshape(p.shape))


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("name", sorted(OLD))
def test_the_old_families_build_the_same_networks_with_the_same_outputs(name, float64):
    options = {"lowrank": {"rank": 2}, "iaf": {"num_flows": 2, "context_dim": 4}}.get(name, {})
    big = make_guide(name, 784, 50, **({} if name == "iaf" else options))
    assert sum(p.numel() for p in big.parameters()) == OLD[name]["count"]
    assert [list(p.shape) for p in big.parameters()] == OLD[name]["shapes"]
    torch.manual_seed(0)  # the flows' MADE orderings are random
    guide = make_guide(name, 6, 3, hidden_dims=(5, 4), **options)
    _fill(guide)
    x = torch.cos(torch.arange(12.0).reshape(2, 6))
    z = torch.sin(torch.arange(6.0).reshape(2, 3)) * 0.5
    q = guide.distribution(x)
    if OLD[name]["mean"] is not None:
        assert torch.allclose(q.mean, torch.tensor(OLD[name]["mean"]), atol=1e-12)
    if OLD[name]["log_prob"] is not None:
        assert torch.allclose(q.log_prob(z), torch.tensor(OLD[name]["log_prob"]), atol=1e-10)


class TwoViews:
    """z ~ N(0, I_2), x | z ~ N(W z + b, 0.5^2 I_3), y | z ~ N(V z, 0.3^2 I_2): the posterior reads x and y."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.W, self.b = (torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64))
        self.V = torch.randn(2, 2, generator=g, dtype=torch.float64)

    def model(self, x, y, index=None):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(2, dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, 0.5).to_event(1), obs=x)
            pyro.sample("y", dist.Normal(z @ self.V.T, 0.3).to_event(1), obs=y)

    def log_marginal(self, x, y):
        H = torch.cat([self.W, self.V])
        noise = torch.cat([torch.full((3,), 0.25), torch.full((2,), 0.09)]).to(H)
        mvn = dist.MultivariateNormal(torch.cat([self.b, torch.zeros(2, dtype=H.dtype)]), H @ H.T + torch.diag(noise))
        return mvn.log_prob(torch.cat([x, y], -1))

    def posterior_mean(self, x, y):
        H, d = torch.cat([self.W, self.V]), torch.cat([x - self.b, y], -1)
        noise = torch.cat([torch.full((3,), 0.25), torch.full((2,), 0.09)]).to(H)
        precision = torch.eye(2, dtype=H.dtype) + H.T @ (H / noise[:, None])
        return torch.linalg.solve(precision, (H.T @ (d / noise).T)).T

    def sample(self, n):
        z = torch.randn(n, 2, dtype=torch.float64)
        x = z @ self.W.T + self.b + 0.5 * torch.randn(n, 3, dtype=torch.float64)
        return x, z @ self.V.T + 0.3 * torch.randn(n, 2, dtype=torch.float64)


class Concat(nn.Module):
    """A user encoder over two arguments: features (..., N, 5) = [x, y]."""

    feature_dim = 5

    def forward(self, x, y):
        return torch.cat([x, y], -1)


def _fit(model, guide, data, steps=1200, particles=4):
    optimizer = pyro.optim.ExponentialLR({"optimizer": torch.optim.Adam, "optim_args": {"lr": 0.1}, "gamma": 0.997})
    loss = pyro.infer.TraceMeanField_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
    train(model, guide, data, loss=loss, optimizer=optimizer, epochs=steps, batch_size=len(data[0]), progress=False)


def test_a_user_encoder_over_two_arguments_reaches_the_closed_form_log_likelihood(float64):
    story = TwoViews()
    pyro.set_rng_seed(0)
    x, y = story.sample(100)
    guide = make_guide("mvn", latent_dim=2, encoder=Concat(), inputs=("x", "y"), model=story.model)
    _fit(story.model, guide, (x, y))
    elbo = per_example_elbo(story.model, guide, x, y, num_samples=200)
    assert (elbo.mean() - story.log_marginal(x, y).mean()).abs() < 0.01
    assert torch.allclose(guide.distribution(x, y).loc, story.posterior_mean(x, y), atol=0.05)
    gap = amortization_gap(story.model, guide, x[:20], y[:20], steps=50, lr=1e-3, num_samples=50)
    assert abs(gap["gap"]) < 0.02  # the encoder is already per-example optimal


class Hierarchy:
    """z2 ~ N(0, I_2), z1 | z2 ~ N(A z2, 0.6^2 I_2), x | z1 ~ N(W z1 + b, 0.5^2 I_3)."""

    def __init__(self):
        g = torch.Generator().manual_seed(1)
        self.A = torch.randn(2, 2, generator=g, dtype=torch.float64)
        self.W, self.b = torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)

    def model(self, x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z2 = pyro.sample("z2", dist.Normal(torch.zeros(2, dtype=x.dtype), 1.0).to_event(1))
            z1 = pyro.sample("z1", dist.Normal(z2 @ self.A.T, 0.6).to_event(1))
            pyro.sample("x", dist.Normal(z1 @ self.W.T + self.b, 0.5).to_event(1), obs=x)

    def log_marginal(self, x):
        cov = self.W @ (self.A @ self.A.T + 0.36 * torch.eye(2, dtype=x.dtype)) @ self.W.T + 0.25 * torch.eye(3, dtype=x.dtype)
        return dist.MultivariateNormal(self.b, cov).log_prob(x)

    def exact_guide(self, x):
        """p(z2 | x) p(z1 | z2, x): the joint Gaussian posterior of u = [z2, z1], sampled site by site."""
        eye = torch.eye(2, dtype=x.dtype)
        prior = torch.cat([torch.cat([eye, self.A.T], 1), torch.cat([self.A, self.A @ self.A.T + 0.36 * eye], 1)])
        H = torch.cat([torch.zeros(3, 2, dtype=x.dtype), self.W], 1)
        C = torch.linalg.inv(torch.linalg.inv(prior) + H.T @ H / 0.25)
        m = ((x - self.b) / 0.25) @ H @ C
        gain = C[2:, :2] @ torch.linalg.inv(C[:2, :2])
        with pyro.plate("data", x.shape[0], dim=-1):
            z2 = pyro.sample("z2", dist.MultivariateNormal(m[:, :2], C[:2, :2]))
            mean1 = m[:, 2:] + (z2 - m[:, :2]) @ gain.T
            pyro.sample("z1", dist.MultivariateNormal(mean1, C[2:, 2:] - gain @ C[:2, 2:]))

    def sample(self, n):
        z2 = torch.randn(n, 2, dtype=torch.float64)
        z1 = z2 @ self.A.T + 0.6 * torch.randn(n, 2, dtype=torch.float64)
        return z1 @ self.W.T + self.b + 0.5 * torch.randn(n, 3, dtype=torch.float64)


def test_a_two_site_hierarchy_reaches_its_closed_form_log_likelihood(float64):
    story = Hierarchy()
    pyro.set_rng_seed(0)
    x = story.sample(100)
    exact = importance_log_likelihood(story.model, story.exact_guide, x, num_samples=3)
    assert torch.allclose(exact, story.log_marginal(x), atol=1e-8)  # every weight is p(x) under the true posterior
    guide = LatentGuide([
        AmortizedSite("z2", MultivariateNormalHead(2), inputs=("x",), input_dims=(3,), hidden_dims=()),
        AmortizedSite("z1", MultivariateNormalHead(2), inputs=("z2", "x"), input_dims=(2, 3), hidden_dims=()),
    ], model=story.model)
    _fit(story.model, guide, (x,))
    elbo = per_example_elbo(story.model, guide, x, num_samples=200)
    assert (elbo.mean() - story.log_marginal(x).mean()).abs() < 0.01
    assert importance_log_likelihood(story.model, guide, x, num_samples=100).mean() == pytest.approx(
        story.log_marginal(x).mean().item(), abs=0.01)


def test_per_example_and_semi_amortized_guides_of_a_two_argument_model(float64):
    story = TwoViews()
    pyro.set_rng_seed(0)
    x, y = story.sample(40)
    local = make_guide("local", latent_dim=2, num_examples=40, model=story.model)  # ids: model(x, y, index)
    optimizer = pyro.optim.ClippedAdam({"lr": 0.1, "lrd": 0.995})
    loss = pyro.infer.TraceMeanField_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    train(story.model, local, (x, y, torch.arange(40)), loss=loss, optimizer=optimizer, epochs=150, batch_size=10, progress=False)
    assert (local.params[0] - story.posterior_mean(x, y)).abs().mean() < 0.05
    encoder = make_guide("normal", latent_dim=2, encoder=Concat(), inputs=("x", "y"), model=story.model)
    semi = make_guide("semi", latent_dim=2, encoder=Concat(), inputs=("x", "y"), model=story.model,
                      refine_steps=20, refine_lr=0.02)
    semi.sites[0].amortized.load_state_dict(encoder.sites[0].state_dict())
    plain = per_example_elbo(story.model, encoder, x, y, num_samples=100).mean()
    refined = per_example_elbo(story.model, semi, x, y, num_samples=100).mean()
    assert refined > plain + 1.0
    assert refined <= story.log_marginal(x, y).mean() + 0.05


def test_bad_input_is_named(float64):
    story = TwoViews()
    x, y = story.sample(4)
    narrow = make_guide("normal", latent_dim=2, encoder=nn.Linear(3, 7), feature_dim=6, inputs=("x",), model=story.model)
    with pytest.raises(ValueError, match=r"features of shape \(4, 7\) \(size 7\).*takes 6 features"):
        narrow(x, y)
    with pytest.raises(ValueError, match=r"reads 'w'.*model's parameters are \['x', 'y', 'index'\]"):
        make_guide("normal", latent_dim=2, encoder=Concat(), inputs=("w", "y"), model=story.model)
    site = AmortizedSite("z", NormalHead(2), encoder=Concat())
    with pytest.raises(ValueError, match=r"site 'z' is covered twice"):
        LatentGuide([site, AmortizedSite("z", NormalHead(2), encoder=Concat())])
    hierarchy = Hierarchy()
    only_z1 = LatentGuide([AmortizedSite("z1", NormalHead(2), inputs=("x",), input_dims=(3,), hidden_dims=())],
                          model=hierarchy.model)
    with pytest.raises(ValueError, match=r"does not sample \['z2'\]"):
        check_guide_sites(hierarchy.model, only_z1, hierarchy.sample(4))


class TwoViewsModule(PyroModule):
    """TwoViews written as users write a story: a PyroModule whose forward(x, y, index=None) is the model."""

    def __init__(self):
        super().__init__()
        self.story = TwoViews()

    def forward(self, x, y, index=None):
        return self.story.model(x, y, index)


def test_a_module_story_binds_argument_names_through_its_forward(float64):
    """model=<a PyroModule> reads the parameter names of its forward, as model=module.forward does
    (the module's own call signature is (*args, **kwargs))."""
    story = TwoViewsModule()
    x, y = story.story.sample(4)
    for model in (story, story.forward):
        guide = make_guide("normal", latent_dim=2, encoder=Concat(), inputs=("x", "y"), model=model)
        assert guide.argument("y", (x, y), {}) is y and guide.argument("index", (x, y), {}, default=None) is None
        assert guide(x, y).shape == (4, 2)  # y read by position, named through forward
    history = train(story, guide, (x, y), epochs=2, batch_size=2, progress=False)
    assert len(history.epochs) == 2 and all(math.isfinite(loss) for loss in history.step_loss)
    with pytest.raises(ValueError, match=r"reads 'w'.*model's parameters are \['x', 'y', 'index'\]"):
        make_guide("normal", latent_dim=2, encoder=Concat(), inputs=("w", "y"), model=story)


def test_images_with_a_channel_dim_are_read_per_example():
    """(N, 1, 28, 28) images with input_dim=784 are N examples, as the model is called with them; latents
    with leading sample dims (S, N, d) and enumerated one-hot labels (K, 1, d) keep their leading dims."""
    from pyro_lvm.guides.encoders import flatten_event

    images = torch.rand(5, 1, 28, 28)
    assert flatten_event(images, 784).shape == (5, 784)
    assert torch.equal(flatten_event(images, 784), images.reshape(5, 784))
    assert flatten_event(torch.rand(7, 5, 3), 3).shape == (7, 5, 3)
    one_hot = torch.eye(10).view(10, 1, 10)  # an enumerated label: 10 values, broadcast over the examples
    assert flatten_event(one_hot, 10).shape == (10, 1, 10)
    assert flatten_event(torch.rand(10, 1, 1, 10), 10).shape == (10, 1, 1, 10)
    assert flatten_event(torch.rand(10, 784), 784).shape == (10, 784)
    guide = make_guide("normal", 784, 4, hidden_dims=(16,))
    z = pyro.poutine.trace(guide).get_trace(images.round()).nodes["z"]["value"]
    assert z.shape == (5, 4)
