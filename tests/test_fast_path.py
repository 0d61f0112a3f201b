"""train()'s default path (pyro_lvm.infer.fast_path) gives the plain Pyro path's losses and parameters."""

import time

import pyro
import pyro.distributions as dist
import pyro.infer
import pyro.optim
import pytest
import torch

from pyro_lvm.guides import AmortizedNormal
from pyro_lvm.infer import FastPath, JitTraceMeanField_ELBO, TrainingDiverged, train
from pyro_lvm.models import DeepLatentGaussian


def vae(seed=0):
    pyro.clear_param_store()
    torch.manual_seed(seed)
    return DeepLatentGaussian(20, 3, (8,)), AmortizedNormal(20, 3, (8,))


def data(n=100):
    gen = torch.Generator().manual_seed(1)
    return torch.bernoulli(torch.rand(n, 20, generator=gen), generator=gen)


def fit(steps=120, **kwargs):
    model, guide = vae()
    pyro.set_rng_seed(5)
    history = train(model.model, guide, data(), steps=steps, batch_size=32, lr=1e-2, progress=False, **kwargs)
    return [model, guide], history


def assert_close_weights(modules, others, atol=1e-5):
    for a, b in zip(modules, others, strict=True):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.allclose(p, q, atol=atol), name


def test_the_default_equals_the_plain_pyro_path_from_the_same_start():
    """120 steps of batches 32, 32, 32, 4: validated, then compiled (the batches of 4 uncompiled); the
    compiled ELBO kept without timing it against the uncompiled one (see the tests of the trial below)."""
    with pytest.warns(RuntimeWarning, match=r"shapes \(\(4, 20\),\) differs from the compiled"):
        fast_modules, fast = fit(fast=FastPath(timed_steps=0))
    plain_modules, plain = fit(fast=False, loss=pyro.infer.TraceMeanField_ELBO(), optimizer=pyro.optim.Adam({"lr": 1e-2}))
    assert fast.fast_path["optimizer"] == "torch.optim.Adam over every trained parameter"
    assert fast.fast_path["loss"] == "TraceMeanField_ELBO (analytic KL)"
    assert fast.fast_path["validation"] == "on for the first 10 steps, then off"
    assert fast.fast_path["compiled"] == "yes, for batches of shapes ((32, 20),)"
    assert fast.fast_path["uncompiled_steps"] == 28  # the batches of 4 after step 10: steps 11, 15, ..., 119
    assert plain.fast_path["optimizer"] == "given: PyroOptim" and plain.fast_path["compiled"] == "no: a loss was given"
    assert fast.step_loss == pytest.approx(plain.step_loss, rel=1e-5)
    assert_close_weights(fast_modules, plain_modules)
    assert pyro.infer.util.is_validation_enabled()  # put back at the end


@pytest.mark.parametrize("slower", ["compiled", "uncompiled"])
def test_the_faster_of_compiled_and_uncompiled_steps_runs_on_with_the_same_steps(monkeypatch, slower):
    """After compiling, 3 warm-up calls, then 4 compiled and 4 uncompiled steps alternately, timed;
    the kind made slower here (30 ms more a step) is dropped, and every step is still the plain path's."""
    import pyro_lvm.infer.fast_path as fast_path

    slowed = fast_path.JitTraceMeanField_ELBO if slower == "compiled" else pyro.infer.TraceMeanField_ELBO
    calls = []
    original = slowed.loss_and_grads

    def slow(self, *args, **kwargs):
        calls.append(1)
        time.sleep(0.03)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(slowed, "loss_and_grads", slow)
    with pytest.warns(RuntimeWarning, match="differs from the compiled"):
        fast_modules, fast = fit(fast=FastPath(timed_steps=4))
    monkeypatch.undo()
    plain_modules, plain = fit(fast=False, loss=pyro.infer.TraceMeanField_ELBO(), optimizer=pyro.optim.Adam({"lr": 1e-2}))
    timing = fast.fast_path["compile_timing"]
    assert timing.startswith("median ") and " ms a compiled step, " in timing and timing.endswith(" ms uncompiled")
    if slower == "compiled":
        assert fast.fast_path["compiled"] == f"no: uncompiled steps were faster ({timing})"
        assert len(calls) == 3 + 4  # the warm-up calls and the timed compiled steps
    else:
        assert fast.fast_path["compiled"] == "yes, for batches of shapes ((32, 20),)"
    assert fast.step_loss == pytest.approx(plain.step_loss, rel=1e-5)
    assert_close_weights(fast_modules, plain_modules)


def test_without_an_analytic_kl_the_default_is_trace_elbo_with_the_same_draws():
    """A Student-t guide for a Normal prior has no registered KL: Monte Carlo ELBO, uncompiled."""

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.zeros(len(x)))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.StudentT(3.0, loc, 0.5))

    def run(**kwargs):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        history = train(model, guide, torch.linspace(-1, 1, 8), steps=20, batch_size=8, shuffle=False, progress=False, **kwargs)
        return history, pyro.param("loc").detach().clone()

    fast, fast_loc = run()
    plain, plain_loc = run(fast=False, loss=pyro.infer.Trace_ELBO(), optimizer=pyro.optim.Adam({"lr": 1e-3}))
    assert fast.fast_path["loss"] == "Trace_ELBO (site 'z': no analytic KL from StudentT to Normal)"
    assert fast.fast_path["compiled"] == "no: not the mean-field ELBO"
    assert fast.step_loss == pytest.approx(plain.step_loss, rel=1e-6)
    assert torch.allclose(fast_loc, plain_loc, atol=1e-7)


