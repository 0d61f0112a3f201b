"""Gaussian mixtures three ways (closed-form EM, hard EM, SVI on the enumerated model) and model selection.

Story: ``pi, mu[k], Sigma[k]``; ``z_n ~ Categorical(pi)`` summed out exactly by parallel
enumeration; ``x_n ~ N(mu[z_n], Sigma[z_n])``. The script fits a 2-D synthetic set with a
known answer and a real data set bundled with scikit-learn with all three methods, checks
the fits against scikit-learn's ``GaussianMixture``, and chooses the number of components
by LOO (ArviZ, on posterior draws over the global parameters) beside BIC.

    python examples/gmm.py                     # synthetic + iris, NUTS for model selection (minutes)
    python examples/gmm.py --quick             # the same, smaller, Laplace draws (well under a minute)
    python examples/gmm.py --real wine --covariance-type diag --device cuda

Writes ``metrics.json``, ``ellipses.png`` (fitted covariance ellipses per method),
``responsibilities.png``, ``log_likelihood.png`` (per iteration / SVI step) and
``model_selection.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pyro_lvm import runs
from pyro_lvm.diagnostics import compare_mixtures, plot_mixture, plot_model_selection
from pyro_lvm.estimators import GaussianMixture

METHODS = ("em", "hard_em", "svi")
REAL_SETS = ("iris", "wine", "breast_cancer")


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script; every numeric flag is checked when parsed (see :mod:`pyro_lvm.runs`)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--real", choices=REAL_SETS, default="iris", help="real data set bundled with scikit-learn, standardized (default: iris)"
    )
    p.add_argument("--n-per-cluster", type=runs.positive_int, default=200,
                   help="synthetic points per true component, >= 2: the third has half as many (default: 200)")
    p.add_argument("--covariance-type", choices=["full", "tied", "diag", "spherical", "identity"], default="full",
                   help="covariance structure of every fit (default: full)")
    p.add_argument("--n-init", type=runs.positive_int, default=5, help="EM restarts, run batched (default: 5)")
    p.add_argument("--max-iter", type=runs.positive_int, default=200, help="EM iterations per restart (default: 200)")
    p.add_argument("--tol", type=runs.nonnegative_float, default=1e-4,
                   help="EM stops when the mean lower bound changes less than this; 0: all --max-iter iterations (default: 1e-4)")
    p.add_argument("--svi-steps", type=runs.positive_int, default=1000,
                   help="full-batch Adam steps of the SVI fit and of the Laplace approximation's mode (default: 1000)")
    p.add_argument("--lr", type=runs.positive_float, default=0.05, help="Adam learning rate of the SVI fit (default: 0.05)")
    p.add_argument("--max-k", type=runs.positive_int, default=6, help="model selection compares K = 1..max-k (default: 6)")
    p.add_argument("--posterior", choices=["nuts", "laplace"], default="nuts",
                   help="posterior draws for LOO: NUTS with z enumerated, or a Laplace approximation fitted by SVI (default: nuts)")
    p.add_argument("--num-samples", type=runs.positive_int, default=200, help="posterior draws per K, >= 2 for LOO (default: 200)")
    p.add_argument("--warmup", type=runs.nonnegative_int, default=200,
                   help="NUTS warm-up steps per K; 0: no step-size adaptation (default: 200)")
    p.add_argument("--selection-points", type=runs.positive_int, default=150,
                   help="synthetic points used for model selection (default: 150)")
    p.add_argument("--float32", action="store_true", help="compute in float32 (default: float64)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--seed", type=runs.nonnegative_int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", default="outputs/gmm", help="output folder for metrics.json and figures (default: outputs/gmm)")
    p.add_argument("--quick", action="store_true",
                   help="a small run: 60 points per cluster, 200 SVI steps, K = 1..4 by Laplace draws (explicit flags still apply)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Parse ``argv``, apply the ``--quick`` settings to the flags left at their defaults, and refuse
    the values that would only fail after every fit."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.n_per_cluster < 2:
        p.error(f"--n-per-cluster must be >= 2 (the smallest true component gets half as many points), got {args.n_per_cluster}")
    if args.num_samples < 2:
        p.error(f"--num-samples must be >= 2 (LOO's Pareto smoothing needs two posterior draws or more), got {args.num_samples}")
    if args.quick:  # quick settings, except where a flag was given explicitly
        quick = dict(n_per_cluster=60, svi_steps=200, max_k=4, posterior="laplace", num_samples=200, selection_points=90)
        for name, value in quick.items():
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    points = min(args.selection_points, sum(synthetic_sizes(args.n_per_cluster)))
    if args.max_k > points:
        p.error(f"--max-k {args.max_k}: model selection fits K = 1..max-k to {points} points (--selection-points "
                f"{args.selection_points}, --n-per-cluster {args.n_per_cluster}); K cannot exceed them")
    return args


def synthetic_sizes(n_per_cluster: int) -> list[int]:
    """Points of each of the three true components: twice, once and half ``n_per_cluster``."""
    return [2 * n_per_cluster, n_per_cluster, n_per_cluster // 2]


def synthetic(n_per_cluster: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three 2-D Gaussians with different shapes and weights; returns ``X (N, 2)`` and the true labels."""
    means = np.array([[0.0, 0.0], [4.0, 3.0], [-3.0, 4.0]])
    covs = [np.array([[1.5, 0.9], [0.9, 1.0]]), np.diag([0.3, 1.2]), np.array([[0.6, -0.3], [-0.3, 0.5]])]
    sizes = synthetic_sizes(n_per_cluster)
    X = np.concatenate([rng.multivariate_normal(m, c, size=n) for m, c, n in zip(means, covs, sizes)])
    return X, np.repeat(np.arange(3), sizes)


