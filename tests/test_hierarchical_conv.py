"""The two-stochastic-layer and the convolutional deep latent Gaussian models against exact references.

* Two layers, linear-Gaussian special case (no hidden layers, a constant scale of ``z1 | z2``, a
  Gaussian likelihood): ``log p(x)`` has a closed form (a multivariate normal, torch's density), and
  with the exact posterior ``p(z1 | x) p(z2 | z1)`` as guide every importance weight equals it.
* The convolutional decoder and encoder keep any leading sample dims (each slice is the network
  applied to that slice alone), so the vectorized importance-weighted evaluator sees the right
  log-weights: they equal ``log p(x, z_s) - log q(z_s | x)`` computed particle by particle.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from pyro.poutine.runtime import _PYRO_STACK

from pyro_lvm.evaluation.latent_gaussian import evaluate_latent_gaussian, layer_means
from pyro_lvm.guides import AmortizedSite, ConvEncoder, LatentGuide, NormalHead, make_guide
from pyro_lvm.infer import importance_log_likelihood, log_importance_weights
from pyro_lvm.models import ConvDeepLatentGaussian, HierarchicalDeepLatentGaussian
from pyro_lvm.models.conv_dlgm import ConvDecoder
from pyro_lvm.nets import MLP


class TwoLayerGuide(PyroModule):
    """A hand-written ``q(z1 | x) q(z2 | z1)``: diagonal Gaussians through MLPs (the mirror of the story)."""

    def __init__(self, data_dim, z1_dim, z2_dim, hidden=(8,), z_hidden=(8,)):
        super().__init__()
        self.q1, self.q2 = MLP(data_dim, hidden, 2 * z1_dim), MLP(z1_dim, z_hidden, 2 * z2_dim)

    @staticmethod
    def _normal(out):
        loc, raw = out.chunk(2, dim=-1)
        return dist.Normal(loc, F.softplus(raw) + 1e-5).to_event(1)

    def forward(self, x, index=None):
        with pyro.plate("data", x.shape[0], dim=-1):
            z1 = pyro.sample("z1", self._normal(self.q1(x)))
            pyro.sample("z2", self._normal(self.q2(z1)))


def _linear_gaussian_hierarchy(D=4, z1_dim=3, z2_dim=2, seed=0):
    """The model with affine networks and a constant scale of z1 | z2, in float64, and its matrices."""
    torch.manual_seed(seed)
    model = HierarchicalDeepLatentGaussian(D, z1_dim, z2_dim, hidden_dims=(), z_hidden_dims=(), likelihood="gaussian").double()
    with torch.no_grad():
        model.z1_network.output_layer.weight[z1_dim:] = 0.0  # the raw scale of z1 does not depend on z2
        model.raw_scale.normal_()
    W, c = model.z1_network.output_layer.weight.detach(), model.z1_network.output_layer.bias.detach()
    A, b, s1 = W[:z1_dim], c[:z1_dim], F.softplus(c[z1_dim:]) + 1e-4
    C, d = model.decoder.output_layer.weight.detach(), model.decoder.output_layer.bias.detach()
    s2 = F.softplus(model.raw_scale.detach()) + 1e-4
    return model, A, b, torch.diag(s1**2), C, d, torch.diag(s2**2)


def _exact_guide(A, b, S1, C, d, S2):
    """p(z1 | x) p(z2 | z1) by Gaussian conditioning, as a guide with full covariances."""
    P1 = A @ A.T + S1  # prior covariance of z1; its mean is b
    cov1 = torch.linalg.inv(torch.linalg.inv(P1) + C.T @ torch.linalg.inv(S2) @ C)
    cov2 = torch.linalg.inv(torch.eye(A.shape[1], dtype=A.dtype) + A.T @ torch.linalg.inv(S1) @ A)

    def guide(x, index=None):
        with pyro.plate("data", x.shape[0], dim=-1):
            mean1 = (torch.linalg.solve(P1, b) + (x - d) @ torch.linalg.inv(S2) @ C) @ cov1  # (N, z1_dim)
            z1 = pyro.sample("z1", dist.MultivariateNormal(mean1, cov1))
            mean2 = (z1 - b) @ torch.linalg.inv(S1) @ A @ cov2  # (..., N, z2_dim), z1 with any particle dims
            pyro.sample("z2", dist.MultivariateNormal(mean2, cov2))

    return guide


def test_two_layer_linear_gaussian_log_likelihood_is_the_closed_form_under_the_exact_posterior():
    model, A, b, S1, C, d, S2 = _linear_gaussian_hierarchy()
    marginal = dist.MultivariateNormal(C @ b + d, C @ (A @ A.T + S1) @ C.T + S2)
    x = marginal.sample((6,))
    guide = _exact_guide(A, b, S1, C, d, S2)
    ll = model.log_likelihood(x, guide=guide, num_samples=20, chunk_size=7)
    assert torch.allclose(ll, marginal.log_prob(x), atol=1e-8)
    # every weight is log p(x): the exact posterior has zero variance of the weights
    log_w = log_importance_weights(model.model, guide, x, num_samples=5)
    assert torch.allclose(log_w, marginal.log_prob(x).expand(5, -1), atol=1e-8)


def package_two_layer_guide(model):
    """q(z1 | x) q(z2 | z1) from pyro_lvm.guides: two amortized sites, the second reading the first's latent."""
    return LatentGuide([AmortizedSite("z1", NormalHead(3), inputs=("x",), input_dims=(6,), hidden_dims=(8,)),
                        AmortizedSite("z2", NormalHead(2), inputs=("z1",), input_dims=(3,), hidden_dims=(8,))], model=model.forward)


