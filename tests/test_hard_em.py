"""HardEM against brute-force enumeration, hand-written joint log-densities and Lloyd's k-means."""

import itertools

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, config_enumerate
from pyro.infer.autoguide import AutoDelta
from sklearn.cluster import KMeans

from pyro_lvm.infer import HardEM, train

# A chain z1 -> z2 per data point, each with its own observation, so the joint MAP of (z1, z2)
# generally differs from the per-site marginal argmaxes.
PRIOR = torch.tensor([0.5, 0.3, 0.2])
TRANS = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
LOC1 = torch.tensor([-1.0, 0.0, 1.0])


def chain_model(x1, x2):
    loc2 = pyro.param("loc2", torch.tensor([-2.0, 0.5, 2.0]))
    with pyro.plate("data", x1.shape[0], dim=-1):
        z1 = pyro.sample("z1", dist.Categorical(PRIOR), infer={"enumerate": "parallel"})
        pyro.sample("x1", dist.Normal(LOC1[z1], 1.5), obs=x1)
        z2 = pyro.sample("z2", dist.Categorical(TRANS[z1]), infer={"enumerate": "parallel"})
        pyro.sample("x2", dist.Normal(loc2[z2], 1.0), obs=x2)


def empty_guide(x1, x2):
    pass


def brute_force_joint(x1, x2, loc2):
    """log p(x1, x2, z1, z2) for every (n, z1, z2): shape (N, 3, 3)."""
    out = torch.empty(x1.shape[0], 3, 3)
    for a, b in itertools.product(range(3), range(3)):
        out[:, a, b] = (
            PRIOR[a].log()
            + dist.Normal(LOC1[a], 1.5).log_prob(x1)
            + TRANS[a, b].log()
            + dist.Normal(loc2[b], 1.0).log_prob(x2)
        )
    return out


@pytest.fixture
def chain_data():
    torch.manual_seed(1)
    return torch.randn(40) * 1.5, torch.randn(40) * 2.0


def test_map_assignment_is_argmax_of_exact_posterior(chain_data):
    x1, x2 = chain_data
    trace = HardEM(max_plate_nesting=1).map_trace(chain_model, empty_guide, x1, x2)
    joint = brute_force_joint(x1, x2, torch.tensor([-2.0, 0.5, 2.0]))
    best = joint.reshape(len(x1), 9).argmax(-1)
    assert torch.equal(trace.nodes["z1"]["value"], best // 3)
    assert torch.equal(trace.nodes["z2"]["value"], best % 3)
    # the joint MAP is not the pair of marginal argmaxes here, so the test tells them apart
    marginal_z2 = joint.logsumexp(1).argmax(-1)
    assert not torch.equal(marginal_z2, best % 3)


def test_loss_and_gradient_equal_hand_written_hard_objective(chain_data):
    x1, x2 = chain_data
    hard_em = HardEM(max_plate_nesting=1)
    pyro.param("loc2", torch.tensor([-2.0, 0.5, 2.0]))
    loss = hard_em.loss_and_grads(chain_model, empty_guide, x1, x2)
    grad = pyro.param("loc2").unconstrained().grad.clone()

    loc2 = torch.tensor([-2.0, 0.5, 2.0], requires_grad=True)
    expected = -brute_force_joint(x1, x2, loc2).reshape(len(x1), 9).max(-1).values.sum()
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-6)
    assert torch.allclose(grad, loc2.grad, atol=1e-5)
    assert hard_em.loss(chain_model, empty_guide, x1, x2) == pytest.approx(expected.item(), rel=1e-6)


def test_guessed_plate_nesting_matches_explicit(chain_data):
    x1, x2 = chain_data
    guessed = HardEM().loss(chain_model, empty_guide, x1, x2)
    assert guessed == pytest.approx(HardEM(max_plate_nesting=1).loss(chain_model, empty_guide, x1, x2))


@config_enumerate
def shift_model(x):
    shift = pyro.sample("shift", dist.Normal(0.0, 10.0))
    with pyro.plate("data", x.shape[0], dim=-1):
        z = pyro.sample("z", dist.Categorical(torch.ones(2) / 2))
        pyro.sample("x", dist.Normal(shift + torch.tensor([-3.0, 3.0])[z], 1.0), obs=x)


