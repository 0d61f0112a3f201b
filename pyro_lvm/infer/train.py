"""One stochastic-variational training loop for every model in pyro_lvm.

``train(model, guide, data, loss=..., ...)`` runs Pyro SVI steps over minibatches,
with any Pyro ELBO (or :class:`~pyro_lvm.infer.HardEM`), a learning-rate schedule,
KL annealing, periodic validation, a tqdm progress bar, atomic checkpoints that
``resume`` continues exactly, and a stop with a clear error when the loss diverges.

The model and guide are called as ``model(*batch, **model_kwargs)``, where ``batch``
is a tuple of tensors: the rows of ``data`` (a tensor or a tuple of equally long
tensors, shuffled each epoch) or the items of any iterable of batches such as a
``torch.utils.data.DataLoader``.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence

import pyro
import pyro.optim
import torch
from pyro import poutine
from pyro.infer.util import zero_grads
from tqdm.auto import tqdm

from pyro_lvm.guides.check import check_guide_sites
from pyro_lvm.infer.annealing import scale_latents
from pyro_lvm.infer.checkpoint import (
    atomic_save,
    capture_rng_state,
    param_store_state,
    restore_param_store,
    restore_rng_state,
)

__all__ = ["train", "load_weights", "History", "TrainingDiverged", "svi_step", "as_batch_source"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; parameters are left at their last finite values."""


@dataclass
class History:
    """What a training run recorded.

    :ivar step_loss: training loss per example (negative ELBO, nats) at every step.
    :ivar epochs: one record per epoch: ``epoch``, ``step``, ``train_loss`` (mean per example),
        ``val_loss`` (mean per example, or None), ``lr``, ``beta``, ``seconds`` (wall clock of the epoch).
    """

    step_loss: list[float] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def train_seconds(self) -> float:
        """Wall-clock seconds of all recorded epochs, the epochs a resumed run inherited included."""
        return sum(record["seconds"] for record in self.epochs)

    def plot(self, ax=None, label: str | None = None, ylabel: str = "loss per example (nats)"):
        """Draw the training loss against the step (per-step losses averaged over about 100
        windows) and the validation loss at the end of each epoch that has one; returns the
        matplotlib axes (a new figure's when ``ax`` is None). ``label`` prefixes the legend
        entries, so several runs can share one axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        prefix = f"{label}: " if label else ""
        steps = torch.tensor(self.step_loss)
        window = max(1, len(steps) // 100)
        smooth = steps[: len(steps) // window * window].view(-1, window).mean(1)
        (line,) = ax.plot((torch.arange(len(smooth)) + 1) * window, smooth, label=f"{prefix}train (smoothed)")
        val = [(r["step"], r["val_loss"]) for r in self.epochs if r["val_loss"] is not None]
        if val:
            ax.plot(*zip(*val), "o--", color=line.get_color(), label=f"{prefix}validation")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        return ax


class _TensorBatches:
    """Minibatches of the rows of equally long tensors, reshuffled each epoch."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, shuffle: bool) -> None:
        self.tensors, self.batch_size, self.shuffle = tensors, batch_size, shuffle
        self.n = tensors[0].shape[0]

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        device = self.tensors[0].device
        order = torch.randperm(self.n).to(device) if self.shuffle else torch.arange(self.n, device=device)
        for start in range(0, self.n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield tuple(t[idx] for t in self.tensors)


class _MovedBatches:
    """Batches of an iterable (e.g. a DataLoader), as tuples of tensors on ``device``."""

    def __init__(self, batches: Iterable, device: torch.device) -> None:
        self.batches, self.device = batches, device

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            batch = batch if isinstance(batch, (tuple, list)) else (batch,)
            yield tuple(b.to(self.device) if torch.is_tensor(b) else b for b in batch)


def _check_tensors(tensors: Sequence, name: str) -> tuple[torch.Tensor, ...]:
    tensors = tuple(torch.as_tensor(t) for t in tensors)
    if not tensors:
        raise ValueError(f"{name} is an empty tuple; expected a tensor or a tuple of tensors")
    n = tensors[0].shape[0] if tensors[0].dim() > 0 else 0
    if n == 0:
        raise ValueError(f"{name} is empty: expected at least one example along dim 0, got shape {tuple(tensors[0].shape)}")
    for i, t in enumerate(tensors):
        if t.dim() == 0 or t.shape[0] != n:
            raise ValueError(f"{name}[{i}] has shape {tuple(t.shape)}; every tensor in {name} needs {n} rows along dim 0")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"{name}[{i}] contains NaN or infinite values; expected finite data")
    return tensors


