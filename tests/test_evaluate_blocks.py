"""The evaluators replay the model in blocks of draws on the CPU, and validate the first chunk only.

A chunk's draws come from one call of the guide; on the CPU the model is replayed against them in blocks
of at most ``_BLOCK_WEIGHTS`` weights (draws x examples). Reference: the same evaluator with the model
replayed in one call per chunk (``_BLOCK_WEIGHTS`` past any chunk, as before the blocks): from the same
seed the estimates are bit-identical, for one latent site, two, an enumerated site on either side, and
the draws of :func:`~pyro_lvm.infer.importance.importance_draws`.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from linear_gaussian import LinearGaussianHierarchy  # tests/ is on sys.path under pytest

import pyro_lvm.infer.evaluate as evaluate
from pyro_lvm.guides import make_guide
from pyro_lvm.infer import importance_log_likelihood, log_importance_weights, per_example_elbo
from pyro_lvm.infer.importance import importance_draws
from pyro_lvm.models import DeepLatentGaussian, SemiSupervisedVAE

N = 10


def mixture_model(x):
    """z ~ N(0, 1), c enumerated by the model: x | z, c ~ N(z + mu_c, 1)."""
    with pyro.plate("data", x.shape[0], dim=-1):
        z = pyro.sample("z", dist.Normal(torch.zeros((), dtype=x.dtype), 1.0))
        c = pyro.sample("c", dist.Categorical(torch.tensor([0.3, 0.7])), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(z + torch.tensor([-2.0, 2.0], dtype=x.dtype)[c], 1.0), obs=x)


def mixture_guide(x):
    with pyro.plate("data", x.shape[0], dim=-1):
        pyro.sample("z", dist.Normal(0.5 * x, 0.8))


def stories():
    """name -> (model, guide, args)."""
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((N, 64), 0.2))
    dlgm = DeepLatentGaussian(64, 4, (32,))
    ssvae = SemiSupervisedVAE(64, 3, 4, (16,))
    h = LinearGaussianHierarchy.random()
    return {
        "one site": (dlgm.model, make_guide("normal", 64, 4, hidden_dims=(32,)), (x,)),
        "iaf": (dlgm.model, make_guide("iaf", 64, 4, hidden_dims=(32,)), (x,)),
        "two sites": (h.model, h.exact_guide, (h.marginal().sample((N,)),)),
        "enumerated in the guide": (ssvae.model, ssvae.guide, (x,)),
        "enumerated in the model": (mixture_model, mixture_guide, (torch.randn(N),)),
    }


def run(fn, block_weights, monkeypatch, seed=1):
    monkeypatch.setattr(evaluate, "_BLOCK_WEIGHTS", block_weights)
    torch.manual_seed(seed)
    return fn()


@pytest.mark.parametrize("name", list(stories()))
def test_blocks_give_the_numbers_of_one_call(name, monkeypatch):
    model, guide, args = stories()[name]
    evaluators = {
        "ll": lambda: importance_log_likelihood(model, guide, *args, num_samples=20, chunk_size=8),  # blocks 3, 3, 2
        "elbo": lambda: per_example_elbo(model, guide, *args, num_samples=9, chunk_size=9),
        "weights": lambda: log_importance_weights(model, guide, *args, num_samples=7),
    }
    for what, fn in evaluators.items():
        one_call, blocks = run(fn, 10**9, monkeypatch), run(fn, 3 * N, monkeypatch)
        assert torch.equal(one_call, blocks), (name, what)


def test_importance_draws_in_blocks_are_those_of_one_call(monkeypatch):
    model, guide, args = stories()["one site"]
    (draws1, lw1), (draws2, lw2) = (run(lambda: importance_draws(model, guide, *args, num_samples=11), w, monkeypatch)
                                    for w in (10**9, 2 * N))
    assert torch.equal(lw1, lw2) and draws1.keys() == draws2.keys() == {"z", "x"}
    assert all(torch.equal(draws1[k], draws2[k]) and draws1[k].shape[0] == 11 for k in draws1)


def test_pyro_validation_checks_the_first_chunk_only():
    seen = []

    def guide(x):
        seen.append(pyro.infer.util.is_validation_enabled() and torch.distributions.Distribution._validate_args)
        mixture_guide(x)

    x = torch.randn(N)
    with pyro.validation_enabled(True):
        importance_log_likelihood(mixture_model, guide, x, num_samples=12, chunk_size=4)
        assert seen == [True, True, False, False]  # the check, then chunks 1, 2 and 3
        assert pyro.infer.util.is_validation_enabled() and torch.distributions.Distribution._validate_args
    seen.clear()
    with pyro.validation_enabled(False):
        importance_log_likelihood(mixture_model, guide, x, num_samples=12, chunk_size=4)
        assert seen == [False] * 4 and not pyro.infer.util.is_validation_enabled()


def test_a_nan_weight_in_a_later_chunk_is_an_error_naming_the_examples():
    """Validation runs on the first chunk only; a NaN the later chunks compute still stops the estimate."""
    calls = []

    def model(x):
        calls.append(1)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            loc = torch.where(torch.arange(x.shape[0]) == 2, z * float("nan"), z) if len(calls) > 2 else z
            pyro.sample("x", dist.Normal(loc, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    for evaluator in (importance_log_likelihood, per_example_elbo):
        calls.clear()
        with pytest.raises(ValueError, match=r"the log weights of example\(s\) \[2\] are NaN in draws 4\.\.7"):
            evaluator(model, guide, torch.randn(4), num_samples=12, chunk_size=4)
