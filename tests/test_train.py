"""The training loop: exact resume, atomic checkpoints, divergence, annealing, schedules, bad input."""

import math

import pyro
import pyro.distributions as dist
import pyro.infer
import pyro.optim
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pyro_lvm.data import dynamic_binarize, load_digits
from pyro_lvm.guides import AmortizedNormal
from pyro_lvm.infer import TrainingDiverged, apply_to_first, linear_warmup, load_weights, scale_latents, train
from pyro_lvm.infer import checkpoint as checkpoint_module
from pyro_lvm.models import DeepLatentGaussian


def digits(n=300):
    x, _ = load_digits("train")
    return x[:n].reshape(n, -1)


def vae(seed):
    pyro.set_rng_seed(seed)
    return DeepLatentGaussian(64, 3, (16,)), AmortizedNormal(64, 3, (16,))


def run(epochs, ckpt, resume=False, seed=0):
    pyro.clear_param_store()
    model, guide = vae(seed)
    optimizer = pyro.optim.ExponentialLR({"optimizer": torch.optim.Adam, "optim_args": {"lr": 1e-2}, "gamma": 0.9})
    pyro.set_rng_seed(123) if not resume else None
    history = train(
        model.model, guide, digits(), epochs=epochs, batch_size=64, optimizer=optimizer,
        batch_transform=apply_to_first(dynamic_binarize), val_data=dynamic_binarize(digits(50), torch.Generator().manual_seed(7)),
        checkpoint=ckpt, resume=resume, progress=False,
    )
    return model, guide, history


def assert_same_weights(modules, others):
    for a, b in zip(modules, others, strict=True):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(p, q), name


def test_resume_equals_uninterrupted(tmp_path):
    full_model, full_guide, full_history = run(4, tmp_path / "full.pt")
    part_history = run(2, tmp_path / "part.pt")[2]
    # a fresh process would build new modules with other initial values; resume must overwrite them all
    model, guide, history = run(4, tmp_path / "part.pt", resume=True, seed=99)
    assert_same_weights([full_model, full_guide], [model, guide])
    assert history.step_loss == full_history.step_loss
    assert [r["val_loss"] for r in history.epochs] == [r["val_loss"] for r in full_history.epochs]
    assert [r["lr"] for r in history.epochs] == pytest.approx([1e-2 * 0.9 ** (e + 1) for e in range(4)])
    # the inherited epochs keep their own timings, so the total covers all four epochs
    assert [r["seconds"] for r in history.epochs[:2]] == [r["seconds"] for r in part_history.epochs]
    assert history.train_seconds > part_history.train_seconds > 0


def test_load_weights_starts_a_new_run_from_a_checkpoint(tmp_path):
    trained_model, trained_guide, trained_history = run(2, tmp_path / "pre.pt")
    pyro.clear_param_store()
    model, guide = vae(99)
    pretrained = load_weights(tmp_path / "pre.pt", model.model, guide)
    assert_same_weights([trained_model, trained_guide], [model, guide])
    assert pretrained.step_loss == trained_history.step_loss
    # a new objective, optimizer and schedule from those weights: the first step's loss is the pretrained level
    history = train(model.model, guide, digits(), loss=pyro.infer.RenyiELBO(alpha=0.0, num_particles=2), epochs=1,
                    batch_size=64, lr=1e-3, batch_transform=apply_to_first(dynamic_binarize), progress=False)
    assert len(history.epochs) == 1 and history.epochs[0]["lr"] == 1e-3
    assert history.step_loss[0] < trained_history.step_loss[0] - 5.0


def test_load_weights_refuses_another_models_checkpoint(tmp_path):
    run(1, tmp_path / "pre.pt")
    pyro.set_rng_seed(0)
    with pytest.raises(ValueError, match="holds the weights of 2 modules, but this model and guide have 1"):
        load_weights(tmp_path / "pre.pt", DeepLatentGaussian(64, 3, (16,)).model, lambda x: None)
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_weights(tmp_path / "pre.pt", DeepLatentGaussian(64, 4, (16,)).model, AmortizedNormal(64, 4, (16,)))


