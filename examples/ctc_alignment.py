"""CTC on strings of handwritten digits: soft training (sum over alignments) against Viterbi training
(hard EM), measured against the known column span of every digit.

Story: an image of 1 to 5 digits side by side with random gaps is read column by column; each
column t has a latent frame label z_t (a digit or the blank) with p(z_t | x) from a convolutional
encoder (batch-normalized, dilated 1-D convolutions over columns), and the label
string is y = B(z) (merge repeats, drop blanks). Soft training maximizes log p(y | x) = log sum_{B(z) = y} prod_t p(z_t | x)
(``ColumnCTC``'s story, ``pyro.sample("y", CTC(...), obs=y)`` with an empty guide); Viterbi training maximizes log p(z* | x)
for the best alignment z* of y under the current model (``ColumnCTC.viterbi_story``). Both run through ``pyro_lvm.infer.train``.

    python examples/ctc_alignment.py                  # 8x8 digits bundled with scikit-learn (offline)
    python examples/ctc_alignment.py --quick          # the same, in well under a minute
    python examples/ctc_alignment.py --dataset mnist --data-dir DIR

Reports on held-out strings (digits from the test split): the label error rate of greedy
decoding, the frame-alignment accuracy of the Viterbi path (share of its labelled columns inside
the true span of their digit, and within 2 columns of it), and the test log p(y | x). Writes
``metrics.json``, ``posterior_soft.png``, ``posterior_hard.png`` (the posterior over alignments
drawn under the image, with the Viterbi path and the true spans) and ``training_curve.png``
into ``--out``.
"""

from __future__ import annotations

import argparse
import time

import pyro
import pyro.infer
import torch

from pyro_lvm import runs
from pyro_lvm.data import load_digits, load_mnist
from pyro_lvm.data.digit_strings import DigitStrings, make_digit_strings, span_alignment_accuracy
from pyro_lvm.infer import train
from pyro_lvm.models import ColumnCTC
from pyro_lvm.ops import ctc_label_error_rate

MODES = ("soft", "hard")


