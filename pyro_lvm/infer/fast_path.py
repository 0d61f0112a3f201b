"""The choices :func:`~pyro_lvm.infer.train` makes when called with no options.

``train(model, guide, data)`` runs the fast path where it is safe, and gives what the plain Pyro
path (``TraceMeanField_ELBO`` or ``Trace_ELBO``, ``pyro.optim.Adam``, Pyro's validation on) gives
from the same start, to float tolerance:

- **one torch optimizer**: ``torch.optim.Adam`` (fused) over every parameter the first step traced,
  built at that step (:class:`DefaultAdam`), instead of ``pyro.optim.Adam``'s optimizer per
  parameter and a parameter trace every step. Adam is elementwise, so the update is the same.
  Parameters created by later steps join it as a new parameter group.
- **the analytic KL**: ``TraceMeanField_ELBO`` where every latent site's guide and prior pair has
  a registered ``kl_divergence`` and the guide samples it reparameterized
  (:func:`mean_field_reason`), else ``Trace_ELBO``.
- **validation for the first steps only**: Pyro's validation (when on, as by default) for the first
  ``validate_steps`` steps, then off; a later parameter that leaves its support makes the loss
  NaN or infinite, which ``train`` stops on as before.
- **the compiled ELBO**: :class:`~pyro_lvm.infer.JitTraceMeanField_ELBO` once validation is off, for
  batches of the shapes it was compiled for; it is compiled once, checked against the eager loss
  on the same draw, and left aside, with a one-line warning, when compiling fails or disagrees.
  Batches of other shapes (e.g. a smaller last batch) run uncompiled. Compiling pays off where the
  per-operation cost dominates (small batches, small networks); for large batches the eager step can
  be as fast or faster, so the first steps after compiling alternate compiled and uncompiled steps
  (``timed_steps`` of each, both exact steps of the same ELBO) and the faster one, by the median of
  its wall-clock times, runs from then on.

Each choice has a switch in :class:`FastPath`; what ran is recorded in ``History.fast_path``.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import pyro
import pyro.infer
import torch
from pyro.poutine import Trace
from pyro.poutine.util import site_is_subsample
from torch.distributions import kl_divergence

from pyro_lvm.guides.check import guide_and_model_traces
from pyro_lvm.infer.jit_elbo import JitTraceMeanField_ELBO

__all__ = ["FastPath", "DefaultAdam", "DefaultObjective", "FirstStepAdam", "mean_field_reason"]


@dataclass(frozen=True)
class FastPath:
    """Switches of :func:`~pyro_lvm.infer.train`'s default path (``train(..., fast=FastPath(...))``;
    ``fast=False`` turns every one off, the plain Pyro path).

    :param torch_optimizer: with no ``optimizer`` given, one ``torch.optim.Adam`` over every
        trained parameter instead of ``pyro.optim.Adam``.
    :param analytic_kl: with no ``loss`` given, ``TraceMeanField_ELBO`` where every latent site has
        an analytic KL, instead of ``Trace_ELBO``.
    :param validate_steps: steps run with Pyro's validation as set (on by default); later steps run
        without it. None keeps the setting for every step.
    :param compile: compile the mean-field ELBO once validation is off (only where ``analytic_kl``
        chose it, ``beta`` is a number, every keyword argument is a non-tensor and training runs on
        one process).
    :param min_compiled_steps: compile only when at least this many steps remain (a compilation
        costs about as much as tens of steps).
    :param timed_steps: after compiling, time this many compiled and as many uncompiled steps,
        alternately, and keep the faster kind; 0 keeps the compiled one without timing.
    """

    torch_optimizer: bool = True
    analytic_kl: bool = True
    validate_steps: int | None = 10
    compile: bool = True
    min_compiled_steps: int = 100
    timed_steps: int = 5

    def __post_init__(self) -> None:
        for name in ("validate_steps", "min_compiled_steps", "timed_steps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"FastPath.{name} must be a non-negative integer, got {value!r}")
        for name in ("min_compiled_steps", "timed_steps"):
            if getattr(self, name) is None:
                raise ValueError(f"FastPath.{name} must be a non-negative integer, got None")

    @classmethod
    def off(cls) -> FastPath:
        """Every choice turned off: the plain Pyro path."""
        return cls(torch_optimizer=False, analytic_kl=False, validate_steps=None, compile=False)

    def to_dict(self) -> dict:
        return asdict(self)


#: calls of a freshly compiled TorchScript graph that profile and optimize it (slow), before timing it
_WARM_COMPILED_CALLS = 3


def _tensor_shapes(args: tuple) -> tuple:
    return tuple(tuple(a.shape) if torch.is_tensor(a) else None for a in args)


def _cuda_devices(args: tuple) -> list[int]:
    """The CUDA device of the tensor arguments, whose random state ``fork_rng`` keeps too."""
    return [a.device.index or 0 for a in args if torch.is_tensor(a) and a.is_cuda][:1]


def _sorted_by_name(params) -> tuple[list[torch.Tensor], list[str]]:
    """Parameters in the order of their param store names (the same in every run and on resume)."""
    names = {id(p): name for name, p in pyro.get_param_store().named_parameters()}
    pairs = sorted((names.get(id(p), ""), i, p) for i, p in enumerate(params))
    return [p for _, _, p in pairs], [name for name, _, _ in pairs]


def _fused_adam_supported(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused Adam (one kernel for every parameter) takes these: floating point, on the CPU or CUDA."""
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


