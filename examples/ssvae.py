"""The semi-supervised VAE (M2, Kingma et al., 2014): a few labelled digits, many unlabelled ones.

Story: ``y ~ Categorical(1/10)``, ``z ~ N(0, I)``, ``x ~ Bernoulli(f(y, z))``. The guide is a
classifier ``q(y | x)`` and pyro_lvm's amortized Gaussian ``q(z | x, y)`` (an encoder reading x and
the one-hot y). On unlabelled images ``y`` is enumerated exactly (``TraceEnum_ELBO`` sums the ten
labels), on labelled ones it is observed and the classifier also gets ``alpha * log q(y | x)``.

    python examples/ssvae.py                          # MNIST, 100 600 1000 3000 labels (needs the IDX files)
    python examples/ssvae.py --quick                  # the 8x8 digits, one label count, seconds
    python examples/ssvae.py --labels 100 --epochs 50 --data-dir DIR

Reports, per number of labels: the test error of the classifier's argmax (Kingma et al.'s M2,
Table 1: 11.97% for 100 labels, 4.94% for 600, 3.60% for 1000, 3.92% for 3000) and the test
log-likelihood ``log p(x)`` (nats per image, importance-weighted with ``--ll-samples`` draws, the
ten labels summed exactly inside each weight) on the first ``--ll-examples`` test images.
Images are binarized dynamically in training and once (seeded) for testing. Writes
``metrics.json`` (rows ``labels``, ``test_error``, ``test_log_likelihood``), ``analogies.png``
(rows: a fixed z; columns: every label) and ``training_curve.png``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from pyro.infer import TraceEnum_ELBO  # noqa: E402

from pyro_lvm import runs  # noqa: E402
from pyro_lvm.data import SemiSupervisedBatches, dynamic_binarize, labelled_split, load_digits, load_mnist  # noqa: E402
from pyro_lvm.infer import apply_to_first, train  # noqa: E402
from pyro_lvm.models import SemiSupervisedVAE  # noqa: E402

EVAL_CHUNK = 100  # test images per log-likelihood call (the ten labels x k draws x images are held at once)
M2_TEST_ERROR = {100: 0.1197, 600: 0.0494, 1000: 0.0360, 3000: 0.0392}  # Kingma et al. (2014), Table 1, M2
DEFAULTS = dict(dataset="mnist", labels=[100, 600, 1000, 3000], epochs=20, hidden=500, z_dim=50, ll_samples=100)
QUICK = dict(dataset="digits", labels=[50], epochs=2, hidden=32, z_dim=8, ll_samples=20)


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script; every numeric flag is checked when parsed (see :mod:`pyro_lvm.runs`)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=["mnist", "digits"], default=None,
                   help="mnist: the IDX files in --data-dir/mnist; digits: scikit-learn's 8x8 digits (default: mnist; --quick: digits)")
    p.add_argument("--data-dir", default=None, help="folder with mnist/ (default: $PYRO_LVM_DATA)")
    p.add_argument("--labels", type=runs.positive_int, nargs="+", default=None,
                   help="numbers of labelled training images, one model each (default: 100 600 1000 3000; --quick: 50)")
    p.add_argument("--epochs", type=runs.positive_int, default=None,
                   help="passes over the unlabelled images, each unlabelled batch followed by a labelled one (default: 20; --quick: 2)")
    p.add_argument("--batch-size", type=runs.positive_int, default=100, help="images per batch, of each kind (default: 100)")
    p.add_argument("--lr", type=runs.positive_float, default=1e-3, help="Adam learning rate (default: 0.001)")
    p.add_argument("--alpha", type=runs.nonnegative_float, default=50.0,
                   help="weight of the classification term alpha * log q(y|x) per labelled image; 0: none (default: 50)")
    p.add_argument("--hidden", type=runs.positive_int, default=None, help="width of the one hidden layer of every network (default: 500)")
    p.add_argument("--z-dim", type=runs.positive_int, default=None, help="dimension of z (default: 50)")
    p.add_argument("--ll-samples", type=runs.positive_int, default=None,
                   help="importance samples k per test image for log p(x) (default: 100; --quick: 20)")
    p.add_argument("--ll-examples", type=runs.positive_int, default=1000,
                   help="test images whose log p(x) is estimated (default: 1000; the error uses every test image)")
    p.add_argument("--quick", action="store_true", help="a run of seconds on the 8x8 digits")
    p.add_argument("--out", default="outputs/ssvae", help="output folder (default: outputs/ssvae)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument("--seed", type=runs.nonnegative_int, default=0, help="random seed (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Parse ``argv`` and fill in the defaults (``--quick``: the digits' settings) of the flags left out."""
    args = build_parser().parse_args(argv)
    settings = dict(DEFAULTS, **(QUICK if args.quick else {}))
    for key in ("dataset", "labels", "epochs", "hidden", "z_dim", "ll_samples"):
        if getattr(args, key) is None:
            setattr(args, key, settings[key])
    return args


