"""Data-parallel throughput: :func:`pyro_lvm.infer.train` on 1 and N processes (torch.distributed).

Each case trains an MNIST-sized VAE (``DeepLatentGaussian`` 784-200-200-50 with an
``AmortizedNormal`` guide, ``Trace_ELBO``, ``pyro.optim.Adam``) on random binary images, with
``--per-rank-batch`` examples per rank and step (weak scaling: a step over W ranks sees W times
the examples). One process runs ``train`` alone (no process group, the baseline); W > 1 processes
join a process group (gloo on the CPU, each with ``--threads`` torch threads; nccl on CUDA,
one GPU each) and ``train`` shards the data and sums the gradients. Throughput is examples per
second over all ranks, timed by the wall clock on rank 0 from the end of step 20 (after ``train``'s
validated first steps and its compilation of the ELBO) to the last step; ``ratio`` is the
throughput over that of one process (ideal: W).

The processes share the machine, so on the CPU the figure means something only when the cores
are otherwise idle (one core per rank).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser, row, setup, write_results  # noqa: E402

from pyro_lvm.guides import AmortizedNormal  # noqa: E402
from pyro_lvm.infer import LambdaCallback, train  # noqa: E402
from pyro_lvm.models import DeepLatentGaussian  # noqa: E402
from pyro_lvm.runs import positive_int, set_seed  # noqa: E402

NAME = "distributed"


def _rank(rank: int, world: int, backend: str, folder: str, cfg: dict) -> None:
    """One process: join the group (W > 1), train, and (rank 0) write the timing."""
    torch.set_num_threads(cfg["threads"])
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if world > 1:
        if backend == "nccl":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world,
                                timeout=timedelta(seconds=300))
    set_seed(cfg["seed"])
    x = torch.rand(cfg["examples"] * world, cfg["data_dim"]).bernoulli()
    model = DeepLatentGaussian(cfg["data_dim"], z_dim=cfg["z_dim"], hidden_dims=cfg["hidden"])
    guide = AmortizedNormal(cfg["data_dim"], cfg["z_dim"], hidden_dims=cfg["hidden"])
    times = {}

    def clock(state):
        if state.step in (cfg["warmup"], cfg["steps"]):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[state.step] = time.perf_counter()

    train(model.model, guide, x, steps=cfg["steps"], batch_size=cfg["batch"] * world, device=device, progress=False,
          callbacks=[LambdaCallback(on_step_end=clock)], distributed=world > 1)
    if rank == 0:
        seconds = times[cfg["steps"]] - times[cfg["warmup"]]
        torch.save({"seconds": seconds}, f"{folder}/timing.pt")
    if world > 1:
        dist.destroy_process_group()


def measure(world: int, backend: str, cfg: dict) -> float:
    """Examples per second of ``world`` processes (all ranks together)."""
    with tempfile.TemporaryDirectory() as folder:
        mp.start_processes(_rank, args=(world, backend, folder, cfg), nprocs=world, start_method="spawn")
        seconds = torch.load(f"{folder}/timing.pt")["seconds"]
    return (cfg["steps"] - cfg["warmup"]) * cfg["batch"] * world / seconds


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's command line: the flags every benchmark takes, the process counts and the batch."""
    p = parser(NAME, __doc__.splitlines()[0])
    p.add_argument("--world-sizes", type=positive_int, nargs="+", default=None,
                   help="process counts to time (default: 1 2 on CPU; 1 and every GPU on CUDA)")
    p.add_argument("--per-rank-batch", type=positive_int, nargs="+", default=[128, 1024],
                   help="examples per rank and step, one set of cases each (default: 128 1024)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="steps per case, the first 20 (validated, then compiling) untimed (default: 400, --quick 150, --smoke 6)")
    return p


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    device = setup(args)
    backend = "nccl" if device.type == "cuda" else "gloo"
    worlds = args.world_sizes or ([1, torch.cuda.device_count()] if backend == "nccl" else [1, 2])
    worlds = sorted(set(worlds) | {1})
    if backend == "nccl" and max(worlds) > torch.cuda.device_count():
        raise ValueError(f"--world-sizes {max(worlds)} needs as many GPUs; this machine has {torch.cuda.device_count()}")
    small = args.smoke
    steps = args.steps or (6 if small else 150 if args.quick else 400)
    hidden = (32,) if small else (200, 200)
    rows = []
    for batch in args.per_rank_batch:
        cfg = dict(threads=max(args.threads, 1), seed=args.seed, examples=batch * 4, data_dim=64 if small else 784,
                   z_dim=4 if small else 50, hidden=hidden, batch=batch, steps=steps, warmup=min(20, steps - 1))
        baseline = None
        for world in worlds:
            throughput = measure(world, backend, cfg)
            baseline = baseline or throughput
            case = "1 process" if world == 1 else f"{backend}, {world} processes"
            rows.append(row(NAME, f"batch {batch} per rank, {case}", device, args.quick or args.smoke,
                            backend=backend if world > 1 else "none", world_size=world, per_rank_batch=batch,
                            steps=steps, examples_per_second=throughput, ratio=throughput / baseline))
            print(f"{NAME} batch {batch} per rank, {backend} world size {world}: {throughput:.0f} examples/s, "
                  f"{throughput / baseline:.2f}x one process", flush=True)
    path = write_results(NAME, rows, args.out)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