def test_resume_restores_plain_pyro_params(tmp_path):
    """Parameters created with pyro.param (not owned by a module) are checkpointed too."""
    x = torch.randn(40) + 3.0

    def model(x):
        loc = pyro.param("loc", torch.tensor(0.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(loc, 1.0), obs=x)

    def guide(x):
        pass

    def fit(epochs, resume):
        pyro.clear_param_store()
        pyro.set_rng_seed(0) if not resume else None
        checkpoint = tmp_path / f"c{resume}.pt" if not resume else tmp_path / "cFalse.pt"
        train(model, guide, x, epochs=epochs, batch_size=8, lr=0.05, checkpoint=checkpoint, resume=resume, progress=False)
        return pyro.param("loc").item()

    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    train(model, guide, x, epochs=6, batch_size=8, lr=0.05, progress=False)
    uninterrupted = pyro.param("loc").item()
    fit(3, resume=False)
    assert fit(6, resume=True) == uninterrupted


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    checkpoint_module.atomic_save({"a": 1}, path)

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint_module.atomic_save({"a": 2}, path)
    monkeypatch.undo()
    assert torch.load(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left behind


def test_divergence_stops_with_step_and_last_finite_loss():
    x = torch.randn(64)

    def model(x):
        log_scale = pyro.param("log_scale", torch.tensor(0.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(0.0, log_scale.exp()), obs=x)

    def guide(x):
        pass

    with pytest.raises(TrainingDiverged, match=r"at step \d+ \(epoch \d+\); last finite loss per example: [-\d.e+]+"):
        train(model, guide, x, steps=50, batch_size=64, lr=1e3, progress=False,
              optimizer=pyro.optim.SGD({"lr": 1e3}))
    assert math.isfinite(pyro.param("log_scale").item())  # the non-finite step was not applied


def test_beta_scales_exactly_the_kl_term():
    """TraceMeanField_ELBO: loss = -log p(x|z) + beta * KL(q || p), with the same z draw."""
    x = torch.tensor([0.5, -1.0])

    def model(x):
        with pyro.plate("data", 2):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    q = dist.Normal(torch.tensor([0.3, 0.1]), torch.tensor([0.5, 2.0]))

    def guide(x):
        with pyro.plate("data", 2):
            pyro.sample("z", q)

    elbo = pyro.infer.TraceMeanField_ELBO()

    def loss(beta):
        pyro.set_rng_seed(5)
        return elbo.loss(scale_latents(beta)(model), scale_latents(beta)(guide), x)

    kl = torch.distributions.kl_divergence(q, dist.Normal(0.0, 1.0)).sum().item()
    assert loss(0.5) - loss(0.0) == pytest.approx(0.5 * kl, rel=1e-6)
    assert loss(1.0) - loss(0.0) == pytest.approx(kl, rel=1e-6)
    warm = linear_warmup(10)
    assert [warm(s) for s in (0, 5, 10, 20)] == [0.0, 0.5, 1.0, 1.0]


def test_steps_dataloader_and_validation():
    model, guide = vae(0)
    x = (digits(100) > 0.5).float()
    loader = DataLoader(TensorDataset(x), batch_size=30, shuffle=True)
    history = train(model.model, guide, loader, steps=10, val_data=x[:20], progress=False)
    assert len(history.step_loss) == 10
    assert history.epochs[-1]["step"] == 10
    assert history.epochs[-1]["val_loss"] > 0


@pytest.mark.parametrize(
    "data, kwargs, message",
    [
        (torch.zeros(0, 64), {"epochs": 1}, "data is empty"),
        (torch.full((4, 64), float("nan")), {"epochs": 1}, "NaN or infinite"),
        ((torch.zeros(4, 64), torch.zeros(3)), {"epochs": 1}, r"data\[1\] has shape \(3,\)"),
        (torch.zeros(4, 64), {"epochs": 1, "steps": 3}, "exactly one of epochs or steps"),
        (torch.zeros(4, 64), {"epochs": 0}, "epochs must be a positive integer"),
        (torch.zeros(4, 64), {"epochs": 1, "batch_size": 0}, "batch_size must be >= 1"),
        (torch.zeros(4, 64), {"epochs": 1, "resume": True}, "resume=True needs a checkpoint"),
        (torch.zeros(4, 63), {"epochs": 1}, r"must have shape \(N, 64\).*got \(4, 63\)"),
    ],
)
def test_bad_input_is_named(data, kwargs, message):
    model, guide = vae(0)
    with pytest.raises(ValueError, match=message):
        train(model.model, guide, data, progress=False, **kwargs)


def test_warns_when_a_module_story_bypasses_pyro():
    """A PyroModule method run outside PyroModule.__call__ never registers its parameters: say so."""
    from pyro.nn import PyroModule

    class Story(PyroModule):
        def __init__(self):
            super().__init__()
            self.loc = torch.nn.Parameter(torch.zeros(()))

        def model(self, x):  # not decorated, not forward: self.loc is a plain tensor here
            with pyro.plate("data", len(x)):
                pyro.sample("x", dist.Normal(self.loc, 1.0), obs=x)

        @pyro.nn.pyro_method
        def registered_model(self, x):
            with pyro.plate("data", len(x)):
                pyro.sample("x", dist.Normal(self.loc, 1.0), obs=x)

    story = Story()
    with pytest.warns(RuntimeWarning, match=r"Story \(e.g. 'loc'\) were not registered"):
        train(story.model, lambda x: None, torch.ones(8), steps=1, progress=False)
    import warnings as _warnings

    with _warnings.catch_warnings():
        _warnings.simplefilter("error", RuntimeWarning)
        train(story.registered_model, lambda x: None, torch.ones(8), steps=3, progress=False)
    assert story.loc.item() != 0.0


def test_history_plot_draws_the_smoothed_steps_and_the_validation_points():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pyro.clear_param_store()
    model, guide = vae(0)
    x = dynamic_binarize(digits(), torch.Generator().manual_seed(0))
    history = train(model.model, guide, x, epochs=2, batch_size=64, val_data=x[:50], progress=False)
    ax = history.plot(label="run")
    train_line, val_line = ax.get_lines()
    assert len(train_line.get_xdata()) == len(history.step_loss)  # 10 steps: windows of one
    assert list(val_line.get_xdata()) == [r["step"] for r in history.epochs]
    assert list(val_line.get_ydata()) == pytest.approx([r["val_loss"] for r in history.epochs])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["run: train (smoothed)", "run: validation"]
    plt.close(ax.figure)


def sqrt_model(x):
    w = pyro.param("w", lambda: torch.tensor(sqrt_model.w0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(w.sqrt(), 1.0), obs=x)


@pytest.mark.parametrize("validation", [True, False])
@pytest.mark.parametrize("w0", [1.0, 0.0])
def test_divergence_puts_back_the_parameters_of_the_last_finite_loss(validation, w0):
    """Normal(sqrt(w), 1), SGD with lr 1 on the summed loss of x = (0, .5, -.5, 1): from w = 1 the first
    update sends w to -0.5 (sqrt: NaN); from w = 0 the gradient is infinite and w becomes NaN or inf.
    Either way step 1 fails and w is back at w0, where the last finite loss was computed."""
    pyro.enable_validation(validation)
    sqrt_model.w0 = w0
    x = torch.tensor([0.0, 0.5, -0.5, 1.0])
    with pytest.raises(TrainingDiverged, match=r"at step 1 \(epoch 1\); last finite loss per example") as info:
        train(sqrt_model, lambda x: None, x, steps=5, batch_size=4, shuffle=False,
              optimizer=pyro.optim.SGD({"lr": 1.0}), progress=False)
    assert pyro.param("w").item() == w0
    closed_form = 0.5 * math.log(2 * math.pi) + 0.5 * ((x - math.sqrt(w0)) ** 2).mean().item()
    assert info.value.step == 1
    assert info.value.last_finite_loss == pytest.approx(closed_form, rel=1e-6)
    assert f"{info.value.last_finite_loss}" in str(info.value)
    assert "The parameters are back at the values that gave that loss" in str(info.value)
    if validation and w0 == 1.0:  # Pyro's own check fired: its message is kept, and chained
        assert "Expected parameter loc" in str(info.value)
        assert isinstance(info.value.__cause__, ValueError)


def test_a_model_error_on_the_first_step_is_not_called_divergence():
    def model(x):
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(torch.tensor(float("nan")), 1.0), obs=x)

    with pytest.raises(ValueError, match="Expected parameter loc"):
        train(model, lambda x: None, torch.zeros(4), steps=1, progress=False)


class TwoParts(pyro.nn.PyroModule):
    """A scalar parameter of its own and a plain nn.Linear child (registered through pyro.module)."""

    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(()))
        self.lin = torch.nn.Linear(1, 1)

    def forward(self, x):
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(self.loc + self.lin(x[:, None])[:, 0], 1.0), obs=x)


def test_a_second_model_of_the_same_class_trains_without_clearing_the_param_store():
    x = torch.linspace(-1.0, 3.0, 16)

    def fit():
        pyro.set_rng_seed(3)
        model = TwoParts()
        train(model, lambda x: None, x, steps=5, batch_size=8, lr=0.1, progress=False)
        return model

    reference = fit()  # the first model in a clean param store
    second = fit()  # the store still holds the first model's parameters under the same names
    assert_same_weights([reference], [second])
    assert second.loc.item() != 0.0
    pyro.clear_param_store()
    assert_same_weights([reference], [fit()])


def test_a_generator_is_refused_with_what_to_pass():
    model, guide = vae(0)
    batches = (b for b in digits(64).split(32))
    with pytest.raises(TypeError, match="data is a generator, an iterator that can be read only once.*DataLoader"):
        train(model.model, guide, batches, epochs=2, progress=False)


def test_a_numpy_array_trains_like_the_same_tensor():
    x = (digits(64) > 0.5).float()

    def fit(data):
        pyro.clear_param_store()
        model, guide = vae(0)
        pyro.set_rng_seed(1)
        return train(model.model, guide, data, steps=2, batch_size=32, progress=False).step_loss

    assert fit(x.numpy()) == fit(x)


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64])
def test_data_of_another_dtype_than_the_parameters_is_named(dtype):
    model, guide = vae(0)
    x = (digits(64) > 0.5).to(dtype)
    with pytest.raises(TypeError, match=rf"data has dtype {dtype}, but the parameters are torch.float32.*x.to\(torch.float32\)"):
        train(model.model, guide, x, steps=1, progress=False)
    with pytest.raises(TypeError, match=rf"data has dtype {dtype}"):
        train(model.model, guide, x.numpy(), steps=1, progress=False)


class Batches:
    """A re-iterable of batches with a length, like a DataLoader."""

    def __init__(self, *batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


@pytest.mark.parametrize(
    "data, val_data, message",
    [
        (DataLoader(TensorDataset(torch.zeros(0, 64)), batch_size=8), None, r"data has no batches \(len\(data\) == 0\)"),
        (torch.zeros(8, 64), DataLoader(TensorDataset(torch.zeros(0, 64)), batch_size=8), r"val_data has no batches"),
        (torch.zeros(8, 64), torch.zeros(0, 64), "val_data is empty"),
        (Batches(torch.zeros(4, 64), torch.zeros(0, 64)), None, r"data yielded an empty batch \(batch 1 has shape \(0, 64\)\)"),
    ],
)
def test_empty_data_is_named(data, val_data, message):
    model, guide = vae(0)
    with pytest.raises(ValueError, match=message):
        train(model.model, guide, data, val_data=val_data, epochs=1, progress=False)


def test_training_diverged_pickles_with_its_step_and_loss():
    import pickle

    error = pickle.loads(pickle.dumps(TrainingDiverged("loss became nan at step 3", 3, 1.5)))
    assert (str(error), error.step, error.last_finite_loss) == ("loss became nan at step 3", 3, 1.5)
