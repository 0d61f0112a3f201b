"""Quadrant completion with a conditional VAE (the task of Pyro's ``examples/cvae``), against a deterministic baseline.

Observe 1, 2 or 3 quadrants of a binarized digit (1: bottom-left; 2: the left half; 3: all but the
bottom-right) and generate the rest. The conditional VAE has a prior network ``p(z | x)``, a
decoder ``p(y | z, x)`` over the missing pixels and a recognition network ``q(z | x, y)`` (a
:mod:`pyro_lvm.guides` guide whose encoder reads both ``x`` and ``y``); the baseline is the same
network without ``z``, a deterministic regressor with a Bernoulli likelihood per missing pixel.

    python examples/cvae.py                       # MNIST (needs the IDX files), 1 2 3 quadrants
    python examples/cvae.py --quick               # the 8x8 digits, seconds
    python examples/cvae.py --observed 2 --epochs 20 --data-dir DIR

Reports, per number of observed quadrants, the conditional negative log-likelihood of the missing
quadrants, ``-log p(y_missing | x_observed)`` in nats per image on the test images: importance-
weighted with ``--ll-samples`` draws of ``q(z | x, y)`` for the CVAE, exact for the baseline. Images
are binarized once (seeded). Writes ``metrics.json`` (a list ``results`` of rows ``observed_quadrants``,
``model`` = ``cvae`` or ``baseline``, ``nll``), ``completions.png`` (input, truth, the baseline's
pixel probabilities, CVAE samples) and ``training_curve.png``.
"""

from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from pyro_lvm import runs  # noqa: E402
from pyro_lvm.data import dynamic_binarize, load_digits, load_mnist, mask_quadrants  # noqa: E402
from pyro_lvm.infer import train  # noqa: E402
from pyro_lvm.models import CompletionRegressor, ConditionalVAE  # noqa: E402

