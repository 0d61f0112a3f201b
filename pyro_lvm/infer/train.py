"""One stochastic-variational training loop for every model in pyro_lvm.

``train(model, guide, data, loss=..., ...)`` runs Pyro SVI steps over minibatches,
with any Pyro ELBO (or :class:`~pyro_lvm.infer.HardEM`), a learning-rate schedule,
KL annealing, periodic validation, callbacks at the end of each step and epoch
(:mod:`pyro_lvm.infer.callbacks`: early stopping, logging), a tqdm progress bar,
atomic checkpoints that ``resume`` continues exactly, and a stop with a clear error
when the loss diverges.

The model and guide are called as ``model(*batch, **model_kwargs)``, where ``batch``
is a tuple of tensors: the rows of ``data`` (a tensor or a tuple of equally long
tensors, shuffled each epoch) or the items of any iterable of batches such as a
``torch.utils.data.DataLoader``; with ``example_ids=True`` also ``index=``, the
batch's row numbers in ``data``.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyro
import pyro.optim
import torch
from pyro import poutine
from pyro.infer.util import zero_grads
from pyro.nn import PyroModule
from pyro.params.param_store import param_with_module_name
from tqdm.auto import tqdm

from pyro_lvm.guides.check import check_guide_sites, check_trace_sites, guide_and_model_traces
from pyro_lvm.infer.annealing import scale_latents
from pyro_lvm.infer.callbacks import HOOKS, TrainState
from pyro_lvm.infer.checkpoint import (
    atomic_save,
    capture_rng_state,
    check_writable,
    load_checkpoint,
    param_store_state,
    restore_param_store,
    restore_rng_state,
)
from pyro_lvm.infer.distributed import Ranks, current_ranks
from pyro_lvm.infer.fast_path import DefaultObjective, FastPath, FirstStepAdam

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["train", "load_weights", "apply_to_first", "History", "TrainingDiverged", "ParamSnapshot", "svi_step", "as_batch_source"]

_WEIGHT_KEYS = ("modules", "param_store", "history")
_TRANSFORM_CONTRACT = (
    "receives the batch, a tuple of tensors, and must return a tuple; for a function of the first tensor pass apply_to_first(fn)"
)
_RUN_KEYS = _WEIGHT_KEYS + ("optimizer", "rng", "step", "epoch")


class TrainingDiverged(RuntimeError):
    """The loss, or a distribution parameter Pyro validates, became NaN or infinite (or left its support).

    :func:`train` leaves the trained parameters at their last finite values: the values at which
    ``last_finite_loss`` was computed, i.e. from before the update that led to the failure (an
    update from a finite loss may still produce NaN parameters, or parameters whose next loss is
    not finite). The optimizer's state (e.g. Adam's moments) is not put back.

    :ivar step: the step whose loss could not be computed.
    :ivar last_finite_loss: the last finite loss per example (None when no step had one).
    """

    def __init__(self, message: str, step: int, last_finite_loss: float | None) -> None:
        super().__init__(message)
        self.step, self.last_finite_loss = step, last_finite_loss

    def __reduce__(self):  # pickled whole, e.g. from a worker process
        return type(self), (self.args[0], self.step, self.last_finite_loss)


class ParamSnapshot:
    """A copy of the parameters one step is about to update, taken by :func:`svi_step` after a
    finite loss and before the update, into buffers reused while the parameters stay the same."""

    def __init__(self) -> None:
        self.copies: dict[torch.Tensor, torch.Tensor] = {}

    @torch.no_grad()
    def take(self, params: Iterable[torch.Tensor]) -> None:
        params = list(params)
        if len(params) != len(self.copies) or any(p not in self.copies for p in params):
            self.copies = {p: p.detach().clone() for p in params}
            return
        for p, copy in self.copies.items():
            copy.copy_(p)

    @torch.no_grad()
    def restore(self) -> bool:
        """Put the copied values back into the parameters (in place: optimizers keep them);
        returns whether there was a copy to put back."""
        for p, copy in self.copies.items():
            p.copy_(copy)
        return bool(self.copies)


@dataclass
class History:
    """What a training run recorded.

    :ivar step_loss: training loss per example (negative ELBO, nats) at every step.
    :ivar epochs: one record per epoch: ``epoch``, ``step``, ``train_loss`` (mean per example),
        ``val_loss`` (mean per example, or None), ``lr``, ``beta``, ``seconds`` (wall clock of the epoch),
        and what callbacks added.
    :ivar stop_reason: why a callback stopped the run early (e.g. :class:`~pyro_lvm.infer.EarlyStopping`'s
        message), or None when it ran the epochs or steps asked for.
    :ivar fast_path: what the last ``train`` call ran (:mod:`pyro_lvm.infer.fast_path`): ``switches``
        (its :class:`~pyro_lvm.infer.FastPath`), ``optimizer``, ``loss``, ``validation``, ``compiled``,
        ``compile_timing`` (the median compiled and uncompiled step times that decided whether the
        compiled ELBO ran on) and ``uncompiled_steps`` (steps whose batch shapes differed from the
        compiled ones).
    """

    step_loss: list[float] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    stop_reason: str | None = None
    fast_path: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def train_seconds(self) -> float:
        """Wall-clock seconds of all recorded epochs, the epochs a resumed run inherited included."""
        return sum(record["seconds"] for record in self.epochs)

    def plot(self, ax: Axes | None = None, label: str | None = None, ylabel: str = "loss per example (nats)") -> Axes:
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

    def __init__(self, batches: Iterable, device: torch.device, name: str) -> None:
        self.batches, self.device, self.name = batches, device, name

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for i, batch in enumerate(self.batches):
            batch = batch if isinstance(batch, (tuple, list)) else (batch,)
            if torch.is_tensor(batch[0]) and batch[0].dim() > 0 and batch[0].shape[0] == 0:
                raise ValueError(
                    f"{self.name} yielded an empty batch (batch {i} has shape {tuple(batch[0].shape)}); "
                    "expected at least one example per batch"
                )
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


def as_batch_source(
    data: torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray] | Iterable,
    batch_size: int,
    shuffle: bool,
    device: torch.device,
    name: str = "data",
) -> Iterable[tuple]:
    """Turn ``data`` into re-iterable batches on ``device``.

    ``data`` is a tensor or NumPy array (converted with ``torch.as_tensor``, dtype kept), a tuple
    or list of them with equally many rows, or a re-iterable of batches with a length (a
    ``DataLoader``); a generator or other iterator is refused, since each epoch reads the data again.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if torch.is_tensor(data) or isinstance(data, np.ndarray):
        data = (data,)
    if isinstance(data, (tuple, list)):
        tensors = tuple(t.to(device) for t in _check_tensors(data, name))
        return _TensorBatches(tensors, batch_size, shuffle)
    if isinstance(data, Iterator):
        raise TypeError(
            f"{name} is a {type(data).__name__}, an iterator that can be read only once, but training reads "
            f"{name} again every epoch; pass a tensor, a tuple of tensors or a DataLoader"
        )
    if isinstance(data, Iterable):
        if not hasattr(data, "__len__"):
            raise TypeError(
                f"{name} ({type(data).__name__}) has no len(), the number of batches per epoch; pass a tensor, "
                "a tuple of tensors or a DataLoader"
            )
        if len(data) == 0:
            raise ValueError(f"{name} has no batches (len({name}) == 0); expected at least one batch")
        return _MovedBatches(data, device, name)
    raise TypeError(f"{name} must be a tensor, a tuple of tensors or an iterable of batches, got {type(data).__name__}")


