"""Callbacks: code of one's own that :func:`~pyro_lvm.infer.train` runs at the end of each step and epoch.

A callback is any object with some of these methods, each called with the run's :class:`TrainState`
(the names are PyTorch Lightning's and Keras'):

- ``on_train_start(state)``: once per :func:`~pyro_lvm.infer.train` call, before the first step
  (after a ``resume`` has put the checkpoint back);
- ``on_step_end(state)``: after every optimizer step (``state.step`` steps done, ``state.loss`` its
  loss per example, ``state.batch`` its batch);
- ``on_epoch_end(state)``: after every epoch, once its record (``state.record``: train and
  validation loss, ...) is in the history and before the checkpoint is written; a callback may add
  its own values to the record (e.g. ``state.record["accuracy"] = ...``), which the history, the
  checkpoint and later callbacks see;
- ``on_train_end(state)``: once per call, after the last epoch (not when training fails).

Callbacks run in the order of the list. A callback that draws random numbers (e.g. traces a guide)
changes the rest of the run unless it draws inside ``torch.random.fork_rng()``. Return values are ignored: a callback stops training with
:meth:`TrainState.request_stop`, and :attr:`History.stop_reason <pyro_lvm.infer.train.History>`
records why. A callback that holds state (:class:`EarlyStopping`'s best value and counter) has
``state_dict()`` and ``load_state_dict(state)``; that state is written into each checkpoint, so
``resume`` continues the run exactly. Subclass :class:`Callback`, or write any class with the methods
you need, or wrap functions in :class:`LambdaCallback`.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyro
import torch

from pyro_lvm.infer.checkpoint import param_store_state

if TYPE_CHECKING:
    from pyro_lvm.infer.train import History

__all__ = ["Callback", "CSVLogger", "EarlyStopping", "LambdaCallback", "TrainState"]

HOOKS = ("on_train_start", "on_step_end", "on_epoch_end", "on_train_end")


@dataclass
class TrainState:
    """What a callback sees of a :func:`~pyro_lvm.infer.train` run; one object, updated as the run goes.

    :ivar model, guide: the callables being trained (as passed to ``train``).
    :ivar modules: the ``nn.Module``\\ s behind them, whose parameters (with the param store's
        other entries) are the trained weights.
    :ivar optimizer: the run's optimizer (its state lives on across epochs).
    :ivar history: the :class:`~pyro_lvm.infer.train.History` so far (inherited epochs of a resumed run included).
    :ivar step: optimizer steps done so far.
    :ivar epoch: the current epoch, from 0.
    :ivar total_steps, total_epochs: where the run ends unless stopped earlier.
    :ivar validation: whether the run computes a validation loss (``val_data`` was given).
    :ivar loss: the last step's loss per example (nats), or None before the first step of this call.
    :ivar batch: the last step's batch, a tuple of tensors after ``batch_transform`` (None before it).
    :ivar stop_reason: None while the run goes on; see :meth:`request_stop`.
    """

    model: Callable
    guide: Callable
    modules: list[torch.nn.Module]
    optimizer: Any
    history: History
    step: int
    epoch: int
    total_steps: int
    total_epochs: int
    validation: bool
    loss: float | None = None
    batch: tuple | None = None
    stop_reason: str | None = None

    @property
    def record(self) -> dict:
        """The last epoch's record (``epoch``, ``step``, ``train_loss``, ``val_loss``, ``lr``, ...)."""
        return self.history.epochs[-1]

    def request_stop(self, reason: str) -> None:
        """End training after this step or epoch; ``reason`` becomes ``History.stop_reason``.

        A stop during an epoch ends it there (its record covers the steps done). The first request
        of a step or epoch is kept.
        """
        if self.stop_reason is None:
            self.stop_reason = reason


class Callback:
    """A callback that does nothing: subclass it and override the hooks you need (see the module's docs)."""

    def on_train_start(self, state: TrainState) -> None:
        pass

    def on_step_end(self, state: TrainState) -> None:
        pass

    def on_epoch_end(self, state: TrainState) -> None:
        pass

    def on_train_end(self, state: TrainState) -> None:
        pass


