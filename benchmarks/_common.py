"""What every benchmark shares: command line, paired A/B timing, result rows, JSON and Markdown.

Timing is *paired*: the two contenders run alternately (A B, then B A, ...) and each pair
gives one ratio; the reported ratio is the median over pairs, so load from other processes
on a shared machine hits both sides of a pair alike and cancels out of the figure. On CUDA
every timed call is bracketed by ``torch.cuda.synchronize`` and timed by the wall clock. On
CPU with one torch thread (the default, ``--threads 1``) all the work runs in the calling
thread, so the clock is that thread's CPU time (``time.thread_time``): other processes
competing for the cores then slow neither side down in the figures.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pyro
import torch

from pyro_lvm.runs import device_name, nonnegative_int, output_dir, resolve_device, set_seed, write_json

__all__ = [
    "ID_KEYS",
    "RESULTS_DIR",
    "clock_name",
    "jax_peer_available",
    "markdown_table",
    "paired_ratio",
    "parser",
    "row",
    "setup",
    "timed",
    "write_markdown",
    "write_results",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: Keys every row carries besides its metrics (what was measured, where, with which versions).
ID_KEYS = ("benchmark", "case", "device", "device_name", "torch", "pyro", "threads", "clock", "quick")


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """The flags every benchmark takes: ``--quick``, ``--smoke``, ``--device``, ``--out``, ``--seed``, ``--threads``."""
    p = argparse.ArgumentParser(prog=f"benchmarks/{name}.py", description=description)
    p.add_argument("--quick", action="store_true", help="small configuration that finishes in a couple of minutes on CPU")
    p.add_argument(
        "--smoke", action="store_true", help="tiny sizes and few repetitions for the test suite (seconds; the figures mean nothing)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--out", default=str(RESULTS_DIR), help=f"folder for {name}.json and {name}.md (default: benchmarks/results)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--threads", type=nonnegative_int, default=1,
        help="torch CPU threads; 1 (default) keeps ratios meaningful on a shared machine, 0 leaves torch's default",
    )
    return p


def setup(args: argparse.Namespace) -> torch.device:
    """Resolve the device, pin CPU threads and seed; returns the device."""
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_seed(args.seed)
    return device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def jax_peer_available(threads: int, module: str = "jax") -> bool:
    """Import ``module`` (``jax`` or ``numpyro``) for a peer row, pinning XLA to one CPU thread
    first when ``threads == 1``; False when it is not installed (``pip install numpyro jax``)."""
    if threads == 1 and "jax" not in sys.modules:
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def clock_name(device: torch.device) -> str:
    """``"thread_time"`` on CPU with one torch thread, else ``"perf_counter"`` (wall clock)."""
    return "thread_time" if device.type == "cpu" and torch.get_num_threads() == 1 else "perf_counter"


def timed(fn: Callable[[], object], device: torch.device, clock: str | None = None) -> tuple[float, object]:
    """Seconds one call of ``fn`` takes (CUDA work included), and its result.

    :param clock: a function name in :mod:`time`; default :func:`clock_name` of ``device``.
    """
    clock = getattr(time, clock or clock_name(device))
    _sync(device)
    t0 = clock()
    out = fn()
    _sync(device)
    return clock() - t0, out


def paired_ratio(
    fn_a: Callable[[], object],
    fn_b: Callable[[], object],
    device: torch.device,
    repeats: int = 21,
    warmup: int = 2,
    clock: str | None = None,
) -> dict:
    """Time ``fn_a`` and ``fn_b`` in alternating pairs; ratio = time(a) / time(b).

    :param repeats: number of (a, b) pairs; odd pairs run b first, so drift hits both alike.
    :param warmup: untimed calls of each before timing (allocations, caches, JIT, cuDNN).
    :param clock: as in :func:`timed` (``"perf_counter"`` for work that runs on other threads).
    :returns: ``ratio`` (median of the per-pair ratios), ``ratio_q25`` and ``ratio_q75``
        (its quartiles), ``a_ms`` and ``b_ms`` (median milliseconds per call), ``pairs``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn_a()
        fn_b()
    ta, tb = [], []
    for i in range(repeats):
        if i % 2 == 0:
            ta.append(timed(fn_a, device, clock)[0])
            tb.append(timed(fn_b, device, clock)[0])
        else:
            tb.append(timed(fn_b, device, clock)[0])
            ta.append(timed(fn_a, device, clock)[0])
    return pair_summary(ta, tb, clock or clock_name(device))


def pair_summary(ta: Sequence[float], tb: Sequence[float], clock: str) -> dict:
    """Median and quartiles of the per-pair ratios ``ta[i] / tb[i]`` (seconds), as :func:`paired_ratio` returns them."""
    ratios = sorted(a / b for a, b in zip(ta, tb))
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "ratio": statistics.median(ratios),
        "ratio_q25": q[0],
        "ratio_q75": q[2],
        "a_ms": 1e3 * statistics.median(ta),
        "b_ms": 1e3 * statistics.median(tb),
        "pairs": len(ratios),
        "clock": clock,
    }


def row(benchmark: str, case: str, device: torch.device, quick: bool, **metrics) -> dict:
    """One result row: the identifying keys of :data:`ID_KEYS`, then ``metrics``."""
    return {
        "benchmark": benchmark,
        "case": case,
        "device": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "clock": clock_name(device),
        "quick": quick,
        "python": platform.python_version(),
        **metrics,
    }


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table of ``rows``, one column per field.

    :param columns: the fields to show, in order (a field named twice is shown once); default:
        ``case``, ``device`` and every metric of any row, in order of first appearance.
    """
    if not rows:
        return "_no rows_\n"
    if columns is None:
        skip = set(ID_KEYS) - {"case", "device"} | {"python"}
        columns = [k for r in rows for k in r if k not in skip]
    columns = list(dict.fromkeys(columns))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _describe(rows: Sequence[dict]) -> str:
    seen = []
    for r in rows:
        threads = f", {r['threads']} torch thread(s)" if r.get("threads") else ""
        line = f"- {r['device_name']}: torch {r['torch']}, pyro {r['pyro']}{threads}{', --quick' if r.get('quick') else ''}"
        if line not in seen:
            seen.append(line)
    return "\n".join(seen) + "\n"


def write_markdown(
    name: str, rows: Sequence[dict], out: str | Path, columns: Sequence[str] | None = None, head: str | None = None
) -> Path:
    """Write ``out/<name>.md``: ``head`` (default: ``## <name>`` and the devices of ``rows``), then
    :func:`markdown_table` of ``rows`` and ``columns``. Returns its path."""
    path = Path(out) / f"{name}.md"
    if head is None:
        head = f"## {name}\n\n{_describe(rows)}\n"
    path.write_text(head + markdown_table(rows, columns))
    return path


def write_results(name: str, rows: list[dict], out: str | Path) -> Path:
    """Write ``out/<name>.json`` and ``out/<name>.md``; returns the JSON path.

    Rows already in the JSON from *other* devices (another ``device_name``) are kept, so a
    CPU run and a CUDA run of the same benchmark share one file.
    """
    out = output_dir(out)
    path = out / f"{name}.json"
    mine = {r["device_name"] for r in rows}
    kept = []
    if path.exists():
        try:
            kept = [r for r in json.loads(path.read_text()) if r.get("device_name") not in mine]
        except (ValueError, TypeError, AttributeError):
            kept = []
    all_rows = kept + rows
    write_json(all_rows, path)
    write_markdown(name, all_rows, out)
    return path