def apply_to_first(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[tuple], tuple]:
    """A ``batch_transform`` for :func:`train` that applies ``fn`` to the batch's first tensor and
    keeps the others, e.g. ``apply_to_first(dynamic_binarize)`` for images with labels or ids."""

    def transform(batch: tuple) -> tuple:
        return (fn(batch[0]), *batch[1:])

    return transform


def _check_callbacks(callbacks: Sequence) -> list:
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks must be a list of callbacks, got {type(callbacks).__name__}")
    for i, cb in enumerate(callbacks):
        if not any(callable(getattr(cb, hook, None)) for hook in HOOKS):
            raise TypeError(
                f"callbacks[{i}] ({type(cb).__name__}) has none of the methods {', '.join(HOOKS)}; "
                "wrap a function in pyro_lvm.infer.LambdaCallback(on_epoch_end=fn)"
            )
    return list(callbacks)


def _run_callbacks(callbacks: list, hook: str, state: TrainState) -> None:
    for cb in callbacks:
        method = getattr(cb, hook, None)
        if method is not None:
            method(state)


def _callback_states(callbacks: list) -> dict:
    """The state of every callback that holds one, keyed by its position and class."""
    return {f"{i}:{type(cb).__name__}": cb.state_dict() for i, cb in enumerate(callbacks) if hasattr(cb, "state_dict")}


def _restore_callbacks(saved: dict, callbacks: list, checkpoint) -> None:
    """Put the checkpoint's callback states back; refuse another list of callbacks with state."""
    if set(saved) != set(_callback_states(callbacks)):
        raise ValueError(
            f"checkpoint {os.fspath(checkpoint)!r} holds the state of the callbacks {sorted(saved)}, but this run's "
            f"callbacks with state are {sorted(_callback_states(callbacks))} (position:class): resume with the same callbacks"
        )
    for i, cb in enumerate(callbacks):
        key = f"{i}:{type(cb).__name__}"
        if key in saved:
            cb.load_state_dict(saved[key])


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


