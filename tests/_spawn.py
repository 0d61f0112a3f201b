"""Run a function on several spawned ranks of a gloo process group, never hanging the suite.

:func:`run_ranks` starts the ranks with torch.multiprocessing ("spawn"), each joining the group
through a rendezvous file, joins them with a timeout, kills any rank still running and fails
naming it. Shared by the tests of pyro_lvm.infer.distributed and pyro_lvm.lightning.
"""

from __future__ import annotations

import os
import time
import traceback
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed
import torch.multiprocessing as mp

WORLD, TIMEOUT_S = 2, 90


def _entry(fn, rank: int, world: int, folder: str, args: tuple) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world, timeout=timedelta(seconds=30)
    )
    try:
        torch.save(fn(rank, Path(folder), *args), f"{folder}/result{rank}.pt")
    except BaseException:
        Path(f"{folder}/error{rank}.txt").write_text(traceback.format_exc())
        raise SystemExit(1) from None
    finally:
        torch.distributed.destroy_process_group()


def run_ranks(fn, folder: Path, *args, world: int = WORLD, timeout: float = TIMEOUT_S, allow_failure: bool = False) -> list:
    """Run ``fn(rank, folder, *args)`` on ``world`` spawned ranks; their results (or error texts) in rank order.

    Each rank runs in float64 on one thread, in a gloo process group of ``world`` ranks that is set
    up before ``fn`` starts. ``fn`` must be importable by name (a module-level function).
    """
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_entry, args=(fn, rank, world, str(folder), args)) for rank in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    stuck = [rank for rank, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert not stuck, f"rank(s) {stuck} still running after {timeout} s (killed)"
    results = []
    for rank in range(world):
        error = folder / f"error{rank}.txt"
        if error.exists():
            assert allow_failure, f"rank {rank} failed:\n{error.read_text()}"
            results.append(error.read_text())
        else:
            results.append(torch.load(folder / f"result{rank}.pt", weights_only=False))
    return results
