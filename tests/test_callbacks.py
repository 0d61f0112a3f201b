"""Callbacks of the training loop (early stopping, logging), the batch tuple of batch_transform, example ids."""

import csv
import math

import pyro
import pyro.distributions as dist
import pyro.optim
import pytest
import torch
from pyro import poutine
from sklearn.linear_model import LogisticRegression
from torch.utils.data import DataLoader, TensorDataset

from pyro_lvm.data import dynamic_binarize, load_digits
from pyro_lvm.guides import AmortizedNormal, LocalGuide
from pyro_lvm.infer import Callback, CSVLogger, EarlyStopping, LambdaCallback, apply_to_first, train
from pyro_lvm.models import DeepLatentGaussian

# A known loss curve: x ~ Normal(loc, 1), full-batch SGD on the summed loss of N = 10 training points of
# mean 3 with lr 0.02 moves loc by 0.2 * (3 - loc) per epoch: loc_t = 3 (1 - 0.8^t). The validation
# points have mean 1, so the validation loss falls until loc passes 1 (epoch index 1: loc = 1.08), then rises.
X_TRAIN = 3.0 + torch.linspace(-1.0, 1.0, 10)
X_VAL = 1.0 + torch.tensor([-0.5, 0.0, 0.5])


def shifted_normal(x):
    loc = pyro.param("loc", torch.tensor(0.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(loc, 1.0), obs=x)


def no_guide(x):
    pass


def closed_form_val_loss(loc):
    return 0.5 * math.log(2 * math.pi) + 0.5 * ((X_VAL - loc) ** 2).mean().item()


def fit_known_curve(epochs, callbacks=()):
    pyro.clear_param_store()
    history = train(shifted_normal, no_guide, X_TRAIN, val_data=X_VAL, epochs=epochs, batch_size=10, shuffle=False,
                    optimizer=pyro.optim.SGD({"lr": 0.02}), callbacks=list(callbacks), progress=False)
    return history, pyro.param("loc").item()


@pytest.mark.parametrize("patience", [1, 2, 3])
def test_early_stopping_stops_after_patience_epochs_without_improvement_and_restores_the_best(patience):
    history, loc = fit_known_curve(20, [EarlyStopping(patience=patience)])
    locs = [3.0 * (1 - 0.8 ** (t + 1)) for t in range(len(history.epochs))]
    assert [r["val_loss"] for r in history.epochs] == pytest.approx([closed_form_val_loss(m) for m in locs], rel=1e-5)
    # best at epoch 1; epochs 2 .. 1 + patience do not improve; the run ends there
    assert [r["epoch"] for r in history.epochs] == list(range(2 + patience))
    best = history.epochs[1]["val_loss"]
    assert history.stop_reason == f"EarlyStopping: val_loss did not improve on {best:.6g} (epoch 1) for {patience} checks"
    best_run, best_loc = fit_known_curve(2)  # a run of exactly the best epoch's length
    assert loc == best_loc == pytest.approx(1.08, rel=1e-6)
    assert best_run.stop_reason is None


def test_early_stopping_without_restoring_keeps_the_last_weights_and_runs_to_the_end_without_a_stop():
    _, loc = fit_known_curve(20, [EarlyStopping(patience=2, restore_best_weights=False)])
    assert loc == fit_known_curve(4)[1] == pytest.approx(3.0 * (1 - 0.8**4), rel=1e-6)
    history, _ = fit_known_curve(5, [EarlyStopping(monitor="train_loss", patience=2)])  # the training loss keeps falling
    assert len(history.epochs) == 5 and history.stop_reason is None


def test_early_stopping_on_a_value_another_callback_logs_with_mode_max():
    """Accuracy-like: -|loc - 1| peaks at epoch 1, as the validation loss bottoms out there."""
    closeness = LambdaCallback(on_epoch_end=lambda s: s.record.update(closeness=-abs(pyro.param("loc").item() - 1.0)))
    history, loc = fit_known_curve(20, [closeness, EarlyStopping(monitor="closeness", mode="max", patience=2)])
    assert len(history.epochs) == 4 and loc == fit_known_curve(2)[1]
    assert [r["closeness"] for r in history.epochs] == pytest.approx([-0.4, -0.08, -0.464, -0.7712], rel=1e-5)


class TwoParams(pyro.nn.PyroModule):
    """The known-curve story as a module (its loc is a module parameter) with a plain Pyro parameter too."""

    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.tensor(0.0))

    def forward(self, x):
        shift = pyro.param("shift", torch.tensor(0.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(self.loc + shift, 1.0), obs=x)


def test_resume_continues_early_stopping_exactly(tmp_path):
    """Adam takes loc + shift past the validation optimum 1 on its way to the training mean 3 (best at epoch 3);
    the first run is cut one check after the best epoch, while EarlyStopping counts."""

    def fit(epochs, checkpoint, resume=False):
        pyro.clear_param_store()
        model = TwoParams()
        if not resume:
            pyro.set_rng_seed(0)
        stopper = EarlyStopping(patience=2)
        history = train(model, no_guide, X_TRAIN, val_data=X_VAL, epochs=epochs, batch_size=5, optimizer=pyro.optim.Adam({"lr": 0.07}),
                        callbacks=[LambdaCallback(on_step_end=lambda s: None), stopper], checkpoint=checkpoint, resume=resume,
                        progress=False)
        return history, (model.loc.item(), pyro.param("shift").item()), stopper

    full, full_weights, full_stopper = fit(30, tmp_path / "full.pt")
    assert full.stop_reason is not None and len(full.epochs) < 30
    best = full_stopper.best_epoch
    assert best == 3 and len(full.epochs) == best + 3
    fit(best + 2, tmp_path / "part.pt")  # ends one check after the best epoch: wait 1 is in the checkpoint
    resumed, weights, stopper = fit(30, tmp_path / "part.pt", resume=True)
    assert resumed.step_loss == full.step_loss
    assert [r["val_loss"] for r in resumed.epochs] == [r["val_loss"] for r in full.epochs]
    assert resumed.stop_reason == full.stop_reason
    assert weights == full_weights and (stopper.best, stopper.best_epoch, stopper.wait) == (full_stopper.best, best, 2)
    # a stopped run stays stopped: resuming it trains no more and puts back the best weights again
    again, weights_again, _ = fit(30, tmp_path / "full.pt", resume=True)
    assert again.step_loss == full.step_loss and weights_again == full_weights
    message = r"holds the state of the callbacks \['1:EarlyStopping'\], but this run's callbacks with state are \[\]"
    with pytest.raises(ValueError, match=message):
        train(TwoParams(), no_guide, X_TRAIN, epochs=30, batch_size=5, checkpoint=tmp_path / "full.pt", resume=True, progress=False)


def digits(n=300):
    x, y = load_digits("train")
    return x[:n].reshape(n, -1), y[:n]


class Recorder(Callback):
    def __init__(self):
        self.calls, self.steps, self.epochs = [], [], []

    def on_train_start(self, state):
        self.calls.append("start")

    def on_step_end(self, state):
        self.steps.append((state.step, state.epoch, state.loss, state.batch[0].shape[0]))

    def on_epoch_end(self, state):
        self.calls.append("epoch")
        self.epochs.append(dict(state.record))

    def on_train_end(self, state):
        self.calls.append("end")


def test_a_callback_sees_every_step_and_epoch_once_with_the_numbers_of_the_history():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model, guide = DeepLatentGaussian(64, 3, (16,)), AmortizedNormal(64, 3, (16,))
    x = (digits()[0] > 0.5).float()
    recorder = Recorder()
    history = train(model.model, guide, x, steps=12, batch_size=64, val_data=x[:50], callbacks=[recorder], progress=False)
    # 300 rows in batches of 64: 5 steps per epoch (the last of 44 rows); 12 steps end mid-epoch 2
    assert [s[0] for s in recorder.steps] == list(range(1, 13))
    assert [s[1] for s in recorder.steps] == [0] * 5 + [1] * 5 + [2] * 2
    assert [s[2] for s in recorder.steps] == history.step_loss
    assert [s[3] for s in recorder.steps] == [64, 64, 64, 64, 44] * 2 + [64, 64]
    assert recorder.epochs == history.epochs and [r["step"] for r in history.epochs] == [5, 10, 12]
    assert recorder.calls == ["start", "epoch", "epoch", "epoch", "end"]


def test_one_call_with_callbacks_trains_exactly_like_the_same_epochs_without_them(tmp_path):
    """Logging a classifier's accuracy on the latent means, early stopping that never fires, a CSV log."""
    x_grey, labels = digits()
    x_val = dynamic_binarize(x_grey[:100], torch.Generator().manual_seed(1))

    def fit(callbacks):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        model, guide = DeepLatentGaussian(64, 3, (16,)), AmortizedNormal(64, 3, (16,))
        history = train(model.model, guide, x_grey, epochs=3, batch_size=64, batch_transform=apply_to_first(dynamic_binarize),
                        val_data=x_val, callbacks=callbacks(guide), progress=False)
        return history, [model, guide]

    def accuracy(guide):
        def log(state):
            with torch.no_grad(), torch.random.fork_rng():  # tracing the guide draws z: keep the run's random numbers
                means = poutine.trace(guide).get_trace(x_val).nodes["z"]["fn"].mean.numpy()
            classifier = LogisticRegression(max_iter=500).fit(means[:50], labels[:50].numpy())
            state.record["accuracy"] = classifier.score(means[50:], labels[50:100].numpy())

        return [LambdaCallback(on_epoch_end=log), EarlyStopping(patience=100, restore_best_weights=False), CSVLogger(tmp_path / "log.csv")]

    plain, plain_modules = fit(lambda guide: [])
    logged, logged_modules = fit(accuracy)
    assert logged.step_loss == plain.step_loss
    for a, b in zip(plain_modules, logged_modules, strict=True):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(p, q), name
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in logged.epochs) and "accuracy" not in plain.epochs[0]
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["accuracy"]) for r in rows] == [r["accuracy"] for r in logged.epochs]
    assert [float(r["val_loss"]) for r in rows] == [r["val_loss"] for r in logged.epochs]