def load_weights(
    checkpoint: str | os.PathLike, model: Callable, guide: Callable, device: str | torch.device | None = None
) -> History:
    """Start ``model`` and ``guide`` from the weights in a :func:`train` checkpoint, and take
    nothing else from it: no optimizer state, random state or epoch count. A run begun after this
    has its own objective and schedule, e.g. IWAE training that continues ELBO pretraining
    (:func:`train`'s ``resume`` is for continuing the same run).

    :param model, guide: callables backed by the same modules as the run that wrote the checkpoint.
    :returns: the checkpoint's :class:`History`, what the weights went through.
    :raises ValueError: naming the file when it is not a readable checkpoint (truncated, empty,
        not written by :func:`train`) or holds another number of modules.
    :raises RuntimeError: (from ``load_state_dict``) when a module's parameters differ in name or shape.
    """
    state = load_checkpoint(checkpoint, _WEIGHT_KEYS, map_location=device or "cpu")
    _restore_weights(state, _modules_of(model, guide), checkpoint)
    return History(**state["history"])


def svi_step(
    model: Callable,
    guide: Callable,
    loss: pyro.infer.ELBO,
    optimizer: pyro.optim.PyroOptim | torch.optim.Optimizer | FirstStepAdam,
    batch: tuple,
    kwargs: dict,
    snapshot: ParamSnapshot | None = None,
) -> float:
    """One SVI step, like :meth:`pyro.infer.SVI.step`, that refuses to apply a non-finite loss.

    :param optimizer: a ``pyro.optim`` optimizer (one torch optimizer per parameter, the
        parameters found by tracing the step) or a ``torch.optim.Optimizer`` that already holds
        every trained parameter (e.g. of the model's and guide's modules): one update for all
        parameters and no parameter tracing, the faster path for small batches. Its parameters
        must still be Pyro parameters (of a ``PyroModule``, ``pyro.module`` or ``pyro.param``):
        Pyro's ELBOs differentiate only when the trace has parameter sites.
    :param snapshot: when given, takes a copy of the parameters after a finite loss, before the update.
    :returns: the loss (negative ELBO summed over the batch).
    :raises FloatingPointError: when the loss is NaN or infinite (nothing is updated).
    """
    if isinstance(optimizer, torch.optim.Optimizer):
        value = float(loss.loss_and_grads(model, guide, *batch, **kwargs))
        if math.isfinite(value):
            if snapshot is not None:
                snapshot.take(p for group in optimizer.param_groups for p in group["params"])
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
    if snapshot is not None:
        snapshot.take(params)
    optimizer(params)
    zero_grads(params)
    return value


def _plain_parameter_names(module: PyroModule):
    """(param store name, parameter) for each plain ``nn.Parameter`` Pyro registers when
    ``module`` runs: its own and its PyroModule children's under their Pyro names, those of plain
    ``nn.Module`` children as ``pyro.module`` names them. PyroParams are left out: Pyro
    synchronizes those with the param store on purpose."""
    pyro_params = module.__dict__.get("_pyro_params", {})
    for name, p in module._parameters.items():
        if p is not None and not (name.endswith("_unconstrained") and name[: -len("_unconstrained")] in pyro_params):
            yield _make_pyro_name(module._pyro_name, name), p
    for name, child in module._modules.items():
        if isinstance(child, PyroModule):
            yield from _plain_parameter_names(child)
        elif child is not None:
            prefix = _make_pyro_name(module._pyro_name, name)
            yield from ((param_with_module_name(prefix, n), p) for n, p in child.named_parameters())


def _make_pyro_name(prefix: str, name: str) -> str:
    """The name PyroModule gives attribute ``name`` of a module named ``prefix``."""
    return f"{prefix}.{name}" if prefix else name


def _drop_stale_store_entries(modules: list[torch.nn.Module]) -> None:
    """Remove param store entries that carry the name of one of ``modules``' plain parameters but
    are bound to another tensor (left by another module of the same Pyro names, e.g. a model of
    the same class trained earlier in this process without ``pyro.clear_param_store()``).

    Pyro keeps the first tensor registered under a name: a stale entry would stand in for this
    run's parameter in every trace, so the optimizer would update the stale tensor (which gets no
    gradient) and none of the modules' own parameters.
    """
    store = pyro.get_param_store()
    stored = dict(store.named_parameters())
    ours = {id(p) for m in modules for p in m.parameters()}
    for m in modules:
        if isinstance(m, PyroModule):
            for name, _ in _plain_parameter_names(m):
                if name in stored and id(stored[name]) not in ours:
                    del store[name]


