"""``train``/``svi_step`` with a plain ``torch.optim.Optimizer`` (the fast path the SVI-overhead benchmark uses)."""

import math

import pyro
import pyro.optim
import pytest
import torch

from pyro_lvm.guides import AmortizedNormal
from pyro_lvm.infer import TrainingDiverged, train
from pyro_lvm.models import DeepLatentGaussian


def vae(seed=0):
    pyro.clear_param_store()
    torch.manual_seed(seed)
    return DeepLatentGaussian(20, 3, (8,)), AmortizedNormal(20, 3, (8,))


def data(n=96):
    gen = torch.Generator().manual_seed(1)
    return torch.bernoulli(torch.rand(n, 20, generator=gen), generator=gen)


def fit(kind, steps=6, **kwargs):
    model, guide = vae()
    if kind == "torch":
        optimizer = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=1e-2)
    else:
        optimizer = pyro.optim.Adam({"lr": 1e-2})
    pyro.set_rng_seed(5)
    history = train(model.model, guide, data(), steps=steps, batch_size=32, optimizer=optimizer, progress=False, **kwargs)
    return model, guide, history


def test_torch_optimizer_follows_the_pyro_optimizer_trajectory():
    """Adam per parameter (pyro.optim) and one Adam over all parameters are the same update."""
    a_model, a_guide, a_hist = fit("pyro")
    b_model, b_guide, b_hist = fit("torch")
    assert b_hist.step_loss == pytest.approx(a_hist.step_loss, rel=1e-5)
    for a, b in [(a_model, b_model), (a_guide, b_guide)]:
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.allclose(p, q, atol=1e-6), name
    assert b_hist.epochs[-1]["lr"] == 1e-2


def test_torch_optimizer_resume_equals_uninterrupted(tmp_path):
    full_model, _, full_hist = fit("torch", steps=6, checkpoint=tmp_path / "full.pt")
    fit("torch", steps=3, checkpoint=tmp_path / "part.pt")
    model, guide = vae(seed=99)  # other initial values: resume must overwrite them and the Adam state
    optimizer = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=1e-2)
    history = train(model.model, guide, data(), steps=6, batch_size=32, optimizer=optimizer, progress=False,
                    checkpoint=tmp_path / "part.pt", resume=True)
    assert history.step_loss == full_hist.step_loss
    for (name, p), q in zip(full_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(p, q), name


def test_torch_optimizer_divergence_stops_before_a_non_finite_update():
    x = torch.randn(64)
    log_scale = pyro.param("log_scale", torch.tensor(0.0)).unconstrained()
    seen = []

    def model(x):
        scale = pyro.param("log_scale").exp()
        seen.append(scale.item())
        with pyro.plate("data", len(x)):
            pyro.sample("x", pyro.distributions.Normal(0.0, scale), obs=x)

    with pytest.raises(TrainingDiverged, match=r"at step \d+"):
        train(model, lambda x: None, x, steps=50, batch_size=64, optimizer=torch.optim.SGD([log_scale], lr=1e3), progress=False)
    assert len(seen) > 1 and math.isfinite(log_scale.item())  # it moved, but the non-finite step was not applied
    # the update before it had a finite loss but sent the scale to seen[-1] (inf): the parameter is back at
    # seen[-2], the value that gave the last finite loss
    assert not math.isfinite(seen[-1]) and log_scale.exp().item() == seen[-2] and log_scale.grad is None
