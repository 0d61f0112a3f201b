"""Mixture EM: ``pyro_lvm.estimators.GaussianMixture`` against scikit-learn's ``GaussianMixture``.

Both fit the same synthetic data (a mixture with known, well separated components) from the
same starting point (``means_init``, ``weights_init``, ``precisions_init``: K data points
drawn at random, uniform weights, the data's overall precision) with the same ``tol`` and
``max_iter``, until convergence. scikit-learn runs in float64; on CPU its BLAS is pinned to
the same number of threads as torch (``--threads``), on a CUDA machine it uses every core
(the CPU it would run on instead of the GPU). pyro_lvm runs in ``--dtype`` (float64 on
CPU, float32 on CUDA by default). Cases with N*D*K of 1e9 or more are timed once (one
pair, no warm-up: scikit-learn takes minutes there); every case first warms pyro_lvm up
on 1000 rows.

Metrics per case: ``ratio_vs_sklearn`` = pyro_lvm fit time / scikit-learn fit time (paired,
median), ``speedup`` = its inverse, and ``loglik_gap`` = pyro_lvm's final mean log-likelihood
per sample minus scikit-learn's (both from ``score(X)``; >= -1e-3 means we converge as well).

On CPU a peer row per case, ``<case>, jax``, times the same EM written in JAX (the whole fit
one ``jax.jit``, float64, XLA pinned to ``--threads``; ``_jax_gmm_em.py``) against
scikit-learn by the wall clock: the fastest thing people would write instead. It is skipped,
with a note, when JAX is not installed (``pip install numpyro jax``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import jax_peer_available, paired_ratio, parser, row, setup, write_results  # noqa: E402

from pyro_lvm.runs import nonnegative_float, positive_int  # noqa: E402

__all__ = ["build_parser", "main", "make_data", "shared_init"]

NAME = "gmm_em"

#: (N, D, K, covariance_type, devices it runs on)
FULL_CASES = [
    (10_000, 8, 4, "full", ("cpu", "cuda")),
    (100_000, 32, 16, "diag", ("cpu", "cuda")),
    (100_000, 32, 16, "full", ("cpu", "cuda")),
    (1_000_000, 64, 64, "diag", ("cuda",)),
]
QUICK_CASES = [
    (10_000, 8, 4, "full", ("cpu", "cuda")),
    (20_000, 16, 8, "diag", ("cpu", "cuda")),
]
SMOKE_CASES = [(500, 3, 2, "full", ("cpu", "cuda"))]


def _count(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def make_data(n: int, d: int, k: int, seed: int) -> np.ndarray:
    """``(n, d)`` float64 samples of a K-component Gaussian mixture with random full covariances."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(k, d))
    factors = rng.normal(scale=1.0 / np.sqrt(d), size=(k, d, d))
    z = rng.choice(k, size=n, p=rng.dirichlet(np.full(k, 5.0)))
    eps = rng.normal(size=(n, d))
    return means[z] + np.einsum("nij,nj->ni", factors[z], eps) + 0.3 * rng.normal(size=(n, d))


def shared_init(X: np.ndarray, k: int, covariance_type: str, seed: int) -> dict:
    """One starting point for both libraries: K random data points as means, uniform weights,
    the data's overall precision (a matrix per component for "full", its diagonal for "diag")."""
    rng = np.random.default_rng(seed + 1)
    means = X[rng.choice(len(X), size=k, replace=False)]
    cov = np.cov(X, rowvar=False)
    if covariance_type == "full":
        precisions = np.repeat(np.linalg.inv(cov)[None], k, axis=0)
    else:
        precisions = np.repeat((1.0 / np.diag(cov))[None], k, axis=0)
    return {"means_init": means, "weights_init": np.full(k, 1.0 / k), "precisions_init": precisions}


