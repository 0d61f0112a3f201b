"""Data parallelism on ``torch.distributed``: what :func:`~pyro_lvm.infer.train`, the evaluators and
the mixture EM need to run on several processes (``torchrun --nproc-per-node N``; gloo on the CPU,
nccl on GPUs).

- :func:`current_ranks` detects the process group (``torchrun`` sets it up through
  ``torch.distributed.init_process_group``; :func:`init_from_environment` does that call).
- :class:`Ranks` is one process's view of the group: its rank and the world size, rank-0-only
  writing (:attr:`Ranks.is_main`), and the collectives the training loop needs: starting every
  rank from rank 0's parameters, summing gradients, agreeing that every rank's step worked (so a
  rank that raises stops the others with an error naming it, never a hang), gathering per-rank objects.
- :class:`ShardedBatches` shards tensor data with ``torch.utils.data.DistributedSampler``'s
  semantics: every example once per epoch, a different shuffle each epoch, the same on every rank.
- :class:`ShardedRows` sums the sufficient statistics of the mixture EM
  (:mod:`pyro_lvm.ops.mixture`) over the rows that each rank holds.
- :func:`evaluate_sharded` splits per-example evaluation across ranks and gathers it in the
  original order, each block of examples seeded from its position, so the result does not
  depend on the number of ranks.

Pyro's traps, and how they are met: parameters live in Pyro's global param store and guides
create some lazily, so the ranks trace the model and guide once (a warm-up on the first batch)
before rank 0's values are broadcast; ``pyro.optim`` makes one torch optimizer per parameter, so
gradients are all-reduced inside the loss, before any optimizer steps.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pyro
import torch
import torch.distributed as dist
from pyro import poutine
from torch.utils.data import DataLoader, DistributedSampler

from pyro_lvm.ops.mixture import Rows

__all__ = [
    "RankFailed",
    "Ranks",
    "ShardedBatches",
    "ShardedRows",
    "current_ranks",
    "evaluate_sharded",
    "init_from_environment",
    "is_main_process",
]


class RankFailed(RuntimeError):
    """Another rank raised; this rank stops too. ``ranks`` lists the ranks that failed."""

    def __init__(self, message: str, ranks: list[int]) -> None:
        super().__init__(message)
        self.ranks = ranks

    def __reduce__(self):
        return type(self), (self.args[0], self.ranks)


def init_from_environment(backend: str | None = None, timeout_s: float = 600.0) -> Ranks | None:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``, ...),
    unless the group is already set up; return its :class:`Ranks`, or None outside ``torchrun``.

    :param backend: default ``"nccl"`` when CUDA is available, else ``"gloo"``. With nccl each
        process takes the GPU ``LOCAL_RANK``.
    :param timeout_s: how long a collective waits for a rank that stopped answering.
    """
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return current_ranks(True)


