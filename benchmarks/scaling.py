"""How cost grows: time against problem size for four parts of pyro_lvm, with fitted log-log slopes.

Each sweep varies one size and holds the others at their defaults (the row's ``fixed``):

- ``training step``: one :func:`pyro_lvm.infer.train.svi_step` of ``DeepLatentGaussian(784, z_dim,
  (200, 200))`` with an ``AmortizedNormal`` guide in the configuration ``train()`` runs by default
  once warm (``JitTraceMeanField_ELBO``, one ``torch.optim.Adam``, Pyro validation off; compiled
  during the untimed warm-up), sweeping ``batch`` and ``z_dim``;
- ``mixture EM``: ``pyro_lvm.estimators.GaussianMixture(covariance_type="full", tol=0)`` fitted for
  ``max_iter`` iterations from ``gmm_em.py``'s data and shared start (no k-means), time / iterations,
  sweeping ``N`` (samples), ``D`` (features) and ``K`` (components); float64 on CPU;
- ``CTC``: ``ctc_log_likelihood(..., method="enum")`` forward and backward from logits (``ctc.py``'s
  step), sweeping ``T`` (frames), ``L`` (label length) and ``N`` (sequences), alphabet 28;
- ``evaluator``: :func:`pyro_lvm.infer.importance_log_likelihood` of the training step's model and
  guide (784-200-200-50, chunks of 100 samples), sweeping ``k`` (samples per example) and ``N``
  (examples).

Every point is the median (with quartiles) of repeated calls after untimed warm-up ones, on one
thread by its CPU time (``time.thread_time``; the wall clock on CUDA). Per sweep a summary row gives
``slope``, the least-squares slope of log(seconds) on log(size) over all points, and ``slope_top``
over the larger half of the sizes: 1 means doubling the size doubles the time, 0 that the size does
not matter (fixed per-call costs dominate). ``expected`` is the slope of the dominant arithmetic.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser, row, setup, timed, write_markdown, write_results  # noqa: E402
from ctc import _inputs, _ours, _step  # noqa: E402
from gmm_em import make_data, shared_init  # noqa: E402
from svi_overhead import PyroLVMStep, _networks  # noqa: E402

from pyro_lvm.estimators import GaussianMixture  # noqa: E402
from pyro_lvm.infer import importance_log_likelihood  # noqa: E402

__all__ = ["EXPECTED", "FIXED", "SWEEPS", "TABLE_COLUMNS", "build_parser", "fit_slope", "main", "plot"]

NAME = "scaling"

#: part -> the sizes each sweep holds fixed, per mode (``smoke``, ``quick``, ``full``)
FIXED = {
    "full": {
        "training step": dict(batch=128, z_dim=50, data_dim=784, hidden=(200, 200)),
        "mixture EM": dict(N=10_000, D=16, K=8, max_iter=10),
        "CTC": dict(T=200, L=20, N=16, C=28),
        "evaluator": dict(k=100, N=100, z_dim=50, data_dim=784, hidden=(200, 200)),
    },
    "smoke": {
        "training step": dict(batch=8, z_dim=4, data_dim=64, hidden=(32,)),
        "mixture EM": dict(N=200, D=2, K=2, max_iter=3),
        "CTC": dict(T=12, L=3, N=2, C=6),
        "evaluator": dict(k=4, N=4, z_dim=4, data_dim=64, hidden=(32,)),
    },
}
FIXED["quick"] = FIXED["full"]

#: (part, parameter) -> swept sizes, per mode
SWEEPS = {
    "full": {
        ("training step", "batch"): (8, 16, 32, 64, 128, 256, 512, 1024, 2048),
        ("training step", "z_dim"): (2, 5, 10, 20, 50, 100, 200, 400),
        ("mixture EM", "N"): (300, 1000, 3000, 10_000, 30_000, 100_000),
        ("mixture EM", "D"): (2, 4, 8, 16, 32, 64, 128, 256),
        ("mixture EM", "K"): (1, 2, 4, 8, 16, 32, 64),
        ("CTC", "T"): (25, 50, 100, 200, 400, 800),
        ("CTC", "L"): (2, 5, 10, 20, 40, 80),
        ("CTC", "N"): (1, 4, 16, 64, 256, 1024),
        ("evaluator", "k"): (3, 10, 30, 100, 300, 1000),
        ("evaluator", "N"): (3, 10, 30, 100, 300, 1000),
    },
    "quick": {
        ("training step", "batch"): (16, 64, 256, 1024),
        ("training step", "z_dim"): (2, 10, 50, 200),
        ("mixture EM", "N"): (1000, 3000, 10_000, 30_000),
        ("mixture EM", "D"): (4, 8, 16, 32, 64),
        ("mixture EM", "K"): (2, 8, 32),
        ("CTC", "T"): (50, 100, 200, 400),
        ("CTC", "L"): (5, 10, 20, 40),
        ("CTC", "N"): (1, 8, 64, 256),
        ("evaluator", "k"): (10, 30, 100, 300),
        ("evaluator", "N"): (10, 30, 100, 300),
    },
    "smoke": {
        ("training step", "batch"): (4, 8),
        ("training step", "z_dim"): (2, 4),
        ("mixture EM", "N"): (100, 200),
        ("mixture EM", "D"): (2, 3),
        ("mixture EM", "K"): (2, 3),
        ("CTC", "T"): (8, 12),
        ("CTC", "L"): (2, 3),
        ("CTC", "N"): (1, 2),
        ("evaluator", "k"): (2, 4),
        ("evaluator", "N"): (2, 4),
    },
}

#: (part, parameter) -> slope of the dominant arithmetic (None: no single power law; see README)
EXPECTED = {
    ("training step", "batch"): 1.0,  # every layer's matrix product is linear in the batch
    ("training step", "z_dim"): None,  # only the z-side layers grow; the 784-wide ones dominate
    ("mixture EM", "N"): 1.0,
    ("mixture EM", "D"): 2.0,  # full covariances: N K D^2 for the E- and M-steps (K D^3 Cholesky is smaller while D < N)
    ("mixture EM", "K"): 1.0,
    ("CTC", "T"): 1.0,  # one step of the Python loop per frame
    ("CTC", "L"): 1.0,  # 2L + 1 states, a band of 3 moves each
    ("CTC", "N"): 1.0,
    ("evaluator", "k"): 1.0,  # k decoder passes per example
    ("evaluator", "N"): 1.0,
}

#: repetitions timed per point, per mode
REPEATS = {"smoke": 2, "quick": 5, "full": 11}
#: untimed calls per point: the compiled training step runs its first three calls as the JIT's profiling runs
WARMUP = 3

TABLE_COLUMNS = [
    "case", "device", "part", "parameter", "size", "seconds", "seconds_q25", "seconds_q75", "repeats",
    "slope", "slope_top", "expected", "sizes", "fixed",
]


def _training_step(sizes: dict, device: torch.device) -> Callable[[], object]:
    """One compiled SVI step of the VAE on a (batch, data_dim) binary batch."""
    model, guide = _networks(sizes["data_dim"], sizes["hidden"], sizes["z_dim"], device, seed=0)
    x = torch.bernoulli(torch.full((sizes["batch"], sizes["data_dim"]), 0.13, device=device))
    pyro.clear_param_store()
    step = PyroLVMStep(model, guide, "jit", lr=1e-3)
    return lambda: step.step(x)


def _mixture_em(sizes: dict, device: torch.device) -> Callable[[], object]:
    """A full-covariance EM fit of max_iter iterations (tol=0) from gmm_em.py's shared start; returns the seconds' divisor."""
    n, d, k = sizes["N"], sizes["D"], sizes["K"]
    dtype = torch.float64 if device.type == "cpu" else torch.float32
    X = torch.as_tensor(make_data(n, d, k, seed=0), dtype=dtype, device=device)
    init = {key: torch.as_tensor(v, dtype=dtype, device=device) for key, v in shared_init(X.cpu().numpy(), k, "full", 0).items()}
    estimator = GaussianMixture(k, "full", tol=0.0, max_iter=sizes["max_iter"], reg_covar=1e-6, device=device, dtype=dtype, **init)

    def fit() -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter is reached on purpose
            return int(estimator.fit(X).n_iter_)

    return fit


def _ctc(sizes: dict, device: torch.device) -> Callable[[], object]:
    """The enumerated CTC log-likelihood of N sequences and its gradient to the (T, N, C) logits."""
    inputs = _inputs(sizes["T"], sizes["L"], sizes["C"], sizes["N"], device, torch.Generator().manual_seed(0))
    return lambda: _step(_ours, *inputs, method="enum")


def _evaluator(sizes: dict, device: torch.device) -> Callable[[], object]:
    """Importance-sampled log p(x) of N binary examples with k samples each (chunks of 100)."""
    model, guide = _networks(sizes["data_dim"], sizes["hidden"], sizes["z_dim"], device, seed=0)
    x = torch.bernoulli(torch.full((sizes["N"], sizes["data_dim"]), 0.13, device=device))
    return lambda: importance_log_likelihood(model.model, guide, x, num_samples=sizes["k"], chunk_size=100)


#: part -> builder of the call to time from the sizes of one point
BUILDERS = {"training step": _training_step, "mixture EM": _mixture_em, "CTC": _ctc, "evaluator": _evaluator}


def _median_seconds(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int, per_call: bool) -> dict:
    """Median and quartiles of the seconds of ``repeats`` calls; with ``per_call=False`` each call's time is
    divided by the count it returns (EM iterations)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        seconds, out = timed(fn, device)
        times.append(seconds if per_call else seconds / out)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {"seconds": statistics.median(times), "seconds_q25": q[0], "seconds_q75": q[2], "repeats": repeats}