DEFAULTS = dict(dataset="mnist", epochs=10, hidden=500, z_dim=16, ll_samples=100)
QUICK = dict(dataset="digits", epochs=2, hidden=32, z_dim=4, ll_samples=20)
SAMPLES_SHOWN = 4
EVAL_CHUNK = 500  # test images per log-likelihood call (k draws x images are held at once)


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script; every numeric flag is checked when parsed (see :mod:`pyro_lvm.runs`)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=["mnist", "digits"], default=None,
                   help="mnist: the IDX files in --data-dir/mnist; digits: scikit-learn's 8x8 digits (default: mnist; --quick: digits)")
    p.add_argument("--data-dir", default=None, help="folder with mnist/ (default: $PYRO_LVM_DATA)")
    p.add_argument("--observed", type=runs.positive_int, nargs="+", choices=[1, 2, 3], default=[1, 2, 3],
                   help="numbers of observed quadrants, one pair of models each (default: 1 2 3)")
    p.add_argument("--epochs", type=runs.positive_int, default=None, help="training epochs of each model (default: 10; --quick: 2)")
    p.add_argument("--batch-size", type=runs.positive_int, default=128, help="minibatch size (default: 128)")
    p.add_argument("--lr", type=runs.positive_float, default=1e-3, help="Adam learning rate (default: 0.001)")
    p.add_argument("--hidden", type=runs.positive_int, default=None,
                   help="width of the two hidden layers of every network (default: 500; --quick: 32)")
    p.add_argument("--z-dim", type=runs.positive_int, default=None, help="dimension of z (default: 16; --quick: 4)")
    p.add_argument("--ll-samples", type=runs.positive_int, default=None,
                   help="importance samples k per test image for the CVAE's -log p(y|x) (default: 100; --quick: 20)")
    p.add_argument("--test-examples", type=runs.positive_int, default=None, help="test images scored (default: all)")
    p.add_argument("--quick", action="store_true", help="a run of seconds on the 8x8 digits")
    p.add_argument("--out", default="outputs/cvae", help="output folder (default: outputs/cvae)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument("--seed", type=runs.nonnegative_int, default=0, help="random seed (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Parse ``argv`` and fill in the defaults (``--quick``: the digits' settings) of the flags left out."""
    args = build_parser().parse_args(argv)
    settings = dict(DEFAULTS, **(QUICK if args.quick else {}))
    for key in ("dataset", "epochs", "hidden", "z_dim", "ll_samples"):
        if getattr(args, key) is None:
            setattr(args, key, settings[key])
    return args


def load_images(args) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and test images (N, H, W), binarized once with seeded draws."""
    if args.dataset == "mnist":
        train_images, test_images = load_mnist(args.data_dir, "train")[0], load_mnist(args.data_dir, "test")[0]
    else:
        train_images, test_images = load_digits("train", seed=args.seed)[0], load_digits("test", seed=args.seed)[0]
    test_images = test_images[: args.test_examples]
    generator = torch.Generator().manual_seed(args.seed + 1)
    return dynamic_binarize(train_images, generator), dynamic_binarize(test_images, generator)


def show(ax, image, side: int, title: str | None = None) -> None:
    ax.imshow(image.reshape(side, side).cpu(), cmap="gray", vmin=-1, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def plot_completions(path, panels: dict, side: int) -> None:
    """Per number of observed quadrants, two test images: input (missing pixels grey), truth,
    the baseline's pixel probabilities and CVAE samples."""
    rows = [(q, i) for q in panels for i in range(2)]
    columns = ["input", "truth", "baseline", *(f"CVAE {s + 1}" for s in range(SAMPLES_SHOWN))]
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(1.1 * len(columns), 1.1 * len(rows)), squeeze=False)
    for r, (q, i) in enumerate(rows):
        x, y, base, samples = panels[q]
        images = [torch.where(x[i] < 0, 0.0, 2 * x[i] - 1), 2 * y[i] - 1, 2 * base[i] - 1, *(2 * s[i] - 1 for s in samples)]
        for c, image in enumerate(images):
            show(axes[r, c], image, side, columns[c] if r == 0 else None)
        axes[r, 0].set_ylabel(f"{q} observed", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(path, histories: dict) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for (q, name), history in histories.items():
        history.plot(ax, label=f"{name}, {q} observed", ylabel="-ELBO (CVAE) or -log p(y|x) per image")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    runs.set_seed(args.seed)
    device = runs.resolve_device(args.device)
    out = runs.output_dir(args.out)
    train_images, test_images = (t.to(device) for t in load_images(args))
    side = train_images.shape[-1]
    results, histories, panels = [], {}, {}
    for q in args.observed:
        x, y = mask_quadrants(train_images, q)
        xt, yt = mask_quadrants(test_images, q)
        runs.set_seed(args.seed)
        models = {"cvae": ConditionalVAE(x.shape[1], args.z_dim, (args.hidden, args.hidden)).to(device),
                  "baseline": CompletionRegressor(x.shape[1], (args.hidden, args.hidden)).to(device)}
        for name, model in models.items():
            t0 = time.perf_counter()
            histories[q, name] = train(model.model, model.guide, (x, y), epochs=args.epochs, batch_size=args.batch_size,
                                       lr=args.lr, device=device, progress=not args.no_progress)
            seconds = time.perf_counter() - t0
            with torch.no_grad():
                if name == "cvae":
                    log_p = torch.cat([model.log_likelihood(xc, yc, num_samples=args.ll_samples, chunk_size=min(args.ll_samples, 50))
                                       for xc, yc in zip(xt.split(EVAL_CHUNK), yt.split(EVAL_CHUNK))])
                else:
                    log_p = model.log_likelihood(xt, yt)
            results.append({"observed_quadrants": q, "model": name, "nll": -float(log_p.mean()),
                            "ll_samples": args.ll_samples if name == "cvae" else None, "train_seconds": seconds})
            print(f"{q} observed quadrant(s), {name}: -log p(missing | observed) = {results[-1]['nll']:.2f} nats per image")
        with torch.no_grad():
            panels[q] = (xt, yt, models["baseline"].sample(1, xt[:2], mean=True)[0],
                         models["cvae"].sample(SAMPLES_SHOWN, xt[:2]))
    metrics = {
        "results": results,
        "dataset": args.dataset,
        "ll_samples": args.ll_samples,
        "test_images": len(test_images),
        "device": runs.device_name(device),
        "seed": args.seed,
        "args": vars(args),
    }
    runs.write_json(metrics, out / "metrics.json")
    plot_completions(out / "completions.png", panels, side)
    plot_curves(out / "training_curve.png", histories)
    print(f"wrote {out}")
    return metrics


if __name__ == "__main__":
    main()