def as_batch_source(data, batch_size: int, shuffle: bool, device: torch.device, name: str = "data"):
    """Turn ``data`` (tensor, tuple of tensors, or iterable of batches) into re-iterable batches on ``device``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if torch.is_tensor(data):
        data = (data,)
    if isinstance(data, (tuple, list)):
        tensors = tuple(t.to(device) for t in _check_tensors(data, name))
        return _TensorBatches(tensors, batch_size, shuffle)
    if isinstance(data, Iterable):
        return _MovedBatches(data, device)
    raise TypeError(f"{name} must be a tensor, a tuple of tensors or an iterable of batches, got {type(data).__name__}")


def _modules_of(*fns) -> list[torch.nn.Module]:
    """The distinct nn.Modules behind callables (bound methods count as their module)."""
    found: list[torch.nn.Module] = []
    for fn in fns:
        owner = getattr(fn, "__self__", fn)
        if isinstance(owner, torch.nn.Module) and all(owner is not m for m in found):
            found.append(owner)
    return found


def _restore_weights(state: dict, modules: list[torch.nn.Module], checkpoint) -> None:
    """Put a checkpoint's module state_dicts and non-module Pyro parameters back."""
    if len(state["modules"]) != len(modules):
        raise ValueError(
            f"checkpoint={os.fspath(checkpoint)!r} holds the weights of {len(state['modules'])} modules, "
            f"but this model and guide have {len(modules)}: it comes from another model or guide"
        )
    for m, sd in zip(modules, state["modules"]):
        m.load_state_dict(sd)
    restore_param_store(state["param_store"])


def load_weights(checkpoint: str | os.PathLike, model, guide, device=None) -> History:
    """Start ``model`` and ``guide`` from the weights in a :func:`train` checkpoint, and take
    nothing else from it: no optimizer state, random state or epoch count. A run begun after this
    has its own objective and schedule, e.g. IWAE training that continues ELBO pretraining
    (:func:`train`'s ``resume`` is for continuing the same run).

    :param model, guide: callables backed by the same modules as the run that wrote the checkpoint.
    :returns: the checkpoint's :class:`History`, what the weights went through.
    :raises ValueError: when the checkpoint holds another number of modules.
    :raises RuntimeError: (from ``load_state_dict``) when a module's parameters differ in name or shape.
    """
    state = torch.load(checkpoint, map_location=device or "cpu", weights_only=False)
    _restore_weights(state, _modules_of(model, guide), checkpoint)
    return History(**state["history"])


def svi_step(model, guide, loss, optimizer, batch: tuple, kwargs: dict) -> float:
    """One SVI step, like :meth:`pyro.infer.SVI.step`, that refuses to apply a non-finite loss.

    :param optimizer: a ``pyro.optim`` optimizer (one torch optimizer per parameter, the
        parameters found by tracing the step) or a ``torch.optim.Optimizer`` that already holds
        every trained parameter (e.g. of the model's and guide's modules): one update for all
        parameters and no parameter tracing, the faster path for small batches. Its parameters
        must still be Pyro parameters (of a ``PyroModule``, ``pyro.module`` or ``pyro.param``):
        Pyro's ELBOs differentiate only when the trace has parameter sites.
    :returns: the loss (negative ELBO summed over the batch).
    :raises FloatingPointError: when the loss is NaN or infinite (nothing is updated).
    """
    if isinstance(optimizer, torch.optim.Optimizer):
        value = float(loss.loss_and_grads(model, guide, *batch, **kwargs))
        if math.isfinite(value):
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(value):
            raise FloatingPointError(value)
        return value
    with poutine.trace(param_only=True) as param_capture:
        value = loss.loss_and_grads(model, guide, *batch, **kwargs)
    params = {site["value"].unconstrained() for site in param_capture.trace.nodes.values()}
    value = float(value)
    if not math.isfinite(value):
        zero_grads(params)
        raise FloatingPointError(value)
    optimizer(params)
    zero_grads(params)
    return value


