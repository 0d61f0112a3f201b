"""IndependentBernoulli equals Bernoulli(logits).to_event(n) to the last bit, in every use a model makes of it."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_lvm.distributions import IndependentBernoulli


def _logits_and_images(shape=(3, 5, 7), seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=gen, dtype=torch.float64) * 3
    return logits, torch.bernoulli(torch.full(shape, 0.3, dtype=torch.float64), generator=gen)


@pytest.mark.parametrize("event_dims", [1, 2])
def test_log_prob_and_its_gradient_equal_torch_bernoulli_bit_for_bit(event_dims):
    logits, x = _logits_and_images()
    ours, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    a = IndependentBernoulli(ours, event_dims).log_prob(x)
    b = dist.Bernoulli(logits=theirs).to_event(event_dims).log_prob(x)
    assert torch.equal(a, b) and a.shape == logits.shape[: 3 - event_dims]
    a.sum().backward()
    b.sum().backward()
    assert torch.equal(ours.grad, theirs.grad)


def test_shapes_sampling_expansion_masking_and_broadcast_values():
    logits, x = _logits_and_images()
    d = IndependentBernoulli(logits)
    assert d.batch_shape == (3, 5) and d.event_shape == (7,) and torch.equal(d.logits, logits)
    assert torch.equal(d.mean, torch.sigmoid(logits)) and d.sample((2,)).shape == (2, 3, 5, 7)
    big = d.expand((4, 3, 5))
    assert type(big) is IndependentBernoulli and big.batch_shape == (4, 3, 5)
    assert torch.equal(big.log_prob(x), dist.Bernoulli(logits=logits).to_event(1).expand((4, 3, 5)).log_prob(x))
    keep = torch.tensor([True, False, True]).unsqueeze(-1)
    masked = d.mask(keep).log_prob(x)
    assert torch.equal(masked[1], torch.zeros(5, dtype=torch.float64)) and torch.equal(masked[0], d.log_prob(x)[0])
    # values with more leading dims than the logits (vectorized particles) broadcast
    assert torch.equal(IndependentBernoulli(logits[0]).log_prob(x), dist.Bernoulli(logits=logits[0]).to_event(1).log_prob(x))


def test_bad_arguments_are_refused():
    logits, x = _logits_and_images()
    with pytest.raises(ValueError, match="reinterpreted_batch_ndims must be an int >= 1, got 0"):
        IndependentBernoulli(logits, 0)
    with pytest.raises(ValueError, match="within the support"):
        IndependentBernoulli(logits, validate_args=True).log_prob(x + 0.5)


def test_the_vae_elbo_is_unchanged_from_torch_bernoulli():
    """The VAE's loss with the fused likelihood equals the loss with torch's Bernoulli.to_event(1)."""
    from pyro_lvm.guides import AmortizedNormal
    from pyro_lvm.models import DeepLatentGaussian

    torch.manual_seed(0)
    model, guide = DeepLatentGaussian(7, 2, (4,)), AmortizedNormal(7, 2, (4,))
    _, x = _logits_and_images((6, 7))
    model.double(), guide.double()
    elbo = pyro.infer.TraceMeanField_ELBO()
    pyro.set_rng_seed(3)
    fused = elbo.differentiable_loss(model.model, guide, x)
    original = model.likelihood_dist
    model.likelihood_dist = lambda z: dist.Bernoulli(logits=original(z).logits).to_event(1)
    pyro.set_rng_seed(3)
    assert torch.equal(fused, elbo.differentiable_loss(model.model, guide, x))