class DefaultAdam(torch.optim.Adam):
    """``torch.optim.Adam`` over every trained Pyro parameter, the same update as
    ``pyro.optim.Adam({"lr": lr})`` (which keeps one Adam per parameter), with torch's fused
    implementation where the parameters allow it (floating point, on the CPU or CUDA): one kernel
    for all of them instead of about ten operations per parameter, 2.8x faster for the
    784-200-200-50 VAE on one CPU thread.

    Build it with :meth:`build` from the parameters the first step traced. Each step first adopts
    parameters created since (the param store grew) that have a gradient, as a new parameter group
    with fresh Adam state, as ``pyro.optim`` would give them. Each group records its parameters'
    param store names (``"names"``), so :meth:`build` can regroup the parameters of a resumed run.
    """

    @classmethod
    def build(cls, params: Iterable[torch.Tensor], lr: float, state: dict | None = None) -> DefaultAdam:
        """One group of ``params`` (sorted by name), or the groups of a saved ``state_dict`` whose
        state is then loaded (resume)."""
        params, names = _sorted_by_name(params)
        if state is None:
            return cls([{"params": params, "names": names}], lr=lr)
        by_name = dict(zip(names, params))
        for name, p in pyro.get_param_store().named_parameters():
            by_name.setdefault(name, p)
        groups = [{"params": [by_name[n] for n in g["names"]], "names": list(g["names"])} for g in state["param_groups"]]
        optimizer = cls(groups, lr=lr)
        optimizer.load_state_dict(state)
        return optimizer

    def __init__(self, params: list[dict], lr: float) -> None:
        tensors = [p for group in params for p in group["params"]]
        super().__init__(params, lr=lr, fused=_fused_adam_supported(tensors))
        self._store_size = len(pyro.get_param_store())

    def adopt_new_parameters(self) -> None:
        """Add the param store's parameters created since the last step that have a gradient."""
        store = pyro.get_param_store()
        if len(store) == self._store_size:
            return
        self._store_size = len(store)
        held = {id(p) for group in self.param_groups for p in group["params"]}
        new = [p for _, p in store.named_parameters() if id(p) not in held and p.grad is not None]
        if new:
            params, names = _sorted_by_name(new)
            self.add_param_group({"params": params, "names": names})

    @torch.no_grad()
    def step(self, closure: Callable | None = None) -> Any:
        self.adopt_new_parameters()
        return super().step(closure)


def _is_latent(site: dict) -> bool:
    return site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)