def test_continuous_guide_sites_enter_without_entropy():
    x = torch.tensor([-2.5, -3.5, 3.1, 2.2, 4.0])
    guide = AutoDelta(poutine.block(shift_model, hide=["z"]))
    hard_em = HardEM(max_plate_nesting=1)
    loss = hard_em.differentiable_loss(shift_model, guide, x)
    shift = guide.median(x)["shift"]
    comps = dist.Normal(shift + torch.tensor([-3.0, 3.0]), 1.0).log_prob(x[:, None]) + np.log(0.5)
    expected = -(dist.Normal(0.0, 10.0).log_prob(shift) + comps.max(-1).values.sum())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()  # the gradient reaches the guide's parameter through the Delta sample
    assert all(p.grad is not None for p in guide.parameters())


def test_svi_with_autodelta_finds_the_map_shift():
    torch.manual_seed(0)
    x = torch.cat([torch.randn(30) - 3.0 + 0.7, torch.randn(30) + 3.0 + 0.7])
    guide = AutoDelta(poutine.block(shift_model, hide=["z"]))
    svi = SVI(shift_model, guide, pyro.optim.Adam({"lr": 0.05}), HardEM(max_plate_nesting=1))
    for _ in range(400):
        svi.step(x)
    # with hard assignments by sign the MAP of the shift is the ridge solution below
    z = (x - guide.median(x)["shift"] > 0).float()
    resid = x - (6.0 * z - 3.0)
    expected = resid.sum() / (len(x) + 1.0 / 100.0)
    assert guide.median(x)["shift"].item() == pytest.approx(expected.item(), abs=1e-3)


def test_svi_fixed_point_is_lloyd_kmeans_fixed_point():
    """With identity covariances and uniform weights, hard EM is k-means: compare with scikit-learn."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [4.0, 0.5], [1.0, 4.0]])
    X = np.concatenate([rng.normal(c, 0.6, size=(50, 2)) for c in centres])
    init = X[[0, 50, 100]] + 0.5

    @config_enumerate
    def mixture(data):
        means = pyro.param("means", torch.tensor(init, dtype=torch.float32))
        with pyro.plate("data", data.shape[0], dim=-1):
            z = pyro.sample("z", dist.Categorical(torch.ones(3) / 3))
            pyro.sample("x", dist.Normal(means[z], 1.0).to_event(1), obs=data)

    data = torch.tensor(X, dtype=torch.float32)
    train(mixture, lambda data: None, data, loss=HardEM(max_plate_nesting=1), lr=0.1, steps=250,
          batch_size=len(data), shuffle=False, progress=False)
    means = pyro.param("means").detach().numpy()
    labels = HardEM(max_plate_nesting=1).map_trace(mixture, lambda data: None, data).nodes["z"]["value"].numpy()
    # the same fixed point as Lloyd's algorithm run from the same initial centres ...
    km = KMeans(3, init=init, n_init=1, algorithm="lloyd", tol=0.0).fit(X)
    assert np.array_equal(labels, km.labels_)
    assert np.allclose(means, km.cluster_centers_, atol=1e-3)
    # ... and a fixed point of Lloyd's algorithm: one more closed-form step does not move it
    step = KMeans(3, init=means.astype(np.float64), n_init=1, algorithm="lloyd", max_iter=1).fit(X)
    assert np.array_equal(step.labels_, labels)
    assert np.allclose(step.cluster_centers_, means, atol=1e-3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_plate_nesting"):
        HardEM(max_plate_nesting=-1)
    with pytest.raises(ValueError, match="num_particles"):
        HardEM(num_particles=0)

    def model():
        pyro.sample("k", dist.Poisson(3.0))

    def guide():
        pyro.sample("k", dist.Poisson(pyro.param("rate", torch.tensor(2.0), constraint=dist.constraints.positive)))

    with pytest.raises(ValueError, match="guide site 'k'.*rsample"):
        HardEM(max_plate_nesting=0).loss(model, guide)