def real(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets
    from sklearn.preprocessing import StandardScaler

    bunch = getattr(datasets, f"load_{name}")()
    return StandardScaler().fit_transform(bunch.data), bunch.target


def fit_all(X, k: int, args, device, dtype) -> tuple[dict, dict]:
    """Fit with every method; return the estimators and their metrics (with scikit-learn's EM beside)."""
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    fits, metrics = {}, {}
    for method in METHODS:
        gmm = GaussianMixture(k, args.covariance_type, method, n_init=args.n_init, max_iter=args.max_iter, tol=args.tol,
                              steps=args.svi_steps, lr=args.lr, progress=not args.no_progress, random_state=args.seed,
                              device=device, dtype=dtype)
        t0 = time.perf_counter()
        gmm.fit(X)
        seconds = time.perf_counter() - t0
        fits[method] = gmm
        metrics[method] = {
            "score": gmm.score(X), "bic": gmm.bic(X), "aic": gmm.aic(X), "n_iter": gmm.n_iter_,
            "converged": gmm.converged_, "lower_bound": gmm.lower_bound_, "seconds": seconds,
        }
    if args.covariance_type != "identity":
        t0 = time.perf_counter()
        sk = SkGaussianMixture(k, covariance_type=args.covariance_type, n_init=args.n_init, max_iter=args.max_iter,
                               tol=args.tol, random_state=args.seed).fit(X)
        metrics["sklearn_em"] = {"score": sk.score(X), "bic": sk.bic(X), "n_iter": sk.n_iter_, "seconds": time.perf_counter() - t0}
    return fits, metrics


def main(argv=None) -> None:
    args = parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score

    runs.set_seed(args.seed)
    device = runs.resolve_device(args.device)
    dtype = torch.float32 if args.float32 else torch.float64
    out = runs.output_dir(args.out)
    rng = np.random.default_rng(args.seed)

    data = {"synthetic": synthetic(args.n_per_cluster, rng), args.real: real(args.real)}
    metrics = {"device": runs.device_name(device), "args": vars(args), "datasets": {}, "figures": []}
    fits = {}
    for name, (X, labels) in data.items():
        k = len(np.unique(labels))
        fits[name], m = fit_all(X, k, args, device, dtype)
        for method in METHODS:
            m[method]["adjusted_rand_index"] = adjusted_rand_score(labels, fits[name][method].predict(X))
        metrics["datasets"][name] = {"n_samples": X.shape[0], "n_features": X.shape[1], "n_components": k, **m}
        print(f"{name}: " + ", ".join(f"{meth} {m[meth]['score']:.4f}" for meth in m) + " nats/sample")

    # covariance ellipses: every method on the synthetic set, and EM on the real set in its first two principal axes
    X_syn = data["synthetic"][0]
    X_real = data[args.real][0]
    X_real_2d = PCA(2, random_state=args.seed).fit_transform(X_real)
    fig, axes = plt.subplots(1, 4, figsize=(20, 5))
    for ax, method in zip(axes, METHODS):
        plot_mixture(fits["synthetic"][method], X_syn, ax)
        ax.set_title(f"synthetic, {method}: {metrics['datasets']['synthetic'][method]['score']:.3f} nats/sample")
    k_real = metrics["datasets"][args.real]["n_components"]
    plot_mixture(GaussianMixture(k_real, args.covariance_type, n_init=args.n_init, random_state=args.seed, dtype=dtype).fit(X_real_2d),
                 X_real_2d, axes[3])
    axes[3].set_title(f"{args.real} (first two principal components), EM")
    fig.tight_layout()
    fig.savefig(out / "ellipses.png", dpi=100)
    plt.close(fig)

    # responsibilities of the soft EM fit, data sorted by their MAP component
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, (name, (X, _)) in zip(axes, data.items()):
        resp = fits[name]["em"].predict_proba(X)
        order = np.lexsort((-resp.max(1), resp.argmax(1)))
        ax.imshow(resp[order].T, aspect="auto", interpolation="nearest", cmap="viridis")
        ax.set_xlabel("data point (sorted by MAP component)")
        ax.set_yticks(range(resp.shape[1]))
        ax.set_ylabel("component k")
        ax.set_title(f"{name}: p(z = k | x) under EM")
    fig.tight_layout()
    fig.savefig(out / "responsibilities.png", dpi=100)
    plt.close(fig)

    # log-likelihood per EM iteration / SVI step
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, name in zip(axes, data):
        for method in METHODS:
            bounds = fits[name][method].lower_bounds_
            ax.plot(np.arange(1, len(bounds) + 1), bounds, label={"em": "EM: mean log p(x)", "hard_em": "hard EM: mean log p(x, z*)",
                                                              "svi": "SVI: -loss per sample"}[method])
        ax.set_xscale("log")
        ax.set_xlabel("iteration (EM) / step (SVI)")
        ax.set_ylabel("nats per sample")
        ax.set_title(name)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "log_likelihood.png", dpi=100)
    plt.close(fig)

    # model selection on (a subsample of) the synthetic set: LOO beside BIC
    idx = rng.choice(len(X_syn), size=min(args.selection_points, len(X_syn)), replace=False)
    t0 = time.perf_counter()
    mixtures = [GaussianMixture(k, args.covariance_type, prior="weak", n_init=3, random_state=args.seed)
                for k in range(1, args.max_k + 1)]
    selection = compare_mixtures(X_syn[idx], mixtures, method=args.posterior, num_samples=args.num_samples,
                                 **({"warmup_steps": args.warmup} if args.posterior == "nuts" else {"svi_steps": args.svi_steps}))
    fig, ax = plt.subplots(figsize=(7, 4))
    plot_model_selection(selection, ax)
    fig.tight_layout()
    fig.savefig(out / "model_selection.png", dpi=100)
    plt.close(fig)
    table = selection["loo"]
    metrics["model_selection"] = {
        "posterior": args.posterior, "n_points": len(idx), "true_k": 3, "best_loo": selection["best_loo"],
        "best_bic": selection["best_bic"], "bic": selection["bic"], "seconds": time.perf_counter() - t0,
        "loo": {i: {c: table.loc[i, c] for c in ("elpd_loo", "p_loo", "se", "elpd_diff", "dse", "weight")} for i in table.index},
    }
    print(f"model selection: LOO picks K={selection['best_loo']}, BIC picks K={selection['best_bic']} (truth: 3)")

    metrics["figures"] = ["ellipses.png", "responsibilities.png", "log_likelihood.png", "model_selection.png"]
    runs.write_json(metrics, out / "metrics.json")
    print(f"wrote metrics.json and {len(metrics['figures'])} figures to {out.resolve()}")


if __name__ == "__main__":
    main()