def _warn_unregistered_parameters(modules: list[torch.nn.Module]) -> None:
    """Warn about module parameters that a step never registered with Pyro (so SVI cannot train them).

    The usual cause: a PyroModule's story run as a plain method, outside ``PyroModule.__call__``.
    """
    registered = {id(p) for _, p in pyro.get_param_store().named_parameters()}
    for m in modules:
        missing = [name for name, p in m.named_parameters() if p.requires_grad and id(p) not in registered]
        if missing:
            warnings.warn(
                f"{len(missing)} parameter(s) of {type(m).__name__} (e.g. {missing[0]!r}) were not registered "
                "with Pyro during the first step, so they are not trained. Call the PyroModule itself (its forward "
                "is the story) or decorate the method with @pyro.nn.pyro_method.",
                RuntimeWarning,
                stacklevel=3,
            )


def _current_lr(optimizer) -> float | None:
    if isinstance(optimizer, torch.optim.Optimizer):
        return float(optimizer.param_groups[0]["lr"])
    for obj in optimizer.optim_objs.values():
        opt = getattr(obj, "optimizer", obj)
        return float(opt.param_groups[0]["lr"])
    return None


def _batch_size_of(batch: tuple) -> int:
    return int(batch[0].shape[0]) if torch.is_tensor(batch[0]) and batch[0].dim() > 0 else 1


@torch.no_grad()
def _validation_loss(model, guide, loss, batches, kwargs: dict) -> float:
    total, count = 0.0, 0
    for batch in batches:
        total += float(loss.loss(model, guide, *batch, **kwargs))
        count += _batch_size_of(batch)
    return total / count


