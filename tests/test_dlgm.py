"""DeepLatentGaussian: its joint density, that SVI trains every parameter, both likelihoods, bad input."""

import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_lvm.guides import AmortizedNormal
from pyro_lvm.infer import train
from pyro_lvm.models import DeepLatentGaussian


def test_log_joint_is_prior_plus_decoder_likelihood():
    model = DeepLatentGaussian(6, 2, (5,))
    x = torch.bernoulli(torch.full((4, 6), 0.4))
    z = torch.randn(4, 2)
    trace = poutine.trace(poutine.condition(model.model, data={"z": z})).get_trace(x)
    expected = dist.Normal(0.0, 1.0).log_prob(z).sum() + dist.Bernoulli(logits=model.decoder(z)).log_prob(x).sum()
    torch.testing.assert_close(trace.log_prob_sum(), expected)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_svi_trains_every_model_and_guide_parameter(likelihood):
    x = torch.rand(64, 6)
    if likelihood == "bernoulli":
        x = torch.bernoulli(x)
    model = DeepLatentGaussian(6, 2, (8,), likelihood=likelihood)
    guide = AmortizedNormal(6, 2, (8,))
    before = {n: p.detach().clone() for m in (model, guide) for n, p in m.named_parameters(prefix=type(m).__name__)}
    history = train(model.model, guide, x, epochs=30, batch_size=16, lr=1e-2, progress=False)
    after = dict(p for m in (model, guide) for p in m.named_parameters(prefix=type(m).__name__))
    assert set(before) == set(after)
    frozen = [n for n in before if torch.equal(before[n], after[n])]
    assert not frozen, f"parameters SVI never updated: {frozen}"
    assert history.epochs[-1]["train_loss"] < history.epochs[0]["train_loss"]


def test_output_bias_from_training_mean():
    x = torch.bernoulli(torch.full((1000, 5), 0.2))
    bias = DeepLatentGaussian.output_bias_from_data(x)
    model = DeepLatentGaussian(5, 2, (4,), output_bias=bias)
    torch.testing.assert_close(model.decoder.output_layer.bias.detach(), torch.logit(x.mean(0)))
    assert model.sample(7).shape == (7, 5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"likelihood": "poisson"}, "likelihood must be 'bernoulli' or 'gaussian'"),
        ({"z_dim": 0}, "data_dim and z_dim must be >= 1"),
        ({"output_bias": torch.zeros(3)}, r"output_bias must have shape \(6,\)"),
        ({"activation": "sigmoidal"}, "unknown activation 'sigmoidal'"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DeepLatentGaussian(6, **{"z_dim": 2, **kwargs})


def test_bad_data_shape_and_values():
    model = DeepLatentGaussian(6, 2, (4,))
    with pytest.raises(ValueError, match=r"must have shape \(N, 6\).*got \(3, 5\)"):
        model.model(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="support"):  # Pyro's validation: Bernoulli data must be 0/1
        poutine.trace(model.model).get_trace(torch.full((3, 6), 0.5)).log_prob_sum()