@pytest.mark.parametrize("package_guide", [False, True])
def test_two_layer_story_sites_shapes_and_questions(package_guide):
    model = HierarchicalDeepLatentGaussian(6, 3, 2, hidden_dims=(5,), z_hidden_dims=(4,))
    guide = package_two_layer_guide(model) if package_guide else TwoLayerGuide(6, 3, 2)
    x = torch.bernoulli(torch.full((4, 6), 0.3))
    trace = pyro.poutine.trace(model.model).get_trace(x)
    assert trace.nodes["z2"]["value"].shape == (4, 2) and trace.nodes["z1"]["value"].shape == (4, 3)
    assert model.latent_sites == ("z1", "z2") and model.latent_size == 5
    ll = model.log_likelihood(x, guide=guide, num_samples=50, chunk_size=10)  # vectorized particles through both layers
    assert ll.shape == (4,) and torch.isfinite(ll).all()
    assert model.map_latents(x, guide=guide).shape == (4, 5)
    assert model.posterior(x, guide=guide, site="z2").event_shape == (2,)
    drawn, latents = model.sample(3, return_latents=True)
    assert drawn.shape == (3, 6) and latents.shape == (3, 5)
    with pytest.raises(ValueError, match="z3"):
        model.posterior(x, guide=guide, site="z3")


@pytest.mark.parametrize("side", [28, 8])
def test_conv_decoder_and_encoder_keep_leading_sample_dims(side):
    decoder, encoder = ConvDecoder(5, side, (8, 4)), ConvEncoder(side, (4, 8), feature_dim=6)
    z = torch.randn(3, 2, 5)
    out = decoder(z)
    assert out.shape == (3, 2, side * side)
    assert torch.allclose(out[1], decoder(z[1]), atol=1e-6)  # each slice is the network on that slice alone
    x = torch.rand(3, 2, side * side)
    features = encoder(x)
    assert features.shape == (3, 2, 6)
    assert torch.allclose(features[2], encoder(x[2]), atol=1e-6)
    assert torch.allclose(encoder(x.reshape(3, 2, side, side)), features)
    with pytest.raises(ValueError, match="multiple of 4"):
        ConvDecoder(5, 10)
    with pytest.raises(ValueError, match=f"{side * side}"):
        encoder(torch.rand(2, side * side + 1))


def conv_guide(side, z_dim):
    """The package's diagonal-Gaussian family over a ConvEncoder (its output layer reads the features)."""
    return make_guide("normal", side * side, z_dim, encoder=ConvEncoder(side, (4, 8), feature_dim=6))