def train(
    model: Callable,
    guide: Callable,
    data,
    *,
    loss: pyro.infer.ELBO | None = None,
    optimizer: pyro.optim.PyroOptim | torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int = 128,
    shuffle: bool = True,
    device: str | torch.device | None = None,
    beta: float | Callable[[int], float] = 1.0,
    batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    val_data=None,
    val_every: int = 1,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    progress: bool = True,
    model_kwargs: dict | None = None,
) -> History:
    """Train ``model`` and ``guide`` by stochastic variational inference.

    :param model: the generative story, called as ``model(*batch, **model_kwargs)``.
    :param guide: ``q(z | x)`` with the same signature (``pyro.infer.autoguide.AutoGuide``,
        a :mod:`pyro_lvm.guides` family, or a function; a no-op for fully enumerated models).
    :param data: a tensor (N, ...), a tuple of tensors with N rows each, or an iterable of
        batches (a ``DataLoader``). Tensors are moved to ``device`` once and reshuffled each epoch.
    :param loss: any Pyro ELBO (default ``Trace_ELBO()``) or :class:`~pyro_lvm.infer.HardEM`.
    :param optimizer: a ``pyro.optim`` optimizer; a ``pyro.optim`` scheduler
        (``PyroLRScheduler``) is stepped once per epoch. Default ``pyro.optim.Adam({"lr": lr})``.
        A ``torch.optim.Optimizer`` over all trained parameters (e.g.
        ``torch.optim.Adam([*model_module.parameters(), *guide.parameters()])``) also works
        and is faster for small batches (see :func:`svi_step`).
    :param epochs: passes over ``data``. Give ``epochs`` or ``steps``.
    :param steps: total optimizer steps (training stops mid-epoch when reached).
    :param device: where batches and the modules behind ``model``/``guide`` live; default: the
        device of the model's parameters, else CPU.
    :param beta: KL weight: a number or a function of the step, e.g.
        :func:`~pyro_lvm.infer.linear_warmup`; applied by scaling every latent site in model and guide.
    :param batch_transform: applied to the first tensor of each training batch
        (e.g. :func:`~pyro_lvm.data.dynamic_binarize`).
    :param val_data: held-out data in the same form as ``data``; its mean loss per example is
        recorded every ``val_every`` epochs (the ``batch_transform`` is not applied).
    :param checkpoint: file to write atomically every ``checkpoint_every`` epochs and at the end.
    :param resume: continue from ``checkpoint`` if it exists (same trajectory as an uninterrupted run).
    :param progress: show a tqdm progress bar.
    :returns: the :class:`History` (also in the checkpoint).
    :raises TrainingDiverged: when a step's loss is NaN or infinite.
    """
    if (epochs is None) == (steps is None):
        raise ValueError(f"give exactly one of epochs or steps (got epochs={epochs}, steps={steps})")
    for name, value in (("epochs", epochs), ("steps", steps), ("val_every", val_every), ("checkpoint_every", checkpoint_every)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    loss = pyro.infer.Trace_ELBO() if loss is None else loss
    optimizer = pyro.optim.Adam({"lr": lr}) if optimizer is None else optimizer
    model_kwargs = model_kwargs or {}
    modules = _modules_of(model, guide)
    if device is None:
        params = [p for m in modules for p in m.parameters()]
        device = params[0].device if params else torch.device("cpu")
    device = torch.device(device)
    for m in modules:
        m.to(device)

    batches = as_batch_source(data, batch_size, shuffle, device)
    val_batches = None if val_data is None else as_batch_source(val_data, batch_size, False, device, "val_data")
    n_batches = len(batches)
    total_epochs = epochs if epochs is not None else math.ceil(steps / n_batches)
    total_steps = steps if steps is not None else total_epochs * n_batches

    history, step, start_epoch = History(), 0, 0
    if resume and checkpoint is not None and os.path.exists(checkpoint):
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        _restore_weights(state, modules, checkpoint)
        if isinstance(optimizer, torch.optim.Optimizer):
            optimizer.load_state_dict(state["optimizer"])
        else:
            optimizer.set_state(state["optimizer"])
        restore_rng_state(state["rng"])
        history = History(**state["history"])
        step, start_epoch = state["step"], state["epoch"]

    def save() -> None:
        atomic_save(
            {
                "modules": [m.state_dict() for m in modules],
                "param_store": param_store_state(modules),
                "optimizer": optimizer.state_dict() if isinstance(optimizer, torch.optim.Optimizer) else optimizer.get_state(),
                "rng": capture_rng_state(),
                "history": history.to_dict(),
                "step": step,
                "epoch": epoch + 1,
            },
            checkpoint,
        )

    scaled = (1.0, model, guide)  # (beta, model, guide) as last scaled
    bar = tqdm(total=total_steps, initial=step, disable=not progress, desc="train", unit="step", dynamic_ncols=True)
    try:
        for epoch in range(start_epoch, total_epochs):
            if step >= total_steps:
                break
            t0, epoch_total, epoch_count = time.perf_counter(), 0.0, 0
            for batch in batches:
                if batch_transform is not None:
                    batch = (batch_transform(batch[0]),) + tuple(batch[1:])
                b = beta(step) if callable(beta) else beta
                if scaled[0] != b:  # same callables while beta stays put (a compiled ELBO keys its trace on them)
                    scaled = (b, model, guide) if b == 1.0 else (b, scale_latents(b)(model), scale_latents(b)(guide))
                m, g = scaled[1:]
                if not history.step_loss:  # a guide for the wrong sites fails here, naming the model's sites
                    check_guide_sites(m, g, *batch, **model_kwargs)
                try:
                    value = svi_step(m, g, loss, optimizer, batch, model_kwargs)
                except FloatingPointError as e:
                    last = next((v for v in reversed(history.step_loss) if math.isfinite(v)), None)
                    raise TrainingDiverged(
                        f"loss became {e.args[0]} at step {step} (epoch {epoch}); last finite loss per example: "
                        f"{last}. Lower the learning rate, check the data, or warm up beta."
                    ) from None
                if not history.step_loss:
                    _warn_unregistered_parameters(modules)
                n = _batch_size_of(batch)
                history.step_loss.append(value / n)
                epoch_total, epoch_count, step = epoch_total + value, epoch_count + n, step + 1
                bar.update(1)
                if step % 10 == 0 or step == total_steps:
                    bar.set_postfix(epoch=epoch, loss=f"{value / n:.4g}")
                if step >= total_steps:
                    break
            if isinstance(optimizer, pyro.optim.PyroLRScheduler):
                optimizer.step()
            record = {
                "epoch": epoch,
                "step": step,
                "train_loss": epoch_total / epoch_count,
                "val_loss": None,
                "lr": _current_lr(optimizer),
                "beta": beta(step) if callable(beta) else beta,
                "seconds": time.perf_counter() - t0,
            }
            if val_batches is not None and ((epoch + 1) % val_every == 0 or epoch + 1 == total_epochs):
                record["val_loss"] = _validation_loss(model, guide, loss, val_batches, model_kwargs)
                bar.set_postfix(epoch=epoch, loss=f"{record['train_loss']:.4g}", val=f"{record['val_loss']:.4g}")
            history.epochs.append(record)
            if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0 or step >= total_steps):
                save()
    finally:
        bar.close()
    return history