def mean_field_reason(guide_trace: Trace, model_trace: Trace) -> str | None:
    """Why ``TraceMeanField_ELBO`` would not be exact for this guide trace and the model trace
    replayed against it (:func:`~pyro_lvm.guides.check.guide_and_model_traces`), or None when every
    latent site of the model has a guide site sampled reparameterized, in the model's order, whose
    KL to the prior has a closed form (``torch.distributions.kl_divergence``)."""
    latent = [name for name, site in model_trace.nodes.items() if _is_latent(site)]
    guide_sites = [name for name, site in guide_trace.nodes.items() if _is_latent(site)]
    for name in latent:
        m = model_trace.nodes[name]
        g = guide_trace.nodes.get(name)
        if g is None or g["type"] != "sample":
            return f"site {name!r} has no guide site"
        if m["infer"].get("enumerate") or g["infer"].get("enumerate"):
            return f"site {name!r} is enumerated"
        if not g["fn"].has_rsample:
            return f"the guide samples site {name!r} without reparameterization"
        try:
            kl_divergence(g["fn"], m["fn"])
        except NotImplementedError:
            return f"site {name!r}: no analytic KL from {type(g['fn']).__name__} to {type(m['fn']).__name__}"
    if [n for n in guide_sites if n in latent] != latent:
        return "the guide samples the latent sites in another order than the model"
    if any(not g["fn"].has_rsample for n, g in guide_trace.nodes.items() if n in guide_sites and n not in latent):
        return "an auxiliary guide site is not reparameterized"
    return None