def _warn_unregistered_parameters(modules: list[torch.nn.Module]) -> None:
    """Warn about module parameters that a step never registered with Pyro (so SVI cannot train them).

    The usual causes: a PyroModule's story run as a plain method, outside ``PyroModule.__call__``;
    a plain ``nn.Module`` registered by ``pyro.module(name, ...)`` under a name the param store
    already holds for another module's parameters.
    """
    registered = {id(p) for _, p in pyro.get_param_store().named_parameters()}
    for m in modules:
        missing = [name for name, p in m.named_parameters() if p.requires_grad and id(p) not in registered]
        if missing:
            warnings.warn(
                f"{len(missing)} parameter(s) of {type(m).__name__} (e.g. {missing[0]!r}) were not registered "
                "with Pyro during the first step, so they are not trained. Call the PyroModule itself (its forward "
                "is the story) or decorate the method with @pyro.nn.pyro_method; if the story calls "
                "pyro.module(name, ...), the param store may hold that name's parameters from another module: "
                "call pyro.clear_param_store() before building a new model, or use another name.",
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


def _first_line(error: Exception) -> str:
    """An error's message without what Pyro appends to it (the trace's shapes)."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _diverged(cause: str, step: int, epoch: int, history: History, snapshot: ParamSnapshot) -> TrainingDiverged:
    """Put the parameters back to their last finite values and say where training failed."""
    if snapshot.restore():
        parameters = "The parameters are back at the values that gave that loss."
    else:  # the run's first step: nothing was updated
        parameters = "No parameter was updated in this run."
    last = next((v for v in reversed(history.step_loss) if math.isfinite(v)), None)
    return TrainingDiverged(
        f"{cause} at step {step} (epoch {epoch}); last finite loss per example: {last}. {parameters} "
        "Lower the learning rate, check the data, or warm up beta.",
        step,
        last,
    )


def _dtype_error(error: RuntimeError, batch: tuple, modules: list[torch.nn.Module], name: str) -> TypeError | None:
    """A TypeError naming the data tensors whose dtype differs from the parameters', when a step
    failed with a dtype error of torch (e.g. ``mat1 and mat2 must have the same dtype``); else None."""
    if "dtype" not in str(error) and "scalar type" not in str(error):
        return None
    params = [p for m in modules for p in m.parameters()] + [p for _, p in pyro.get_param_store().named_parameters()]
    dtypes = {p.dtype for p in params if p.is_floating_point()}
    if len(dtypes) != 1:
        return None
    (dtype,) = dtypes
    names = [name] if len(batch) == 1 else [f"{name}[{i}]" for i in range(len(batch))]
    wrong = [f"{n} has dtype {b.dtype}" for n, b in zip(names, batch) if torch.is_tensor(b) and b.dtype != dtype]
    if not wrong:
        return None
    return TypeError(
        f"{', '.join(wrong)}, but the parameters are {dtype}, and a training step failed on it ({_first_line(error)}); "
        f"convert the data, e.g. x.to({dtype})"
    )


def _shard(batches, ranks: Ranks, shuffle: bool, seed: int, name: str):
    """This rank's share of tensor batches; a DataLoader as it is, if its sampler shards."""
    if isinstance(batches, _TensorBatches):
        return ranks.shard(batches.tensors, batches.batch_size, shuffle, seed)
    ranks.check_loader(batches.batches, name)
    return batches


def _rank_rng_state(state: dict, ranks: Ranks, checkpoint) -> dict:
    """This rank's random state from a checkpoint of a run on several ranks."""
    if "rng_per_rank" not in state:
        raise ValueError(
            f"checkpoint {os.fspath(checkpoint)!r} was written by a single process, but this run has {ranks.world_size} "
            "ranks: resume it on one process (or start a new run from its weights with load_weights)"
        )
    return state["rng_per_rank"][ranks.rank]


def _holds_torch_state(state: dict) -> bool:
    """Whether a checkpoint holds a torch.optim optimizer's state (else pyro.optim's)."""
    return isinstance(state["optimizer"], dict) and set(state["optimizer"]) == {"state", "param_groups"}


def _check_resumed_run(state: dict, optimizer, data_order: dict, checkpoint) -> None:
    """Refuse to resume a run with another kind of optimizer or another order of the data."""
    saved_torch = _holds_torch_state(state)
    given_torch = isinstance(optimizer, (torch.optim.Optimizer, FirstStepAdam))
    if saved_torch != given_torch:
        kinds = {True: "a torch.optim optimizer", False: "a pyro.optim optimizer"}
        raise ValueError(
            f"checkpoint {os.fspath(checkpoint)!r} holds the state of {kinds[saved_torch]}, but this run has "
            f"{kinds[given_torch]}: resume with the same kind, or start a new run from its weights with load_weights"
        )
    for key, saved in state.get("data_order", {}).items():  # checkpoints written before it was recorded have none
        if key in data_order and data_order[key] != saved:
            raise ValueError(
                f"{key}={data_order[key]!r} here, but checkpoint {os.fspath(checkpoint)!r} was written with "
                f"{key}={saved!r}: resume continues the same run in the same order of the data, so resume with "
                f"{key}={saved!r} (or start a new run from its weights with load_weights)"
            )


@torch.no_grad()
def _validation_loss(model, guide, loss, batches, kwargs: dict, ranks: Ranks | None = None) -> float:
    total, count = 0.0, 0
    for batch in batches:
        if getattr(batches, "empty", False):  # a rank's stand-in example on a short last step
            continue
        total += float(loss.loss(model, guide, *batch, **kwargs))
        count += _batch_size_of(batch)
    if ranks is not None:
        total, count = ranks.sum_numbers(total, count)
    return total / count


def train(
    model: Callable,
    guide: Callable,
    data: torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray] | Iterable,
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
    batch_transform: Callable[[tuple], tuple] | None = None,
    val_data: torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray] | Iterable | None = None,
    val_every: int = 1,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    progress: bool = True,
    model_kwargs: dict | None = None,
    callbacks: Sequence = (),
    example_ids: bool | str = False,
    distributed: bool | None = None,
    fast: bool | FastPath = True,
) -> History:
    """Train ``model`` and ``guide`` by stochastic variational inference.

    :param model: the generative story, called as ``model(*batch, **model_kwargs)``.
    :param guide: ``q(z | x)`` with the same signature (``pyro.infer.autoguide.AutoGuide``,
        a :mod:`pyro_lvm.guides` family, or a function; a no-op for fully enumerated models).
    :param data: a tensor (N, ...), a tuple of tensors with N rows each, or a re-iterable of
        batches with a length (a ``DataLoader``), not a generator. Tensors are moved to ``device``
        once and reshuffled each epoch (sharded on several ranks: see ``distributed``). NumPy arrays
        are taken as tensors (``torch.as_tensor``, dtype kept: NumPy's default float64 needs float64 parameters, or ``.astype("float32")``).
    :param loss: any Pyro ELBO or :class:`~pyro_lvm.infer.HardEM`. Default: ``TraceMeanField_ELBO``
        where every latent site's guide and prior pair has an analytic KL, else ``Trace_ELBO``,
        compiled where safe (see ``fast``).
    :param optimizer: a ``pyro.optim`` optimizer; a ``pyro.optim`` scheduler
        (``PyroLRScheduler``) is stepped once per epoch. Default: Adam with learning rate ``lr``,
        the update of ``pyro.optim.Adam({"lr": lr})`` run as one ``torch.optim.Adam`` over every
        trained parameter (see ``fast``).
        A ``torch.optim.Optimizer`` over all trained parameters (e.g.
        ``torch.optim.Adam([*model_module.parameters(), *guide.parameters()])``) also works
        and is faster for small batches (see :func:`svi_step`).
    :param epochs: passes over ``data``. Give ``epochs`` or ``steps``.
    :param steps: total optimizer steps (training stops mid-epoch when reached).
    :param device: where batches and the modules behind ``model``/``guide`` live; default: the
        device of the model's parameters, else CPU.
    :param beta: KL weight: a number or a function of the step, e.g.
        :func:`~pyro_lvm.infer.linear_warmup`; applied by scaling every latent site in model and guide.
    :param batch_transform: a function of the whole training batch, the tuple of its tensors
        (one per tensor of ``data``, the ids of ``example_ids`` not included), that returns the
        tuple the model and guide are called with, e.g. ``lambda b: tuple(map(dynamic_binarize, b))``
        or ``apply_to_first(dynamic_binarize)`` (:func:`apply_to_first`); up to 0.2.0 it received
        the first tensor only.
    :param val_data: held-out data in the same form as ``data``; its mean loss per example is
        recorded every ``val_every`` epochs (the ``batch_transform`` is not applied, and no ids are passed).
    :param checkpoint: file to write atomically every ``checkpoint_every`` epochs and at the end.
    :param resume: continue from ``checkpoint`` if it exists (same trajectory as an uninterrupted run).
    :param progress: show a tqdm progress bar.
    :param model_kwargs: keyword arguments of every model and guide call.
    :param callbacks: objects whose ``on_train_start``, ``on_step_end``, ``on_epoch_end`` and
        ``on_train_end`` methods (those they have) are called with a
        :class:`~pyro_lvm.infer.callbacks.TrainState`, in the order of the list: logging, a
        classifier's accuracy, plots, :class:`~pyro_lvm.infer.EarlyStopping` (see
        :mod:`pyro_lvm.infer.callbacks`). One ``train`` call of many epochs with callbacks trains
        exactly as without them, with one optimizer state throughout; calling ``train`` once per
        epoch instead starts a fresh optimizer (e.g. Adam's moments) each time. A callback stops
        the run with ``state.request_stop(reason)`` (``History.stop_reason``). The state of
        callbacks that have ``state_dict`` is saved in checkpoints; ``resume`` needs the same
        callbacks, and a run a callback stopped stays stopped.
    :param example_ids: pass each training batch's row numbers in ``data`` (int64, shape (N,)) to
        the model and guide by keyword: ``index=`` when True, or the keyword named by a string;
        e.g. for a :class:`~pyro_lvm.guides.LocalGuide` (one row of parameters per example).
        ``data`` must be tensors (a DataLoader's rows have no known numbers: put the ids in its
        batches instead).
    :param distributed: run data-parallel on the ``torch.distributed`` default process group (one
        process per rank, launched by ``torchrun``; see :mod:`pyro_lvm.infer.distributed`): None
        (default) when a group of more than one rank is set up, True to require one, False to train
        on this process alone. ``batch_size`` then counts a step's examples over all ranks (each
        rank takes ``batch_size / world size`` of them, ``DistributedSampler``'s way: every example
        once per epoch, a new shuffle each epoch, the same on every rank), so the run follows the
        trajectory of one process with that batch size. Every rank starts from rank 0's parameters
        (after a warm-up trace on the first batch, which creates lazy parameters), gradients, losses
        and example counts are summed over ranks at every step, each rank draws from its own random
        stream, and only rank 0 shows progress and writes the checkpoint (which holds every rank's
        random state, so ``resume`` on the same world size continues the same run). A
        ``DataLoader`` needs a ``DistributedSampler`` (its ``set_epoch`` is called each epoch).
        A rank that raises in a step stops the others with
        :class:`~pyro_lvm.infer.distributed.RankFailed` naming it.
    :param fast: the default path's choices (:mod:`pyro_lvm.infer.fast_path`): one torch optimizer
        (when no ``optimizer`` is given), the analytic KL (when no ``loss`` is given), Pyro's
        validation for the first steps only, and the compiled ELBO where safe; the same losses and
        parameters as the plain Pyro path, faster. A :class:`~pyro_lvm.infer.FastPath` turns single
        choices off, False all of them. ``History.fast_path`` records what ran.
    :returns: the :class:`History` (also in the checkpoint).
    :raises TrainingDiverged: when a step's loss is NaN or infinite, or, after finite steps, Pyro's
        validation finds a distribution parameter NaN or outside its support; the parameters are
        put back to their last finite values (see :class:`TrainingDiverged`).
    :raises TypeError: when ``data`` is an iterator (read once, but every epoch reads the data),
        a step fails on data whose dtype differs from the parameters' (e.g. float64 or int64
        data, float32 parameters), a callback has none of the hooks, or ``batch_transform``
        returns something other than a tuple.
    :raises ValueError: for empty ``data`` or ``val_data``, a ``checkpoint`` that cannot be
        written (checked before the first step) or read, and a resume with another kind of
        optimizer or another ``batch_size``, ``shuffle``, world size, number of batches per epoch or
        list of callbacks with state than the checkpoint's run; ``example_ids`` with data other than
        tensors, or whose keyword is also in ``model_kwargs``; on several ranks, fewer examples than
        ranks, a ``batch_size`` that is not a multiple of the world size, or a ``DataLoader``
        without a ``DistributedSampler``.

    Param store entries named like a parameter of the model's or guide's PyroModules but bound
    to another tensor (left by another module of the same class, trained earlier in this process
    without ``pyro.clear_param_store()``) are removed before the first step, so this run trains
    its own parameters.
    """
    if (epochs is None) == (steps is None):
        raise ValueError(f"give exactly one of epochs or steps (got epochs={epochs}, steps={steps})")
    for name, value in (("epochs", epochs), ("steps", steps), ("val_every", val_every), ("checkpoint_every", checkpoint_every)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    ranks = current_ranks(distributed)
    if checkpoint is not None and ranks is None:
        check_writable(checkpoint)
    elif checkpoint is not None:  # rank 0 writes; the others hear if it cannot
        ranks.together("the check that the checkpoint can be written", lambda: ranks.is_main and check_writable(checkpoint))
    callbacks = _check_callbacks(callbacks)
    ids_keyword = "index" if example_ids is True else example_ids or None
    if ids_keyword is not None and not isinstance(ids_keyword, str):
        raise TypeError(f"example_ids must be a bool or a keyword name (str), got {example_ids!r}")
    fast = FastPath() if fast is True else FastPath.off() if fast is False else fast
    if not isinstance(fast, FastPath):
        raise TypeError(f"fast must be a bool or a pyro_lvm.infer.FastPath, got {type(fast).__name__}")
    chosen = {"switches": fast.to_dict(), "optimizer": f"given: {type(optimizer).__name__}",
              "loss": f"given: {type(loss).__name__}", "compiled": "no: a loss was given", "uncompiled_steps": 0}
    default_objective = None  # train's own choice of ELBO, when the caller gave none
    if loss is None:
        loss = default_objective = DefaultObjective(fast, chosen)
        chosen["compiled"] = "no"
    if optimizer is None and fast.torch_optimizer:
        optimizer, chosen["optimizer"] = FirstStepAdam(lr), "torch.optim.Adam over every trained parameter"
    elif optimizer is None:
        optimizer, chosen["optimizer"] = pyro.optim.Adam({"lr": lr}), "pyro.optim.Adam"
    model_kwargs = model_kwargs or {}
    if ids_keyword in model_kwargs:
        raise ValueError(f"example_ids passes the ids as {ids_keyword!r}, which model_kwargs also has; name another keyword")
    modules = _modules_of(model, guide)
    if device is None:
        params = [p for m in modules for p in m.parameters()]
        device = params[0].device if params else torch.device("cpu")
    device = torch.device(device)
    for m in modules:
        m.to(device)

    batches = as_batch_source(data, batch_size, shuffle, device)
    if ids_keyword is not None:
        if not isinstance(batches, _TensorBatches):
            raise ValueError(
                f"example_ids needs data as a tensor or a tuple of tensors, whose rows are numbered; got "
                f"{type(data).__name__}: put the ids in its batches and read them in the model"
            )
        ids = torch.arange(batches.n, device=device)
        batches = _TensorBatches((*batches.tensors, ids), batch_size, shuffle)  # the ids ride along as the last tensor
    val_batches = None if val_data is None else as_batch_source(val_data, batch_size, False, device, "val_data")
    if ranks is not None:
        shuffle_seed = ranks.broadcast_int(int(torch.randint(2**31, ())))  # rank 0's draw; each rank's own stream next
        pyro.set_rng_seed(ranks.broadcast_int(int(torch.randint(2**31, ()))) + ranks.rank)
        batches = _shard(batches, ranks, shuffle, shuffle_seed, "data")
        val_batches = None if val_batches is None else _shard(val_batches, ranks, False, shuffle_seed, "val_data")
        loss = ranks.summed_loss(loss, batches)
    n_batches = len(batches)
    data_order = {"batches_per_epoch": n_batches, "world_size": 1 if ranks is None else ranks.world_size}  # recorded in checkpoints
    if isinstance(batches, _TensorBatches):
        data_order = {"batch_size": batch_size, "shuffle": shuffle, **data_order}
    total_epochs = epochs if epochs is not None else math.ceil(steps / n_batches)
    total_steps = steps if steps is not None else total_epochs * n_batches

    history, step, start_epoch = History(), 0, 0
    if resume and checkpoint is not None and os.path.exists(checkpoint):
        state = load_checkpoint(checkpoint, _RUN_KEYS, map_location=device)
        if isinstance(optimizer, FirstStepAdam) and not _holds_torch_state(state):  # begun with pyro.optim.Adam
            optimizer, chosen["optimizer"] = pyro.optim.Adam({"lr": lr}), "pyro.optim.Adam (as the resumed run)"
        _check_resumed_run(state, optimizer, data_order, checkpoint)
        _restore_weights(state, modules, checkpoint)
        if isinstance(optimizer, FirstStepAdam):
            optimizer.state = state["optimizer"]
        elif isinstance(optimizer, torch.optim.Optimizer):
            optimizer.load_state_dict(state["optimizer"])
        else:
            optimizer.set_state(state["optimizer"])
        restore_rng_state(state["rng"] if ranks is None else _rank_rng_state(state, ranks, checkpoint))
        if ranks is not None:
            batches.seed = shuffle_seed = state["shuffle_seed"]
        _restore_callbacks(state.get("callbacks", {}), callbacks, checkpoint)
        history = History(**state["history"])
        step, start_epoch = state["step"], state["epoch"]
    history.fast_path, first_step = chosen, step
    validating = pyro.infer.util.is_validation_enabled()
    chosen["validation"] = "on" if validating else "off (pyro.enable_validation(False))"
    compile_at = max(fast.validate_steps or 0, 1)  # once the objective is chosen and validation done

    def save() -> None:
        rng = capture_rng_state() if ranks is None else ranks.gather_objects(capture_rng_state())
        if ranks is not None and not ranks.is_main:
            return
        atomic_save(
            {
                "modules": [m.state_dict() for m in modules],
                "param_store": param_store_state(modules),
                "optimizer": optimizer.state_dict() if isinstance(optimizer, torch.optim.Optimizer) else optimizer.get_state(),
                "rng": rng if ranks is None else rng[0],
                **({} if ranks is None else {"rng_per_rank": rng, "shuffle_seed": shuffle_seed}),
                "history": history.to_dict(),
                "step": step,
                "epoch": epoch + 1,
                "data_order": data_order,
                "callbacks": _callback_states(callbacks),
            },
            checkpoint,
        )

    _drop_stale_store_entries(modules)
    snapshot = ParamSnapshot()
    scaled = (1.0, model, guide)  # (beta, model, guide) as last scaled
    cb_state = TrainState(model, guide, modules, optimizer, history, step, start_epoch, total_steps, total_epochs,
                          validation=val_batches is not None, stop_reason=history.stop_reason)  # a stopped run stays stopped
    _run_callbacks(callbacks, "on_train_start", cb_state)
    progress = progress and (ranks is None or ranks.is_main)
    bar = tqdm(total=total_steps, initial=step, disable=not progress, desc="train", unit="step", dynamic_ncols=True)
    try:
        for epoch in range(start_epoch, total_epochs):
            if step >= total_steps or cb_state.stop_reason is not None:
                break
            cb_state.epoch = epoch
            if ranks is not None:
                ranks.set_epoch(batches, epoch)
            t0, epoch_total, epoch_count = time.perf_counter(), 0.0, 0
            for batch in batches:
                step_kwargs = model_kwargs
                if ids_keyword is not None:
                    batch, step_kwargs = batch[:-1], {**model_kwargs, ids_keyword: batch[-1]}
                if batch_transform is not None:
                    try:
                        batch = batch_transform(batch)
                    except (AttributeError, TypeError) as e:  # e.g. a function of one tensor, as up to 0.2.0
                        e.add_note(f"batch_transform {_TRANSFORM_CONTRACT}")
                        raise
                    if not isinstance(batch, (tuple, list)):
                        raise TypeError(f"batch_transform returned a {type(batch).__name__}, but it {_TRANSFORM_CONTRACT}")
                    batch = tuple(batch)
                b = beta(step) if callable(beta) else beta
                if scaled[0] != b:  # same callables while beta stays put (a compiled ELBO keys its trace on them)
                    scaled = (b, model, guide) if b == 1.0 else (b, scale_latents(b)(model), scale_latents(b)(guide))
                m, g = scaled[1:]
                if validating and step - first_step == fast.validate_steps:
                    pyro.enable_validation(False)  # restored at the end
                    chosen["validation"] = f"on for the first {fast.validate_steps} steps, then off"
                if step - first_step == compile_at and default_objective is not None:
                    default_objective.compile_if_safe(m, g, batch, step_kwargs, beta_varies=callable(beta),
                                                      remaining_steps=total_steps - step)
                try:
                    if not history.step_loss:  # a guide for the wrong sites fails here, naming the model's sites
                        if ranks is None:
                            traces = guide_and_model_traces(m, g, *batch, **step_kwargs)
                            check_trace_sites(*traces)
                            if isinstance(loss, DefaultObjective) and loss.eager is None:
                                loss.choose(*traces)
                        else:  # the warm-up that creates lazy parameters, then rank 0's values everywhere
                            ranks.together("the first step's warm-up", check_guide_sites, m, g, *batch, **step_kwargs)
                            ranks.broadcast_parameters(modules)
                    value = svi_step(m, g, loss, optimizer, batch, step_kwargs, snapshot)
                    if isinstance(optimizer, FirstStepAdam):
                        optimizer = cb_state.optimizer = optimizer.optimizer
                except FloatingPointError as e:
                    raise _diverged(f"loss became {e.args[0]}", step, epoch, history, snapshot) from None
                except ValueError as e:
                    # Pyro's validation of a distribution's parameters, after finite steps: the update broke them
                    if not history.step_loss or "found invalid values" not in str(e):
                        raise
                    cause = f"a distribution parameter became invalid ({_first_line(e)})"
                    raise _diverged(cause, step, epoch, history, snapshot) from e
                except RuntimeError as e:
                    dtype_error = _dtype_error(e, batch, modules, "data")
                    if dtype_error is None:
                        raise
                    raise dtype_error from e
                if not history.step_loss:
                    _warn_unregistered_parameters(modules)
                n = _batch_size_of(batch) if ranks is None else loss.last_count
                history.step_loss.append(value / n)
                epoch_total, epoch_count, step = epoch_total + value, epoch_count + n, step + 1
                bar.update(1)
                if step % 10 == 0 or step == total_steps:
                    bar.set_postfix(epoch=epoch, loss=f"{value / n:.4g}")
                cb_state.step, cb_state.loss, cb_state.batch = step, value / n, batch
                _run_callbacks(callbacks, "on_step_end", cb_state)
                if step >= total_steps or cb_state.stop_reason is not None:
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
                record["val_loss"] = _validation_loss(model, guide, loss, val_batches, model_kwargs, ranks)
                bar.set_postfix(epoch=epoch, loss=f"{record['train_loss']:.4g}", val=f"{record['val_loss']:.4g}")
            history.epochs.append(record)
            _run_callbacks(callbacks, "on_epoch_end", cb_state)
            history.stop_reason = cb_state.stop_reason
            if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0 or step >= total_steps or history.stop_reason):
                save()
        _run_callbacks(callbacks, "on_train_end", cb_state)
        history.stop_reason = cb_state.stop_reason
    finally:
        bar.close()
        pyro.enable_validation(validating)
    return history