#: defaults of the size flags: (full run, --quick)
DEFAULTS = {"train_strings": (6000, 1500), "test_strings": (1000, 300), "epochs": (20, 8)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=["digits", "mnist"], default="digits",
                   help="digits: scikit-learn's 8x8 digits (offline); mnist: 28x28 MNIST from --data-dir (default: digits)")
    p.add_argument("--data-dir", default=None, help="folder with mnist/ for --dataset mnist (default: $PYRO_LVM_DATA)")
    p.add_argument("--train-strings", type=runs.positive_int, default=None, help="training strings (default: 6000; 1500 with --quick)")
    p.add_argument("--test-strings", type=runs.positive_int, default=None, help="held-out strings (default: 1000; 300 with --quick)")
    p.add_argument("--max-digits", type=runs.positive_int, default=5, help="digits per string are drawn from 1..max-digits (default: 5)")
    p.add_argument("--max-gap", type=runs.positive_int, default=4,
                   help="blank columns between digits are drawn from 1..max-gap (default: 4)")
    p.add_argument("--epochs", type=runs.positive_int, default=None, help="training epochs per mode (default: 20; 8 with --quick)")
    p.add_argument("--batch-size", type=runs.positive_int, default=32, help="strings per minibatch (default: 32)")
    p.add_argument("--lr", type=runs.positive_float, default=3e-3, help="Adam learning rate (default: 3e-3)")
    p.add_argument("--hidden", type=runs.positive_int, default=64,
                   help="features per column in the encoder's 1-D convolutions (default: 64)")
    p.add_argument("--method", choices=["native", "enum"], default="native",
                   help="how soft training sums alignments: torch's kernel or the enumerated chain (default: native)")
    p.add_argument("--figures", type=runs.positive_int, default=4, help="held-out strings drawn in each posterior figure (default: 4)")
    p.add_argument("--quick", action="store_true", help="a small run (well under a minute on 2 CPU cores)")
    p.add_argument("--out", default="outputs/ctc_alignment", help="output folder (default: outputs/ctc_alignment)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--seed", type=runs.nonnegative_int, default=0, help="random seed of data, initialization and minibatches (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """The flags, with the size defaults (:data:`DEFAULTS`) filled in where no value was given."""
    args = build_parser().parse_args(argv)
    for name, (full, quick) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def load(args) -> tuple[DigitStrings, DigitStrings]:
    if args.dataset == "digits":
        (train_x, train_y), (test_x, test_y) = load_digits("train"), load_digits("test")
    else:
        (train_x, train_y), (test_x, test_y) = load_mnist(args.data_dir, "train"), load_mnist(args.data_dir, "test")
    kw = dict(max_digits=args.max_digits, max_gap=args.max_gap)
    return (
        make_digit_strings(train_x, train_y, args.train_strings, seed=args.seed, **kw),
        make_digit_strings(test_x, test_y, args.test_strings, seed=args.seed + 1, **kw),
    )


def as_tuple(d: DigitStrings) -> tuple[torch.Tensor, ...]:
    return d.images, d.widths, d.targets, d.target_lengths


@torch.no_grad()
def evaluate(model: ColumnCTC, test: DigitStrings, batch_size: int = 256) -> dict:
    decoded, paths, log_lik = [], [], []
    for start in range(0, len(test), batch_size):
        images, widths, targets, lengths = (t[start : start + batch_size] for t in as_tuple(test))
        decoded += model.decode(images, widths)
        paths.append(model.map_latents(images, widths, targets, lengths))
        log_lik.append(model.log_likelihood(images, widths, targets, lengths))
    log_lik = torch.cat(log_lik)
    return {
        "label_error_rate": ctc_label_error_rate(decoded, test.targets, test.target_lengths),
        "string_accuracy": sum(d == t[:n] for d, t, n in zip(decoded, test.targets.tolist(), test.target_lengths.tolist())) / len(test),
        "viterbi_frame_alignment_accuracy": span_alignment_accuracy(torch.cat(paths), test.spans),
        "viterbi_frame_alignment_accuracy_within_2_columns": span_alignment_accuracy(torch.cat(paths), test.spans, tolerance=2),
        "test_log_likelihood_per_string": float(log_lik.mean()),
    }


def plot_posterior(model: ColumnCTC, test: DigitStrings, count: int, title: str, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images, widths, targets, lengths = (t[:count] for t in as_tuple(test))
    posterior = model.posterior(images, widths, targets, lengths).probs.cpu()  # (n, W, C)
    best = model.map_latents(images, widths, targets, lengths).cpu()
    fig, axes = plt.subplots(2 * count, 1, figsize=(10, 2.6 * count), sharex=True,
                             gridspec_kw={"height_ratios": [1, 1.4] * count})
    for i in range(count):
        w = int(widths[i])
        ax = axes[2 * i]
        ax.imshow(images[i, :, :w].cpu(), cmap="gray_r", aspect="auto", extent=(-0.5, w - 0.5, images.size(1), 0))
        for k in range(int(lengths[i])):
            lo, hi = test.spans[i, k].tolist()
            ax.axvspan(lo - 0.5, hi - 0.5, color="tab:green", alpha=0.15)
            ax.text((lo + hi) / 2 - 0.5, -0.5, str(int(targets[i, k]) - 1), ha="center", va="bottom", fontsize=9)
        ax.set_yticks([])
        ax = axes[2 * i + 1]
        ax.imshow(posterior[i, :w].T, cmap="viridis", aspect="auto", vmin=0, vmax=1, origin="lower",
                  extent=(-0.5, w - 0.5, -0.5, posterior.size(-1) - 0.5))
        on = best[i, :w] > 0
        ax.scatter(torch.arange(w)[on], best[i, :w][on], marker="x", color="red", s=14, label="Viterbi")
        ax.set_yticks(range(posterior.size(-1)), ["-"] + [str(d) for d in range(posterior.size(-1) - 1)], fontsize=6)
        ax.set_ylabel("label")
    axes[-1].set_xlabel("column (frame)")
    axes[1].legend(loc="upper right", fontsize=7)
    fig.suptitle(f"{title}: p(z_t | y, x) under each image (blank = '-'); true spans shaded, Viterbi labels x")
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_training(histories: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for mode, h in histories.items():
        h.plot(ax, label=mode, ylabel="loss per string (nats)")
    ax.set_title("soft: -log p(y|x); hard: -log p(z*|x)")
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    runs.set_seed(args.seed)
    device = runs.resolve_device(args.device)
    out = runs.output_dir(args.out)
    train_set, test_set = load(args)
    test_set = test_set.to(device)
    metrics = {
        "dataset": args.dataset,
        "device": str(device),
        "device_name": runs.device_name(device),
        "train_strings": len(train_set),
        "test_strings": len(test_set),
        "frames_max": int(train_set.images.size(2)),
        "epochs": args.epochs,
        "method": args.method,
        "seed": args.seed,
        "figures": [],
    }
    histories = {}
    for mode in MODES:
        pyro.clear_param_store()  # the two models share parameter names
        runs.set_seed(args.seed)
        model = ColumnCTC(train_set.images.size(1), 10, hidden=args.hidden, method=args.method).to(device)
        t0 = time.perf_counter()
        story = model.model if mode == "soft" else model.viterbi_story
        histories[mode] = train(
            story, model.guide, as_tuple(train_set), loss=pyro.infer.Trace_ELBO(max_plate_nesting=model.max_plate_nesting),
            lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, device=device, progress=not args.no_progress,
        )
        seconds = time.perf_counter() - t0
        model.eval()
        metrics[mode] = {
            "train_seconds": seconds,
            "final_train_loss": histories[mode].epochs[-1]["train_loss"],
            **evaluate(model, test_set),
        }
        name = f"posterior_{mode}.png"
        plot_posterior(model, test_set, min(args.figures, len(test_set)), f"{mode} training", out / name)
        metrics["figures"].append(name)
        print(f"{mode}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics[mode].items()))
    plot_training(histories, out / "training_curve.png")
    metrics["figures"].append("training_curve.png")
    metrics["history"] = {mode: h.epochs for mode, h in histories.items()}
    runs.write_json(metrics, out / "metrics.json")
    print(f"wrote metrics.json and {len(metrics['figures'])} figures to {out.resolve()}")
    return metrics


if __name__ == "__main__":
    main()