def test_conv_model_log_weights_equal_the_particle_by_particle_computation():
    model = ConvDeepLatentGaussian(8, 3, channels=(8, 4))
    x = torch.bernoulli(torch.full((5, 64), 0.4))
    z = torch.randn(4, 5, 3)  # 4 particles for 5 examples

    def points(x, index=None):  # a point guide at z: its log-weight is log p(x, z_s), no q term
        vectorized = any(getattr(frame, "name", None) == "_particles" for frame in _PYRO_STACK)  # the evaluator's plate
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Delta(z if vectorized else z[0], event_dim=1))

    log_w = log_importance_weights(model.model, points, x, num_samples=4)  # the evaluator's particle plate
    by_particle = torch.stack([model.prior().log_prob(z[s]) + model.likelihood_dist(z[s]).log_prob(x) for s in range(4)])
    assert torch.allclose(log_w, by_particle, atol=1e-4)
    ll = importance_log_likelihood(model.model, conv_guide(8, 3), x, num_samples=40, chunk_size=16)
    assert ll.shape == (5,) and torch.isfinite(ll).all()


def test_the_evaluation_recipe_is_exact_under_the_exact_posterior_and_counts_units_per_layer():
    model, A, b, S1, C, d, S2 = _linear_gaussian_hierarchy()
    marginal = dist.MultivariateNormal(C @ b + d, C @ (A @ A.T + S1) @ C.T + S2)
    x = marginal.sample((40,))
    guide = _exact_guide(A, b, S1, C, d, S2)
    result = evaluate_latent_gaussian(model.model, guide, x, num_samples=10, latent_sites=("z1", "z2"))
    exact = marginal.log_prob(x).mean().item()
    assert result.test_log_likelihood == pytest.approx(exact, abs=1e-8)
    assert result.test_elbo == pytest.approx(exact, abs=1e-8)  # the exact posterior: the ELBO is log p(x), every draw
    assert set(result.active_units_per_layer) == {"z1", "z2"}
    assert result.active_units == sum(result.active_units_per_layer.values())
    assert result.latent_mean_variances.shape == (3 + 2,)
    # each layer's posterior mean: E[z1 | x], and E[z2 | x] = E[E[z2 | z1] | x] through the linear maps
    means = layer_means(guide, x, ("z1", "z2"), num_samples=20000, chunk_examples=16)
    P1 = A @ A.T + S1
    cov1 = torch.linalg.inv(torch.linalg.inv(P1) + C.T @ torch.linalg.inv(S2) @ C)
    mean1 = (torch.linalg.solve(P1, b) + (x - d) @ torch.linalg.inv(S2) @ C) @ cov1
    cov2 = torch.linalg.inv(torch.eye(2, dtype=A.dtype) + A.T @ torch.linalg.inv(S1) @ A)
    assert torch.allclose(means["z1"], mean1, atol=0.05)
    assert torch.allclose(means["z2"], (mean1 - b) @ torch.linalg.inv(S1) @ A @ cov2, atol=0.05)


def test_the_two_layer_experiment_trains_the_elbo_not_a_mean_field_kl():
    """Under the exact posterior q(z1 | x) q(z2 | z1) the ELBO is log p(x) for every draw; the two-layer
    experiment's objective gives exactly that, where TraceMeanField_ELBO's analytic KL of z1 (taken at a z2
    drawn after z1) does not."""
    from pyro_lvm.evaluation.vae_experiment import VAEExperiment, _loss

    model, A, b, S1, C, d, S2 = _linear_gaussian_hierarchy()
    marginal = dist.MultivariateNormal(C @ b + d, C @ (A @ A.T + S1) @ C.T + S2)
    x = marginal.sample((6,))
    guide = _exact_guide(A, b, S1, C, d, S2)
    loss = _loss(VAEExperiment(stochastic_layers=2, z1_dim=3, z_dim=2))
    assert abs(loss.loss(model.model, guide, x) + float(marginal.log_prob(x).sum())) < 1e-6
    mean_field = pyro.infer.TraceMeanField_ELBO(max_plate_nesting=1).loss(model.model, guide, x)
    assert abs(mean_field + float(marginal.log_prob(x).sum())) > 1e-3