class LambdaCallback(Callback):
    """A callback made of functions of the :class:`TrainState`, for a quick log, plot or metric.

    Example, a classifier's accuracy on the latent means, logged into each epoch's record::

        def accuracy(state):
            state.record["accuracy"] = classifier.fit(means(x), y).score(means(x_val), y_val)

        train(model, guide, x, epochs=20, callbacks=[LambdaCallback(on_epoch_end=accuracy)])
    """

    def __init__(
        self,
        on_train_start: Callable[[TrainState], Any] | None = None,
        on_step_end: Callable[[TrainState], Any] | None = None,
        on_epoch_end: Callable[[TrainState], Any] | None = None,
        on_train_end: Callable[[TrainState], Any] | None = None,
    ) -> None:
        for name, fn in zip(HOOKS, (on_train_start, on_step_end, on_epoch_end, on_train_end)):
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"{name} must be a function of the TrainState, got {type(fn).__name__}")
                setattr(self, name, fn)


class CSVLogger(Callback):
    """Writes the epoch records of the history (values other callbacks added included) to a CSV file.

    The whole file is rewritten at each epoch's end, one row per epoch and one column per key in
    the order keys first appear, so a resumed run's file holds every epoch and a key added later
    leaves earlier rows empty.

    :param path: the CSV file (its folder is created).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)

    def on_epoch_end(self, state: TrainState) -> None:
        fields = list(dict.fromkeys(key for record in state.history.epochs for key in record))
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(state.history.epochs)


def _weights(modules: list[torch.nn.Module]) -> dict:
    """A copy of the trained weights: the modules' state_dicts and the param store's other entries."""
    return {
        "modules": [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules],
        "param_store": param_store_state(modules),
    }


@torch.no_grad()
def _put_back(weights: dict, modules: list[torch.nn.Module]) -> None:
    """Copy ``weights`` into the modules and the param store, in place (the optimizer keeps its tensors)."""
    for m, sd in zip(modules, weights["modules"], strict=True):
        m.load_state_dict(sd)
    stored = pyro.get_param_store().get_state()["params"]  # unconstrained values, the store's own tensors
    for name, value in weights["param_store"]["params"].items():
        stored[name].copy_(value)


class EarlyStopping(Callback):
    """Stop training when a monitored value of the epoch records has stopped improving.

    :param monitor: the key of the epoch record to watch: ``"val_loss"`` (needs ``val_data``),
        ``"train_loss"``, or a value an earlier callback adds to the record. Epochs without a value
        (no validation that epoch, with ``val_every > 1``) are not checks.
    :param patience: how many checks in a row without improvement stop the run.
    :param min_delta: an improvement is a change beyond ``min_delta`` in the right direction.
    :param mode: ``"min"`` (losses) or ``"max"`` (e.g. accuracy).
    :param restore_best_weights: at the end of training (stopped or not), put back the weights of
        the best check's epoch; the run's checkpoint keeps the last weights, so ``resume`` continues
        from there.

    Its state (best value, its epoch and weights, the checks since) is part of the checkpoint.
    A non-finite value is never an improvement.
    """

    def __init__(
        self, monitor: str = "val_loss", patience: int = 3, min_delta: float = 0.0, mode: str = "min", restore_best_weights: bool = True
    ) -> None:
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be a positive integer, got {patience!r}")
        if not min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.patience, self.min_delta, self.mode = monitor, patience, min_delta, mode
        self.restore_best_weights = restore_best_weights
        self.best, self.best_epoch, self.wait, self.best_weights = math.inf if mode == "min" else -math.inf, None, 0, None

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.wait, self.best_weights = state["best"], state["best_epoch"], state["wait"], state["best_weights"]

    def on_train_start(self, state: TrainState) -> None:
        if self.monitor == "val_loss" and not state.validation:
            raise ValueError("EarlyStopping monitors 'val_loss', but train has no val_data: pass val_data, or monitor='train_loss'")

    def _improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def on_epoch_end(self, state: TrainState) -> None:
        if self.monitor not in state.record:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which the epoch record lacks (it has {sorted(state.record)})")
        value = state.record[self.monitor]
        if value is None:
            return
        if self._improves(value):
            self.best, self.best_epoch, self.wait = float(value), state.epoch, 0
            if self.restore_best_weights:
                self.best_weights = _weights(state.modules)
            return
        self.wait += 1
        if self.wait >= self.patience:
            state.request_stop(
                f"EarlyStopping: {self.monitor} did not improve on {self.best:.6g} (epoch {self.best_epoch}) "
                f"for {self.wait} checks"
            )

    def on_train_end(self, state: TrainState) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            _put_back(self.best_weights, state.modules)