def two_bernoullis(x, y, index=None):
    two_bernoullis.seen.append((x, y, index))
    p = pyro.param("p", torch.tensor(0.5), constraint=dist.constraints.unit_interval)
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Bernoulli(p).expand([len(x), 4]).to_event(1), obs=x)
        pyro.sample("y", dist.Bernoulli(p).expand([len(x), 2]).to_event(1), obs=y)


def test_batch_transform_receives_the_whole_batch_and_example_ids_name_the_rows():
    x, y = torch.rand(20, 4), torch.rand(20, 2)
    received = []

    def binarize_both(batch):
        received.append(batch)
        return tuple((t > 0.5).float() for t in batch)

    two_bernoullis.seen = []
    pyro.clear_param_store()
    train(two_bernoullis, lambda x, y, index=None: None, (x, y), epochs=2, batch_size=8, batch_transform=binarize_both,
          example_ids=True, progress=False)
    assert [tuple(t.shape[0] for t in b) for b in received] == [(8, 8), (8, 8), (4, 4)] * 2
    steps = two_bernoullis.seen[1:]  # the first call checks the guide's sites
    assert len(steps) == 6
    for (bx, by), (sx, sy, index) in zip(received, steps, strict=True):
        assert torch.equal(bx, x[index]) and torch.equal(by, y[index])  # the ids are the batch's rows
        assert torch.equal(sx, (x[index] > 0.5).float()) and torch.equal(sy, (y[index] > 0.5).float())
    assert sorted(torch.cat([s[2] for s in steps[:3]]).tolist()) == list(range(20))


