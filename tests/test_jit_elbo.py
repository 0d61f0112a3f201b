"""pyro_lvm's JitTraceMeanField_ELBO: same values and gradients as the eager ELBO, compiled once per shape."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_lvm.guides import AmortizedNormal
from pyro_lvm.infer import JitTraceMeanField_ELBO, train
from pyro_lvm.models import DeepLatentGaussian


def vae(seed=0):
    torch.manual_seed(seed)
    return DeepLatentGaussian(12, 3, (8,)), AmortizedNormal(12, 3, (8,))


def loss_and_grads(elbo, model, guide, x, seed=1):
    pyro.set_rng_seed(seed)
    loss = elbo.differentiable_loss(model.model, guide, x)
    params = [*model.parameters(), *guide.parameters()]
    return loss.detach(), torch.autograd.grad(loss, params)


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(3)
    return torch.bernoulli(torch.rand(40, 12, generator=gen), generator=gen)


def test_compiled_loss_equals_the_eager_mean_field_elbo(data):
    model, guide = vae()
    jit, eager = JitTraceMeanField_ELBO(ignore_jit_warnings=True), pyro.infer.TraceMeanField_ELBO()
    for n in (40, 40, 25, 40, 25):  # the first call of each shape compiles (and draws its own noise)
        jit.differentiable_loss(model.model, guide, data[:n])
        a, grads_a = loss_and_grads(jit, model, guide, data[:n])
        b, grads_b = loss_and_grads(eager, model, guide, data[:n])
        assert torch.allclose(a, b, rtol=1e-6), n
        for ga, gb in zip(grads_a, grads_b):
            assert torch.allclose(ga, gb, atol=1e-5)
    assert len(jit._compiled) == 2  # one trace per batch shape, reused afterwards


def test_pyro_elbo_retraces_every_call_and_ours_does_not(data, monkeypatch):
    traces = []
    real = torch.jit.trace
    monkeypatch.setattr(torch.jit, "trace", lambda *a, **k: traces.append(1) or real(*a, **k))
    model, guide = vae()
    for elbo in (pyro.infer.JitTraceMeanField_ELBO(ignore_jit_warnings=True), JitTraceMeanField_ELBO(ignore_jit_warnings=True)):
        traces.clear()
        for _ in range(3):
            elbo.loss_and_grads(model.model, guide, data)
        assert len(traces) == (3 if type(elbo) is pyro.infer.JitTraceMeanField_ELBO else 1)


def gaussian_pair(prefix, shift):
    """A conjugate model/guide pair whose parameters are named after ``prefix`` (no clash in the param store)."""

    def model(x):
        loc = pyro.param(f"{prefix}_loc", torch.full((x.shape[1],), shift))
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(loc), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z + loc, 1.0).to_event(1), obs=x)

    def guide(x):
        q_loc = pyro.param(f"{prefix}_q_loc", torch.zeros(x.shape[1]))
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(q_loc.expand(x.shape[0], -1), 0.5).to_event(1))

    return model, guide


def test_each_model_gets_its_own_trace_and_the_cache_is_bounded(data):
    elbo = JitTraceMeanField_ELBO(ignore_jit_warnings=True, cache_size=2)
    eager = pyro.infer.TraceMeanField_ELBO()
    pairs = [gaussian_pair(f"m{i}", float(i)) for i in range(3)]
    for model, guide in pairs:
        elbo.differentiable_loss(model, guide, data)
    assert len(elbo._compiled) == 2
    for model, guide in pairs[1:]:  # the cached ones: each gets its own value, not another model's
        pyro.set_rng_seed(1)
        a = elbo.differentiable_loss(model, guide, data)
        pyro.set_rng_seed(1)
        b = eager.differentiable_loss(model, guide, data)
        assert torch.allclose(a, b, rtol=1e-6)
    with pytest.raises(ValueError, match="cache_size"):
        JitTraceMeanField_ELBO(cache_size=0)


def test_train_with_the_compiled_elbo(data):
    model, guide = vae()
    elbo = JitTraceMeanField_ELBO(ignore_jit_warnings=True)
    optimizer = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=3e-2)
    with pyro.validation_enabled(False):
        history = train(model.model, guide, data, loss=elbo, optimizer=optimizer, steps=40, batch_size=16, progress=False)
    assert len(elbo._compiled) == 2  # batches of 16 and the last one of 8
    first, last = sum(history.step_loss[:5]) / 5, sum(history.step_loss[-5:]) / 5
    assert last < first


def test_train_with_a_constant_beta_compiles_once(data):
    model, guide = vae()
    elbo = JitTraceMeanField_ELBO(ignore_jit_warnings=True)
    optimizer = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=1e-2)
    with pyro.validation_enabled(False):
        train(model.model, guide, data, loss=elbo, optimizer=optimizer, steps=10, batch_size=20, beta=0.5, progress=False)
    assert len(elbo._compiled) == 1