def is_main_process() -> bool:
    """Whether this process writes files and shows progress: rank 0, or the only process."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def current_ranks(distributed: bool | None = None) -> Ranks | None:
    """The :class:`Ranks` of the default process group, or None for a single process.

    :param distributed: None: the default group when one is set up with more than one rank;
        True: the default group, which must be set up (one rank included); False: None.
    :raises ValueError: for ``distributed=True`` without a process group.
    """
    if distributed is False:
        return None
    initialized = dist.is_available() and dist.is_initialized()
    if distributed is None:
        return Ranks() if initialized and dist.get_world_size() > 1 else None
    if distributed is not True:
        raise ValueError(f"distributed must be None, True or False, got {distributed!r}")
    if not initialized:
        raise ValueError(
            "distributed=True, but no torch.distributed process group is set up; launch with torchrun and call "
            "pyro_lvm.infer.distributed.init_from_environment() (or torch.distributed.init_process_group) first"
        )
    return Ranks()


class Ranks:
    """This process's place in the default process group, and the collectives built on it.

    Tensors travel on the backend's device: the CPU for gloo, this process's GPU for nccl.
    """

    def __init__(self) -> None:
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``values`` over ranks (float64 on the backend's device)."""
        buffer = values.detach().to(self.device, torch.float64)
        dist.all_reduce(buffer)
        return buffer

    def together(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on every rank and agree that it worked everywhere before any rank goes on.

        :param what: what ``fn`` does, for the message.
        :returns: ``fn(*args, **kwargs)``.
        :raises: on a rank where ``fn`` raised, its exception; on the others :class:`RankFailed`
            naming the ranks that failed (a rank that raises therefore never leaves the others
            waiting in a collective).
        """
        error, result = None, None
        try:
            result = fn(*args, **kwargs)
        except Exception as e:  # every failure must reach the other ranks
            error = e
        self.check_all(error, what)
        return result

    def check_all(self, error: BaseException | None, what: str) -> None:
        """All-reduce which ranks failed (``error`` not None) and raise on every rank if any did."""
        self.sum_step(error, what)

    def sum_step(self, error: BaseException | None, what: str, *numbers: float, grad_size: int = 0) -> list[float]:
        """One small all-reduce that agrees on a step: which ranks failed, the sums of ``numbers``
        (e.g. a loss and an example count, float64), and that every rank holds ``grad_size`` gradient
        elements to sum next.

        :returns: the sums of ``numbers`` over ranks.
        :raises: on a rank where ``error`` is not None, ``error``; on the others :class:`RankFailed`
            naming the ranks that failed; on every rank, ValueError when the ranks hold gradients of
            different sizes (their models or guides differ), before a mismatched all-reduce could hang.
        """
        w = self.world_size
        header = torch.zeros(2 * w + len(numbers), dtype=torch.float64)
        header[self.rank] = error is not None
        header[w + self.rank] = grad_size
        header[2 * w:] = torch.tensor(numbers, dtype=torch.float64)
        header = self._all_sum(header)
        failed = [int(r) for r in header[:w].nonzero().flatten()]
        if error is not None:
            raise error
        if failed:
            raise RankFailed(f"rank(s) {failed} of {w} raised during {what}; see their own error output", failed)
        sizes = [int(n) for n in header[w : 2 * w]]
        if len(set(sizes)) > 1:
            raise ValueError(f"the ranks hold gradients of different sizes during {what} (elements per rank: {sizes}); "
                             f"every rank must run the same model and guide")
        return header[2 * w:].tolist()

    def broadcast_parameters(self, modules: list[torch.nn.Module]) -> None:
        """Copy rank 0's module parameters and buffers and Pyro param store values to every rank."""
        store = pyro.get_param_store()
        tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
        tensors += [store.get_state()["params"][name] for name in sorted(store.keys())]  # unconstrained values
        with torch.no_grad():
            for t in tensors:
                buffer = t.detach().to(self.device)
                dist.broadcast(buffer, src=0)
                t.copy_(buffer)

    def sum_gradients(self, params: list[torch.Tensor]) -> None:
        """Replace each parameter's gradient by its sum over ranks, in one all-reduce in the
        parameters' own precision (float64 if any is float64); a parameter gets a gradient where any
        rank has one (zeros stand in for the ranks without). Every rank must pass as many elements
        (:meth:`sum_step` checks it first)."""
        if not params:
            return
        dtype = functools.reduce(torch.promote_types, (p.dtype for p in params))
        present = torch.tensor([p.grad is not None for p in params], dtype=dtype, device=self.device)
        flat = torch.cat([present, *(p.grad.reshape(-1).to(self.device, dtype) if p.grad is not None
                                     else torch.zeros(p.numel(), dtype=dtype, device=self.device) for p in params)])
        dist.all_reduce(flat)
        offset = len(params)
        for i, p in enumerate(params):
            if flat[i] > 0:
                p.grad = flat[offset : offset + p.numel()].view(p.shape).to(p.device, p.dtype)
            offset += p.numel()

    def sum_numbers(self, *numbers: float) -> list[float]:
        """The sums over ranks of a few numbers (e.g. a loss and an example count)."""
        return self._all_sum(torch.tensor(numbers, dtype=torch.float64)).tolist()

    def broadcast_int(self, value: int) -> int:
        """Rank 0's ``value`` on every rank."""
        buffer = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.broadcast(buffer, src=0)
        return int(buffer)

    def gather_objects(self, obj: Any) -> list:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def gather_rows(self, local: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's ``local`` (n_r, ...) along dim 0 in rank order, on every rank."""
        counts = [int(c) for c in self.gather_counts(local.shape[0])]
        padded = local.new_zeros((max(counts), *local.shape[1:]))
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded, device=self.device) for _ in counts]
        dist.all_gather(parts, padded.to(self.device))
        return torch.cat([part[:c] for part, c in zip(parts, counts)]).to(local.device)

    def gather_counts(self, count: int) -> list[int]:
        """Every rank's ``count``, in rank order."""
        counts = [torch.zeros(1, dtype=torch.int64, device=self.device) for _ in range(self.world_size)]
        dist.all_gather(counts, torch.tensor([count], dtype=torch.int64, device=self.device))
        return [int(c) for c in counts]

    # ------------------------------------------------------------------ training

    def shard(self, tensors: tuple[torch.Tensor, ...], batch_size: int, shuffle: bool, seed: int) -> ShardedBatches:
        """This rank's share of minibatches of ``batch_size`` rows (over all ranks) of ``tensors``.

        :raises ValueError: when there are fewer examples than ranks, or ``batch_size`` is not a
            multiple of the world size.
        """
        n = tensors[0].shape[0]
        if n < self.world_size:
            raise ValueError(
                f"data has {n} examples but the world size is {self.world_size}: every rank needs at least one "
                f"example; expected at least {self.world_size} examples, or fewer ranks"
            )
        if batch_size % self.world_size:
            raise ValueError(
                f"batch_size={batch_size} is not divisible by the world size {self.world_size}: batch_size counts the "
                f"examples of one step over all ranks, each rank takes batch_size / world size; expected a multiple of "
                f"{self.world_size}, e.g. {batch_size // self.world_size * self.world_size or self.world_size}"
            )
        return ShardedBatches(tensors, batch_size, shuffle, self.rank, self.world_size, seed)

    def check_loader(self, data: DataLoader | Any, name: str = "data") -> None:
        """Refuse a DataLoader whose sampler would give every rank the same examples."""
        sampler = getattr(data, "sampler", None)
        batch_sampler = getattr(data, "batch_sampler", None)
        samplers = [sampler, getattr(batch_sampler, "sampler", None), batch_sampler]
        if not any(isinstance(s, DistributedSampler) for s in samplers):
            raise ValueError(
                f"{name} is a {type(data).__name__} without a torch.utils.data.DistributedSampler, so each of the "
                f"{self.world_size} ranks would read every example; expected "
                f"DataLoader(dataset, sampler=DistributedSampler(dataset), batch_size=...), or pass tensors (sharded here)"
            )

    @staticmethod
    def set_epoch(batches: Any, epoch: int) -> None:
        """Tell a sharded source (ours, or a DataLoader's DistributedSampler) which epoch starts."""
        for source in (batches, getattr(getattr(batches, "batches", None), "sampler", None)):
            if callable(getattr(source, "set_epoch", None)):
                source.set_epoch(epoch)

    def summed_loss(self, loss: Any, batches: Any) -> SummedLoss:
        """``loss`` whose steps sum losses, example counts and gradients over ranks (see :class:`SummedLoss`)."""
        return SummedLoss(loss, self, batches)