def fit_slope(sizes, seconds) -> float:
    """Least-squares slope of log(seconds) against log(sizes): the exponent of a power law ``seconds ~ size**slope``."""
    return float(np.polyfit(np.log(np.asarray(sizes, dtype=float)), np.log(np.asarray(seconds, dtype=float)), 1)[0])


def _describe(sizes: dict) -> str:
    return ", ".join(f"{key}={'-'.join(map(str, v)) if isinstance(v, tuple) else v}" for key, v in sizes.items())


def plot(rows: list[dict], defaults: dict[str, str], path: Path) -> Path:
    """One log-log panel per part: seconds against size, a line per swept parameter, its slopes in the legend.

    :param defaults: part -> the sizes its sweeps hold fixed, for the panel's title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = list(dict.fromkeys(r["part"] for r in rows))
    cols = min(2, len(parts))
    rows_of_panels = -(-len(parts) // cols)
    fig, axes = plt.subplots(rows_of_panels, cols, figsize=(5.5 * cols, 4.2 * rows_of_panels), squeeze=False)
    for ax in axes.flat[len(parts):]:
        ax.set_visible(False)
    for ax, part in zip(axes.flat, parts):
        summaries = [r for r in rows if r["part"] == part and "slope" in r]
        for s in summaries:
            points = [r for r in rows if r["part"] == part and r["parameter"] == s["parameter"] and "size" in r]
            sizes = [r["size"] for r in points]
            label = f"{s['parameter']}: slope {s['slope']:.2f} (larger half {s['slope_top']:.2f})"
            ax.plot(sizes, [r["seconds"] for r in points], "o-", ms=4, label=label)
            ax.fill_between(sizes, [r["seconds_q25"] for r in points], [r["seconds_q75"] for r in points], alpha=0.2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("size of the swept parameter")
        ax.set_ylabel("seconds per call" if part != "mixture EM" else "seconds per EM iteration")
        ax.set_title(f"{part}\n(else {defaults.get(part, '')})", fontsize=8)
        ax.legend(fontsize=8)
        ax.grid(True, which="both", lw=0.3)
    fig.suptitle(f"{NAME}: {rows[0]['device_name']}, {rows[0]['clock']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's command line: the flags every benchmark takes."""
    return parser(NAME, __doc__.split("\n\n")[0])


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    device = setup(args)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    rows = []
    validation_before = pyro.infer.util.is_validation_enabled()
    try:
        for (part, parameter), sweep in SWEEPS[mode].items():
            fixed = FIXED[mode][part]
            times = []
            for size in sweep:
                sizes = {**fixed, parameter: size}
                fn = BUILDERS[part](sizes, device)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # JIT tracer warnings
                    timing = _median_seconds(fn, device, REPEATS[mode], WARMUP, per_call=part != "mixture EM")
                pyro.enable_validation(validation_before)  # the training step turns it off
                pyro.clear_param_store()
                times.append(timing["seconds"])
                rows.append(row(NAME, f"{part}, {parameter}={size}", device, args.quick or args.smoke,
                                part=part, parameter=parameter, size=size, **timing,
                                fixed=_describe({key: v for key, v in sizes.items() if key != parameter})))
                print(f"{NAME} {rows[-1]['case']:28s} {timing['seconds'] * 1e3:10.3f} ms", flush=True)
            top = max(2, (len(sweep) + 1) // 2)
            rows.append(row(
                NAME, f"{part}, {parameter} slope", device, args.quick or args.smoke,
                part=part, parameter=parameter, slope=fit_slope(sweep, times), slope_top=fit_slope(sweep[-top:], times[-top:]),
                expected=EXPECTED[part, parameter], sizes=f"{sweep[0]}-{sweep[-1]}", points=len(sweep),
                fixed=_describe({key: v for key, v in fixed.items() if key != parameter}),
            ))
            print(f"{NAME} {part}, {parameter}: slope {rows[-1]['slope']:.2f} (top {top} sizes {rows[-1]['slope_top']:.2f}, "
                  f"expected {rows[-1]['expected']})", flush=True)
    finally:
        pyro.enable_validation(validation_before)
    path = write_results(NAME, rows, args.out)
    write_markdown(NAME, json.loads(path.read_text()), path.parent, TABLE_COLUMNS)
    plot(rows, {part: _describe(fixed) for part, fixed in FIXED[mode].items()}, path.parent / f"{NAME}.png")
    print(f"wrote {path}, {NAME}.md and {NAME}.png")
    return rows


if __name__ == "__main__":
    main()