def _jax_rows(args, cases, pairs: int, sklearn_threads: int | None) -> list[dict]:
    """Peer rows: the EM in JAX over scikit-learn, same data, start, tol and max_iter."""
    if not jax_peer_available(args.threads):
        print(f"{NAME}: JAX is not installed (pip install numpyro jax); no jax rows")
        return []
    import jax
    from _jax_gmm_em import JaxMixtureEM
    from sklearn.mixture import GaussianMixture as SkGaussianMixture
    from threadpoolctl import threadpool_limits

    device, rows = torch.device("cpu"), []
    for n, d, k, cov_type, devices in cases:
        if "cpu" not in devices:
            continue
        X = make_data(n, d, k, args.seed)
        init = shared_init(X, k, cov_type, args.seed)
        common = dict(covariance_type=cov_type, tol=args.tol, max_iter=args.max_iter, reg_covar=1e-6)
        peer = JaxMixtureEM(X, init, **common)
        theirs = SkGaussianMixture(n_components=k, **common, **init, init_params="random_from_data", random_state=args.seed)
        peer.fit()  # compile
        with threadpool_limits(sklearn_threads) if sklearn_threads else contextlib.nullcontext(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            timing = paired_ratio(peer.fit, lambda: theirs.fit(X), device, repeats=pairs, warmup=1, clock="perf_counter")
        theirs_ll = float(theirs.score(X))
        rows.append(row(
            NAME, f"{_count(n)} x {d} x {k} {cov_type}, jax", device, args.quick or args.smoke,
            n=n, d=d, k=k, covariance_type=cov_type, dtype="float64", peer="jax",
            ratio_vs_sklearn=timing["ratio"], speedup=1.0 / timing["ratio"],
            jax_s=timing["a_ms"] / 1e3, sklearn_s=timing["b_ms"] / 1e3, pairs=timing["pairs"], clock=timing["clock"],
            loglik=peer.score(), sklearn_loglik=theirs_ll, loglik_gap=peer.score() - theirs_ll,
            n_iter=peer.n_iter_, sklearn_n_iter=int(theirs.n_iter_),
            sklearn_threads=sklearn_threads or os.cpu_count(), jax=jax.__version__,
        ))
        print(f"{NAME} {rows[-1]['case']:24s} ratio {timing['ratio']:.3f} ({timing['a_ms'] / 1e3:.3f} s vs "
              f"{timing['b_ms'] / 1e3:.3f} s, wall clock), loglik gap {rows[-1]['loglik_gap']:+.2e}, "
              f"iters {peer.n_iter_} vs {theirs.n_iter_}", flush=True)
    return rows


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's command line: the flags every benchmark takes, the floating type and EM's stopping rule."""
    p = parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--dtype", choices=("float32", "float64"), default=None,
                   help="pyro_lvm's floating type (default: float64 on CPU, float32 on CUDA)")
    p.add_argument("--tol", type=nonnegative_float, default=1e-3,
                   help="convergence tolerance on the mean lower bound, both libraries; 0: all --max-iter iterations (default: 1e-3)")
    p.add_argument("--max-iter", type=positive_int, default=100, help="EM iterations at most, both libraries (default: 100)")
    return p


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    device = setup(args)
    from sklearn.mixture import GaussianMixture as SkGaussianMixture
    from threadpoolctl import threadpool_limits

    from pyro_lvm.estimators import GaussianMixture

    dtype = getattr(torch, args.dtype) if args.dtype else (torch.float64 if device.type == "cpu" else torch.float32)
    cases = SMOKE_CASES if args.smoke else QUICK_CASES if args.quick else FULL_CASES
    pairs = 1 if (args.smoke or args.quick) else 3
    sklearn_threads = args.threads if device.type == "cpu" and args.threads else None
    rows = []
    for n, d, k, cov_type, devices in cases:
        if device.type not in devices:
            continue
        X = make_data(n, d, k, args.seed)
        init = shared_init(X, k, cov_type, args.seed)
        X_t = torch.as_tensor(X, dtype=dtype, device=device)
        init_t = {key: torch.as_tensor(v, dtype=dtype, device=device) for key, v in init.items()}
        common = dict(n_components=k, covariance_type=cov_type, tol=args.tol, max_iter=args.max_iter, reg_covar=1e-6)
        ours = GaussianMixture(**common, **init_t, device=device, dtype=dtype, random_state=args.seed)
        # init_params="random_from_data" is cheap; every part of it is overridden by the *_init arguments
        theirs = SkGaussianMixture(**common, **init, init_params="random_from_data", random_state=args.seed)
        big = n * d * k >= 10**9
        GaussianMixture(**{**common, "max_iter": 2}, device=device, dtype=dtype).fit(X_t[:1000])  # kernels, BLAS handles
        limits = threadpool_limits(sklearn_threads) if sklearn_threads else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scikit-learn's ConvergenceWarning when max_iter is reached
                timing = paired_ratio(
                    lambda: ours.fit(X_t), lambda: theirs.fit(X), device, repeats=1 if big else pairs, warmup=0 if big else 1
                )
        finally:
            if limits is not None:
                limits.unregister()
        ours_ll = float(ours.score(X_t))
        theirs_ll = float(theirs.score(X))
        rows.append(row(
            NAME, f"{_count(n)} x {d} x {k} {cov_type}", device, args.quick or args.smoke,
            n=n, d=d, k=k, covariance_type=cov_type, dtype=str(dtype).replace("torch.", ""),
            ratio_vs_sklearn=timing["ratio"],
            speedup=1.0 / timing["ratio"],
            pyro_lvm_s=timing["a_ms"] / 1e3,
            sklearn_s=timing["b_ms"] / 1e3,
            pairs=timing["pairs"],
            loglik=ours_ll,
            sklearn_loglik=theirs_ll,
            loglik_gap=ours_ll - theirs_ll,
            n_iter=int(ours.n_iter_),
            sklearn_n_iter=int(theirs.n_iter_),
            converged=bool(ours.converged_),
            sklearn_converged=bool(theirs.converged_),
            sklearn_threads=sklearn_threads or os.cpu_count(),
            target_ratio=1.0 if device.type == "cpu" else 1 / 50,
        ))
        print(f"{NAME} {rows[-1]['case']:24s} ratio {timing['ratio']:.3f} ({timing['a_ms'] / 1e3:.3f} s vs "
              f"{timing['b_ms'] / 1e3:.3f} s), loglik gap {ours_ll - theirs_ll:+.2e}, "
              f"iters {ours.n_iter_} vs {theirs.n_iter_}", flush=True)
    if device.type == "cpu":
        rows += _jax_rows(args, cases, pairs, sklearn_threads)
    path = write_results(NAME, rows, args.out)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