def test_apply_to_first_keeps_the_other_tensors():
    x, ids = torch.rand(3, 2), torch.arange(3)
    out = apply_to_first(lambda t: 2 * t)((x, ids))
    assert isinstance(out, tuple) and torch.equal(out[0], 2 * x) and out[1] is ids


def test_example_ids_by_keyword_train_a_local_guide_like_positional_ids():
    x = (digits(40)[0] > 0.5).float()

    def fit(index_arg, data, **kwargs):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        model = DeepLatentGaussian(64, 2, (8,))
        guide = LocalGuide.initial(AmortizedNormal(64, 2, hidden_dims=()), 40, index_arg=index_arg)
        history = train(model.model, guide, data, epochs=2, batch_size=16, lr=0.05, progress=False, **kwargs)
        return history.step_loss, [p.detach().clone() for p in guide.params]

    by_keyword = fit("index", x, example_ids=True)
    positional = fit(1, (x, torch.arange(40)))
    assert by_keyword[0] == positional[0]
    assert all(torch.equal(a, b) for a, b in zip(by_keyword[1], positional[1], strict=True))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"callbacks": [lambda state: None]}, TypeError, r"callbacks\[0\] \(function\) has none of the methods.*LambdaCallback"),
        ({"callbacks": EarlyStopping(monitor="train_loss")}, TypeError, "callbacks must be a list of callbacks, got EarlyStopping"),
        ({"callbacks": [EarlyStopping()]}, ValueError, "EarlyStopping monitors 'val_loss', but train has no val_data"),
        ({"callbacks": [EarlyStopping(monitor="accuracy")]}, ValueError, r"monitors 'accuracy', which the epoch record lacks \(it has \["),
        ({"batch_transform": dynamic_binarize}, AttributeError, r"batch_transform receives the batch, a tuple.*apply_to_first\(fn\)"),
        ({"batch_transform": lambda batch: batch[0]}, TypeError, r"batch_transform returned a Tensor, but it receives the batch, a tuple"),
        ({"example_ids": 1}, TypeError, "example_ids must be a bool or a keyword name"),
        ({"example_ids": True, "model_kwargs": {"index": None}}, ValueError,
         "example_ids passes the ids as 'index', which model_kwargs also has"),
        ({"example_ids": True, "data": DataLoader(TensorDataset(torch.rand(8, 3)), batch_size=4)}, ValueError,
         "example_ids needs data as a tensor or a tuple of tensors"),
    ],
)
def test_bad_callbacks_transforms_and_ids_are_named(kwargs, error, message):
    data = kwargs.pop("data", torch.rand(8, 3))
    with pytest.raises(error, match=message):
        train(lambda x, index=None: None, lambda x, index=None: None, data, epochs=1, progress=False, **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"patience": 0}, "patience must be a positive integer, got 0"), ({"mode": "avg"}, "mode must be 'min' or 'max'"),
     ({"min_delta": -1.0}, "min_delta must be >= 0")],
)
def test_early_stopping_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EarlyStopping(**kwargs)