def test_a_step_after_validation_that_breaks_a_parameter_is_caught_as_a_nan_loss():
    """Normal(sqrt(w), 1) at x = 0 (12 points), SGD with lr 0.02 from w = 1: the gradient of the
    summed loss is 6, so w falls by 0.12 a step and turns negative after step 8 at the earliest:
    with validation off from step 10 on, sqrt(w) is NaN; the run stops, w is back where the last
    finite loss was computed, and Pyro's validation is on again."""
    seen = []

    def model(x):
        w = pyro.param("w", lambda: torch.tensor(1.0))
        seen.append(w.item())
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(w.sqrt(), 1.0), obs=x)

    pyro.clear_param_store()
    fast = FastPath(validate_steps=3)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step (\d+)") as info:
        train(model, lambda x: None, torch.zeros(12), steps=50, batch_size=12, optimizer=pyro.optim.SGD({"lr": 0.02}),
              progress=False, fast=fast)
    assert info.value.step > 3 and seen[-1] < 0  # after the validated steps, on a negative w
    assert pyro.param("w").item() == seen[-2] > 0
    assert pyro.infer.util.is_validation_enabled()


def test_a_failed_compilation_warns_and_trains_uncompiled(monkeypatch):
    def fail(self, *args, **kwargs):
        raise RuntimeError("not traceable\nmore lines")

    monkeypatch.setattr(JitTraceMeanField_ELBO, "differentiable_loss", fail)
    with pytest.warns(RuntimeWarning, match=r"could not be compiled \(not traceable\); training continues uncompiled"):
        fast_modules, fast = fit()
    plain_modules, plain = fit(fast=False, loss=pyro.infer.TraceMeanField_ELBO(), optimizer=pyro.optim.Adam({"lr": 1e-2}))
    assert fast.fast_path["compiled"] == "no: compiling failed (not traceable)"
    assert fast.step_loss == pytest.approx(plain.step_loss, rel=1e-5)
    assert_close_weights(fast_modules, plain_modules)


def test_each_switch_turns_its_choice_off():
    _, history = fit(steps=12, fast=FastPath(torch_optimizer=False, analytic_kl=False, validate_steps=None))
    assert history.fast_path["optimizer"] == "pyro.optim.Adam"
    assert history.fast_path["loss"] == "Trace_ELBO (switched off)"
    assert history.fast_path["validation"] == "on"
    _, history = fit(steps=12, fast=FastPath(compile=False))
    assert history.fast_path["compiled"] == "no: switched off"
    _, history = fit(steps=12)  # too short a run to pay for a compilation
    assert history.fast_path["compiled"] == "no: 2 steps left, fewer than min_compiled_steps=100"
    with pytest.raises(TypeError, match="fast must be a bool or a pyro_lvm.infer.FastPath, got str"):
        fit(steps=1, fast="yes")
    with pytest.raises(ValueError, match="FastPath.validate_steps must be a non-negative integer, got -1"):
        FastPath(validate_steps=-1)
    for name, bad in (("timed_steps", -1), ("timed_steps", 1.5), ("timed_steps", True), ("min_compiled_steps", None)):
        with pytest.raises(ValueError, match=f"FastPath.{name} must be a non-negative integer, got {bad!r}"):
            FastPath(**{name: bad})


def test_parameters_created_by_a_later_step_join_the_optimizer():
    """A parameter that first appears at step 3 is trained as pyro.optim.Adam would train it."""
    calls = []

    def model(x):
        calls.append(None)
        loc = pyro.param("loc", torch.tensor(0.0))
        if len(calls) > 3:
            loc = loc + pyro.param("shift", torch.tensor(0.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(loc, 1.0), obs=x)

    def run(**kwargs):
        pyro.clear_param_store()
        calls.clear()
        train(model, lambda x: None, torch.full((4,), 2.0), steps=10, batch_size=4, lr=0.1, progress=False, **kwargs)
        return pyro.param("loc").item(), pyro.param("shift").item()

    fast = run()
    plain = run(fast=False)
    assert fast == pytest.approx(plain, abs=1e-6) and fast[1] != 0.0


def test_resuming_the_default_equals_the_uninterrupted_run(tmp_path):
    full_modules, full = fit(steps=16, checkpoint=tmp_path / "full.pt")
    fit(steps=8, checkpoint=tmp_path / "part.pt")  # two whole epochs of 4 batches
    model, guide = vae(seed=99)
    history = train(model.model, guide, data(), steps=16, batch_size=32, lr=1e-2, progress=False,
                    checkpoint=tmp_path / "part.pt", resume=True)
    assert history.step_loss == full.step_loss
    assert_close_weights(full_modules, [model, guide], atol=0.0)