class ShardedBatches:
    """One rank's minibatches, with ``DistributedSampler``'s semantics over the whole data.

    Epoch ``e`` orders the N examples by ``randperm(N)`` of a generator seeded with ``seed + e``
    (the same on every rank), or ``0..N-1`` without shuffling; its step ``k`` covers the examples
    at positions ``k B .. (k + 1) B - 1`` of that order (B = ``batch_size``, the last step fewer),
    and rank ``r`` takes every ``world_size``-th of them from the ``r``-th. So a step over all ranks
    sees exactly the examples one process with batch size B would, and every example once per epoch.
    A rank left without an example on a short last step gets the step's first example as a
    stand-in that counts nothing (:attr:`empty` is True; :class:`SummedLoss` masks it).

    :param tensors: equally long tensors, N rows each.
    """

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, shuffle: bool, rank: int, world_size: int, seed: int) -> None:
        self.tensors, self.batch_size, self.shuffle = tensors, batch_size, shuffle
        self.rank, self.world_size, self.seed, self.epoch = rank, world_size, seed, 0
        self.n = tensors[0].shape[0]
        self.empty = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def order(self) -> torch.Tensor:
        """The epoch's order of the N examples, (N,) int64, the same on every rank."""
        if not self.shuffle:
            return torch.arange(self.n)
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.order().to(self.tensors[0].device)
        for start in range(0, self.n, self.batch_size):
            step = order[start : start + self.batch_size]
            idx = step[self.rank :: self.world_size]
            self.empty = len(idx) == 0
            yield tuple(t[step[:1] if self.empty else idx] for t in self.tensors)


class SummedLoss:
    """A Pyro ELBO whose ``loss_and_grads`` leaves every rank with the sums over ranks of the loss and
    of each parameter's gradient, so one optimizer step on each rank is the step of one process on
    the union of the ranks' batches (the loss of a step is a sum over its examples: the gradients
    are summed, DDP's average times the world size). Any optimizer works, ``pyro.optim``'s
    per-parameter ones included, since the gradients are summed before it steps.

    :ivar last_count: the examples of the last step over all ranks.
    """

    def __init__(self, loss: Any, ranks: Ranks, batches: Any) -> None:
        self.objective, self.ranks, self.batches, self.last_count = loss, ranks, batches, 0

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        empty = getattr(self.batches, "empty", False)
        if empty:  # a stand-in example that must count nothing
            model, guide = poutine.mask(model, mask=False), poutine.mask(guide, mask=False)
        count = 0 if empty else (int(args[0].shape[0]) if torch.is_tensor(args[0]) and args[0].dim() > 0 else 1)
        error, value, params = None, 0.0, []
        try:
            with poutine.trace(param_only=True) as capture:
                value = float(self.objective.loss_and_grads(model, guide, *args, **kwargs))
            params = list(dict.fromkeys(site["value"].unconstrained() for site in capture.trace.nodes.values()))
        except Exception as e:  # the other ranks must hear of it
            error = e
        grad_size = len(params) + sum(p.numel() for p in params)
        total, count = self.ranks.sum_step(error, "a training step", value, count, grad_size=grad_size)
        self.last_count = int(count)
        self.ranks.sum_gradients(params)
        return total

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        return float(self.objective.loss(model, guide, *args, **kwargs))