class DefaultObjective:
    """``train``'s loss when none is given: the analytic-KL or the Monte Carlo ELBO (chosen at the
    first call), compiled when :meth:`compile` succeeded, for batches of the compiled shapes.

    Has the ELBO methods ``train`` calls (``loss_and_grads``, ``loss``). ``record`` is the dict
    that ``History.fast_path`` holds: what ran.
    """

    def __init__(self, fast: FastPath, record: dict) -> None:
        self.fast, self.record = fast, record
        self.eager: pyro.infer.ELBO | None = None
        self.compiled: JitTraceMeanField_ELBO | None = None
        self.compiled_shapes: tuple | None = None
        self._warned_shapes: set = set()
        self._trial: dict | None = None  # the timed steps after compiling, while they run

    @property
    def mean_field(self) -> bool:
        return isinstance(self.eager, pyro.infer.TraceMeanField_ELBO)

    def choose(self, guide_trace: Trace, model_trace: Trace) -> None:
        """Pick the ELBO from a guide trace and the model trace replayed against it (by
        :func:`mean_field_reason`); called by ``train`` with its first-step check's traces, or by
        the first call."""
        reason = mean_field_reason(guide_trace, model_trace) if self.fast.analytic_kl else "switched off"
        if reason is None:
            self.eager, self.record["loss"] = pyro.infer.TraceMeanField_ELBO(), "TraceMeanField_ELBO (analytic KL)"
        else:
            self.eager, self.record["loss"] = pyro.infer.Trace_ELBO(), f"Trace_ELBO ({reason})"

    def compile(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> bool:
        """Compile the mean-field ELBO for these arguments' shapes and check it: from the same
        random state, its loss must equal the eager loss (1e-5 relative). Draws nothing from the
        caller's random stream. On failure warns in one line, records why, and returns False."""
        compiled = JitTraceMeanField_ELBO(ignore_jit_warnings=True, cache_size=1)
        devices = _cuda_devices(args)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's
                with torch.random.fork_rng(devices=devices):  # tracing draws its own noise
                    compiled.differentiable_loss(model, guide, *args, **kwargs)
                with torch.random.fork_rng(devices=devices):  # the replay, as later steps run it
                    fast_value = float(compiled.differentiable_loss(model, guide, *args, **kwargs))
                with torch.random.fork_rng(devices=devices), torch.no_grad():
                    eager_value = float(self.eager.loss(model, guide, *args, **kwargs))
            if not math.isclose(fast_value, eager_value, rel_tol=1e-5, abs_tol=1e-5):
                raise RuntimeError(f"its loss {fast_value:.6g} differs from the eager loss {eager_value:.6g}")
        except Exception as e:  # noqa: BLE001 -- any failure to trace means: run uncompiled
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            self.record["compiled"] = f"no: compiling failed ({message})"
            warnings.warn(f"train: the ELBO could not be compiled ({message}); training continues uncompiled",
                          RuntimeWarning, stacklevel=3)
            return False
        self.compiled, self.compiled_shapes = compiled, _tensor_shapes(args)
        if self.fast.timed_steps:
            self._trial = {"warm": _WARM_COMPILED_CALLS, "compiled": [], "uncompiled": []}
        return True

    def _timed_step(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """One step of the trial after compiling: first the compiled graph's warm-up calls, then
        compiled and uncompiled steps alternately, each timed; after ``timed_steps`` of each, keeps
        the kind with the smaller median time (the compiled one on a tie)."""
        trial = self._trial
        warm = trial["warm"] > 0
        kind = "compiled" if warm or len(trial["compiled"]) <= len(trial["uncompiled"]) else "uncompiled"
        objective = self.compiled if kind == "compiled" else self.eager
        start = time.perf_counter()
        value = objective.loss_and_grads(model, guide, *args, **kwargs)  # returns a float: the device has finished
        seconds = time.perf_counter() - start
        if warm:
            trial["warm"] -= 1
            return value
        trial[kind].append(seconds)
        if len(trial["uncompiled"]) == self.fast.timed_steps:
            compiled_ms, eager_ms = (1e3 * statistics.median(trial[k]) for k in ("compiled", "uncompiled"))
            timing = f"median {compiled_ms:.3g} ms a compiled step, {eager_ms:.3g} ms uncompiled"
            self.record["compile_timing"] = timing
            if eager_ms < compiled_ms:
                self.compiled = None
                self.record["compiled"] = f"no: uncompiled steps were faster ({timing})"
            self._trial = None
        return value

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        if self.eager is None:
            self.choose(*guide_and_model_traces(model, guide, *args, **kwargs))
        if self.compiled is not None:
            shapes = _tensor_shapes(args)
            if shapes == self.compiled_shapes:
                if self._trial is not None:
                    return self._timed_step(model, guide, *args, **kwargs)
                return self.compiled.loss_and_grads(model, guide, *args, **kwargs)
            self.record["uncompiled_steps"] += 1
            if shapes not in self._warned_shapes:
                self._warned_shapes.add(shapes)
                warnings.warn(f"train: a batch of shapes {shapes} differs from the compiled {self.compiled_shapes}; "
                              "such batches run uncompiled", RuntimeWarning, stacklevel=3)
        return self.eager.loss_and_grads(model, guide, *args, **kwargs)

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        if self.eager is None:
            self.choose(*guide_and_model_traces(model, guide, *args, **kwargs))
        return self.eager.loss(model, guide, *args, **kwargs)

    def compile_if_safe(self, model: Callable, guide: Callable, args: tuple, kwargs: dict, *, beta_varies: bool,
                        remaining_steps: int) -> None:
        """Compile (:meth:`compile`) where it is safe and pays off, else record why not: the
        mean-field ELBO was chosen, ``beta`` is a number (a schedule rescales the sites, a new
        trace each step), the keyword arguments are no tensors (a trace takes tensors positionally
        only), and at least ``min_compiled_steps`` steps remain."""
        reasons = [
            (not self.fast.compile, "switched off"),
            (not self.mean_field, "not the mean-field ELBO"),
            (beta_varies, "beta is a schedule"),
            (any(torch.is_tensor(v) for v in kwargs.values()), "a keyword argument is a tensor"),
            (remaining_steps < self.fast.min_compiled_steps,
             f"{remaining_steps} steps left, fewer than min_compiled_steps={self.fast.min_compiled_steps}"),
        ]
        reason = next((why for failed, why in reasons if failed), None)
        if reason is not None:
            self.record["compiled"] = f"no: {reason}"
        elif self.compile(model, guide, *args, **kwargs):
            self.record["compiled"] = f"yes, for batches of shapes {self.compiled_shapes}"


class FirstStepAdam:
    """The default optimizer until the first step: called with the parameters that step traced
    (``pyro.optim``'s convention), it builds the :class:`DefaultAdam` and steps it; ``train`` uses
    :attr:`optimizer` from then on. ``state``: a saved ``DefaultAdam`` state to resume from."""

    def __init__(self, lr: float, state: dict | None = None) -> None:
        self.lr, self.state = lr, state
        self.optimizer: DefaultAdam | None = None

    def __call__(self, params) -> None:
        self.optimizer = DefaultAdam.build(params, self.lr, self.state)
        self.optimizer.step()