def load_data(args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training images (N, D) in [0, 1] and labels, test images binarized once (seeded) and labels."""
    if args.dataset == "mnist":
        (x, y), (xt, yt) = load_mnist(args.data_dir, "train"), load_mnist(args.data_dir, "test")
    else:
        (x, y), (xt, yt) = load_digits("train", seed=args.seed), load_digits("test", seed=args.seed)
    x, xt = x.reshape(len(x), -1), xt.reshape(len(xt), -1)
    xt = dynamic_binarize(xt, torch.Generator().manual_seed(args.seed + 1))
    return x, y, xt, yt


def plot_analogies(path, model: SemiSupervisedVAE, rows: int = 8) -> None:
    """Rows: one z drawn from N(0, I); columns: that z decoded with every label (pixel probabilities)."""
    side = int(round(model.data_dim**0.5))
    labels = torch.arange(model.num_classes)
    fig, axes = plt.subplots(rows, len(labels), figsize=(0.9 * len(labels), 0.9 * rows), squeeze=False)
    for r in range(rows):
        z = torch.randn(1, model.z_dim).expand(len(labels), -1)
        images = model.sample(len(labels), y=labels, z=z, mean=True).cpu()
        for c in labels.tolist():
            axes[r, c].imshow(images[c].reshape(side, side), cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(f"y={c}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(path, histories: dict) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for labels, history in histories.items():
        history.plot(ax, label=f"{labels} labels", ylabel="-J^alpha per image (nats)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    runs.set_seed(args.seed)
    device = runs.resolve_device(args.device)
    out = runs.output_dir(args.out)
    x, y, xt, yt = (t.to(device) for t in load_data(args))
    # labelled batches have nothing to enumerate (y is observed): TraceEnum_ELBO is still right for them
    warnings.filterwarnings("ignore", message="TraceEnum_ELBO found no sample sites configured for enumeration")
    results, histories = [], {}
    for num_labels in args.labels:
        runs.set_seed(args.seed)
        labelled, unlabelled = labelled_split(y, num_labels, seed=args.seed)
        batches = SemiSupervisedBatches(x, y, labelled.to(device), unlabelled.to(device), args.batch_size, seed=args.seed)
        model = SemiSupervisedVAE(x.shape[1], 10, args.z_dim, (args.hidden,)).to(device)
        t0 = time.perf_counter()
        histories[num_labels] = train(model.objective, model.guide, batches, loss=TraceEnum_ELBO(max_plate_nesting=1),
                                      epochs=args.epochs, lr=args.lr, model_kwargs={"alpha": args.alpha},
                                      batch_transform=apply_to_first(dynamic_binarize), device=device,
                                      progress=not args.no_progress)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            error = float((model.map_latents(xt) != yt).float().mean())
            log_px = torch.cat([model.log_likelihood(chunk, num_samples=args.ll_samples, chunk_size=min(args.ll_samples, 50))
                                for chunk in xt[: args.ll_examples].split(EVAL_CHUNK)])
        row = {"labels": num_labels, "test_error": error, "test_log_likelihood": float(log_px.mean()),
               "kingma_m2_test_error": M2_TEST_ERROR.get(num_labels), "train_seconds": seconds}
        results.append(row)
        reference = "-" if num_labels not in M2_TEST_ERROR else f"{100 * M2_TEST_ERROR[num_labels]:.2f}%"
        print(f"{num_labels} labels: test error {100 * error:.2f}% (Kingma et al. M2: {reference}), "
              f"test log p(x) {row['test_log_likelihood']:.2f} nats (k={args.ll_samples}, {len(log_px)} images)")
        metrics = {  # written after every label count, so a long run's finished rows survive an interruption
            "results": results,
            "dataset": args.dataset,
            "ll_samples": args.ll_samples,
            "ll_examples": min(args.ll_examples, len(xt)),
            "test_images": len(xt),
            "device": runs.device_name(device),
            "seed": args.seed,
            "args": vars(args),
        }
        runs.write_json(metrics, out / "metrics.json")
    plot_analogies(out / "analogies.png", model)
    plot_curves(out / "training_curve.png", histories)
    print(f"wrote {out}")
    return metrics


if __name__ == "__main__":
    main()