class ShardedRows(Rows):
    """The rows of a data matrix split across ranks, each rank holding its own (``X`` (n_r, D));
    sums over rows are all-reduced, so :mod:`pyro_lvm.ops.mixture` computes on all N rows.

    Row numbers are global: rank ``r`` holds rows ``offset .. offset + n_r - 1`` of the
    concatenation of the ranks' rows in rank order.
    """

    def __init__(self, ranks: Ranks, local_rows: int) -> None:
        self.ranks = ranks
        counts = ranks.gather_counts(local_rows)
        self.n, self.offset, self.local = sum(counts), sum(counts[: ranks.rank]), local_rows

    def sum(self, partial: torch.Tensor) -> torch.Tensor:
        return self.ranks._all_sum(partial).to(partial.device, partial.dtype)

    def max(self, partial: torch.Tensor) -> torch.Tensor:
        buffer = partial.detach().to(self.ranks.device).clone()
        dist.all_reduce(buffer, op=dist.ReduceOp.MAX)
        return buffer.to(partial.device)

    def mean(self, X: torch.Tensor) -> torch.Tensor:
        return self.sum(X.sum(0)) / self.n

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        return self.ranks.gather_rows(local)

    def take(self, X: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        mine = (index >= self.offset) & (index < self.offset + self.local)
        rows = X.new_zeros((*index.shape, *X.shape[1:]))
        rows[mine] = X[index[mine] - self.offset]
        return self.sum(rows)

    def own(self, full: torch.Tensor, dim: int = 0) -> torch.Tensor:
        return full.narrow(dim, self.offset, self.local)


def evaluate_sharded(
    evaluator: Callable[..., torch.Tensor],
    model: Callable,
    guide: Callable,
    *args: torch.Tensor,
    seed: int = 0,
    block_size: int = 100,
    ranks: Ranks | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """Run a per-example evaluator (:func:`~pyro_lvm.infer.importance_log_likelihood`,
    :func:`~pyro_lvm.infer.per_example_elbo`, ...) with the examples split across ranks; every
    rank gets the whole result (N,) in the original order.

    The N examples fall into blocks of ``block_size``; block ``j`` is evaluated under
    ``torch.manual_seed(seed + j)`` (the global random state is put back afterwards), so the
    draws of an example depend on its position and ``seed`` only: the result is the same on any
    number of ranks, one process (``ranks=None`` outside a process group) included. Ranks take
    contiguous runs of blocks.

    :param args: the data, tensors of N rows each (split along dim 0).
    :param ranks: default :func:`current_ranks`.
    :param kwargs: passed to ``evaluator`` (``num_samples=``, ``chunk_size=``, ...).
    :returns: (N,).
    :raises ValueError: when an argument is not a tensor of N rows, or ``block_size`` < 1.
    """
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    if not args or not all(torch.is_tensor(a) and a.dim() > 0 and a.shape[0] == args[0].shape[0] for a in args):
        shapes = [tuple(a.shape) if torch.is_tensor(a) else type(a).__name__ for a in args]
        raise ValueError(
            f"evaluate_sharded splits its arguments into examples along dim 0; expected tensors of equally many rows, got {shapes}"
        )
    ranks = current_ranks() if ranks is None else ranks
    rank, world = (0, 1) if ranks is None else (ranks.rank, ranks.world_size)
    n = args[0].shape[0]
    blocks = math.ceil(n / block_size)
    mine = range(rank * blocks // world, (rank + 1) * blocks // world)
    devices = [args[0].device] if args[0].device.type == "cuda" else []
    parts = []
    for j in mine:
        rows = slice(j * block_size, min((j + 1) * block_size, n))
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed + j)
            parts.append(evaluator(model, guide, *(a[rows] for a in args), **kwargs))
    local = torch.cat(parts) if parts else args[0].new_zeros(0, dtype=torch.get_default_dtype())
    return local if ranks is None else ranks.gather_rows(local)
