"""Colorization with a latent per-pixel segmentation, against an L2 regression baseline.

Story: ``x`` the lightness L* of an image, ``y`` its colour (a*, b*), ``z`` a per-pixel
segment that is never labelled: ``p(y | x) = prod_ij sum_k p(z_ij = k | x) p(y_ij | z_ij = k, x)``,
the sum enumerated exactly (TraceEnum_ELBO, soft) or replaced by the argmax segment (HardEM,
hard). The baseline is the same convolutional network regressing ab with an L2 loss; it
predicts the conditional mean, which averages the possible colours into brownish grey.

    python examples/colorization.py                      # synthetic textured shapes (offline)
    python examples/colorization.py --quick              # the same, in under a minute
    python examples/colorization.py --objective hard     # hard EM: argmax segment per pixel
    python examples/colorization.py --dataset cifar10 --data-dir DIR   # CIFAR-10 subset

Metrics on test images (``metrics.json``): ``auc`` / ``baseline_auc`` (area under the per-pixel
accuracy curve over ab-distance thresholds 0..150, Zhang et al. 2016), ``psnr`` /
``baseline_psnr`` (RGB, dB), the same for the all-grey prediction ab = 0 (``grey_auc``,
``grey_psnr``: AuC favours unsaturated colours), ``test_nll_per_pixel`` (exact -log p(y|x) per pixel, nats) and,
for the synthetic scenes, ``segmentation_ari`` (adjusted Rand index of argmax p(z|x) against
the true regions). Figures: ``colorization.png`` (grey input / latent model / baseline /
truth / segmentation), ``samples.png`` (colour samples from p(y|x)), ``training_curve.png``.
"""

from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from pyro.infer import TraceEnum_ELBO  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

from pyro_lvm import runs  # noqa: E402
from pyro_lvm.color import lab_to_rgb, split_lab  # noqa: E402
from pyro_lvm.data import load_cifar10_subset, make_shapes  # noqa: E402
from pyro_lvm.infer import HardEM, train  # noqa: E402
from pyro_lvm.metrics import ab_accuracy_auc, psnr  # noqa: E402
from pyro_lvm.models import ColorRegressor, LatentSegmentationColorizer  # noqa: E402

DATASET_DEFAULTS = {  # a run of a few minutes (shapes) or about ten (cifar10) on a laptop CPU
    "shapes": dict(segments=8, hidden=32, layers=4, color_head="palette", epochs=10, train=1000, test=200, size=32, lr=1e-2),
    "cifar10": dict(segments=8, hidden=32, layers=5, color_head="pixel", epochs=5, train=4000, test=1000, size=32, lr=3e-3),
}
QUICK = {  # under a minute on 2 CPU cores
    "shapes": dict(hidden=16, epochs=6, train=300, test=100, size=24),
    "cifar10": dict(hidden=16, layers=4, epochs=2, train=500, test=100),
}


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script; every numeric flag is checked when parsed (see :mod:`pyro_lvm.runs`)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=sorted(DATASET_DEFAULTS), default="shapes",
                   help="shapes: synthetic textured regions with known segments (offline); "
                   "cifar10: the 4000/1000-image CIFAR-10 subset (default: shapes)")
    p.add_argument("--data-dir", default=None, help="cifar10: folder with cifar10_subset/ (default: $PYRO_LVM_DATA)")
    p.add_argument("--segments", type=runs.positive_int, default=None, help="K, the number of latent segments (default: 8)")
    p.add_argument("--objective", choices=["soft", "hard"], default="soft",
                   help="soft: exact enumerated marginal likelihood (TraceEnum_ELBO); hard: HardEM, the argmax "
                   "segment per pixel (default: soft)")
    p.add_argument("--color-head", choices=["palette", "pixel"], default=None,
                   help="palette: one ab Gaussian per segment; pixel: mean and scale per segment and pixel from "
                   "the network (default: palette for shapes, pixel for cifar10)")
    p.add_argument("--hidden", type=runs.positive_int, default=None, help="channels of the convolutional trunk (default: 32)")
    p.add_argument(
        "--layers", type=runs.positive_int, default=None, help="3x3 convolution layers in the trunk (default: 4 shapes, 5 cifar10)"
    )
    p.add_argument("--epochs", type=runs.positive_int, default=None, help="training epochs for each model (default: 10 shapes, 5 cifar10)")
    p.add_argument("--batch-size", type=runs.positive_int, default=32, help="minibatch size (default: 32)")
    p.add_argument("--lr", type=runs.positive_float, default=None, help="Adam learning rate (default: 0.01 shapes, 0.003 cifar10)")
    p.add_argument("--train-images", type=runs.positive_int, default=None, help="training images (default: 1000 shapes, all 4000 cifar10)")
    p.add_argument("--test-images", type=runs.positive_int, default=None, help="test images (default: 200 shapes, all 1000 cifar10)")
    p.add_argument("--size", type=runs.positive_int, default=None, help="shapes: image height and width (default: 32)")
    p.add_argument("--quick", action="store_true", help="a small run (under a minute on 2 CPU cores)")
    p.add_argument("--out", default="outputs/colorization", help="output folder (default: outputs/colorization)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument("--seed", type=runs.nonnegative_int, default=0, help="random seed (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Parse ``argv`` and fill in the per-dataset and ``--quick`` settings of the flags left out."""
    args = build_parser().parse_args(argv)
    settings = dict(DATASET_DEFAULTS[args.dataset], **(QUICK[args.dataset] if args.quick else {}))
    for key, flag in [("segments", "segments"), ("color_head", "color_head"), ("hidden", "hidden"), ("layers", "layers"),
                      ("epochs", "epochs"), ("lr", "lr"), ("train", "train_images"), ("test", "test_images"), ("size", "size")]:
        if getattr(args, flag) is None:
            setattr(args, flag, settings[key])
    return args


def load_data(args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Training RGB, test RGB (N, 3, H, W) in [0, 1], and the test segments (shapes only)."""
    if args.dataset == "shapes":
        train_rgb, _ = make_shapes(args.train_images, size=args.size, seed=args.seed)
        test_rgb, test_segments = make_shapes(args.test_images, size=args.size, seed=args.seed + 10_000)
        return train_rgb, test_rgb, test_segments
    images = {}
    for split, flag, count in (("train", "--train-images", args.train_images), ("test", "--test-images", args.test_images)):
        rgb, _ = load_cifar10_subset(args.data_dir, split)
        if count > len(rgb):
            raise ValueError(f"{flag} {count}: the CIFAR-10 subset has only {len(rgb)} {split} images")
        images[split] = rgb[:count]
    return images["train"], images["test"], None


def batched(fn, x: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def show(ax, image, title=None, **kwargs):
    ax.imshow(image, **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def plot_grid(path, x, pred_rgb, base_rgb, true_rgb, segments, true_segments, K, rows=8):
    columns = ["grey input", "latent model", "L2 baseline", "truth", "segmentation"]
    columns += ["true regions"] if true_segments is not None else []
    rows = min(rows, len(x))
    fig, axes = plt.subplots(rows, len(columns), figsize=(1.6 * len(columns), 1.6 * rows), squeeze=False)
    for r in range(rows):
        images = [x[r, 0], pred_rgb[r].permute(1, 2, 0), base_rgb[r].permute(1, 2, 0), true_rgb[r].permute(1, 2, 0), segments[r]]
        kwargs = [dict(cmap="gray", vmin=0, vmax=100), {}, {}, {}, dict(cmap="tab10", vmin=0, vmax=max(K - 1, 9), interpolation="nearest")]
        if true_segments is not None:
            images.append(true_segments[r])
            kwargs.append(dict(cmap="tab10", vmin=0, vmax=9, interpolation="nearest"))
        for c, (image, kw) in enumerate(zip(images, kwargs)):
            show(axes[r, c], image.cpu(), columns[c] if r == 0 else None, **kw)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_samples(path, x, samples, true_rgb, rows=4):
    num_samples = samples.shape[0]
    rows = min(rows, x.shape[0])
    fig, axes = plt.subplots(rows, num_samples + 2, figsize=(1.6 * (num_samples + 2), 1.6 * rows), squeeze=False)
    for r in range(rows):
        show(axes[r, 0], x[r, 0].cpu(), "grey input" if r == 0 else None, cmap="gray", vmin=0, vmax=100)
        for s in range(num_samples):
            rgb = lab_to_rgb(torch.cat((x[r], samples[s, r]), 0))
            show(axes[r, s + 1], rgb.permute(1, 2, 0).cpu(), f"sample {s + 1}" if r == 0 else None)
        show(axes[r, -1], true_rgb[r].permute(1, 2, 0).cpu(), "truth" if r == 0 else None)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(path, histories: dict):
    fig, axes = plt.subplots(1, len(histories), figsize=(4.5 * len(histories), 3.2), squeeze=False)
    for ax, (name, (history, unit)) in zip(axes[0], histories.items()):
        history.plot(ax, ylabel=unit)
        ax.set_title(name, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    runs.set_seed(args.seed)
    device = runs.resolve_device(args.device)
    out = runs.output_dir(args.out)
    train_rgb, test_rgb, test_segments = load_data(args)
    train_rgb, test_rgb = train_rgb.to(device), test_rgb.to(device)
    x, y = split_lab(train_rgb)
    xt, yt = split_lab(test_rgb)
    pixels = x.shape[-1] * x.shape[-2]

    model = LatentSegmentationColorizer(args.segments, hidden=args.hidden, num_layers=args.layers, color_head=args.color_head).to(device)
    objective = TraceEnum_ELBO if args.objective == "soft" else HardEM
    loss = objective(max_plate_nesting=model.max_plate_nesting)
    t0 = time.perf_counter()
    history = train(model.model, model.guide, (x, y), loss=loss, epochs=args.epochs, batch_size=args.batch_size,
                    lr=args.lr, device=device, progress=not args.no_progress)
    seconds = time.perf_counter() - t0

    baseline = ColorRegressor(hidden=args.hidden, num_layers=args.layers).to(device)
    t0 = time.perf_counter()
    base_history = train(baseline.model, baseline.guide, (x, y), epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, device=device, progress=not args.no_progress)
    base_seconds = time.perf_counter() - t0

    with torch.no_grad():
        pred_ab = batched(model.predict, xt)
        mean_ab = batched(lambda v: model.predict(v, kind="mean"), xt)
        segments = batched(model.map_latents, xt)
        base_ab = batched(baseline.predict, xt)
        nll = -float(model.log_likelihood(xt, yt, chunk_size=100).sum())
        to_rgb = lambda ab: lab_to_rgb(torch.cat((xt, ab), 1))  # noqa: E731
        pred_rgb, base_rgb = to_rgb(pred_ab), to_rgb(base_ab)
        samples = model.sample(3, xt[:4])

    metrics = {
        "dataset": args.dataset,
        "objective": args.objective,
        "segments": args.segments,
        "color_head": args.color_head,
        "train_images": len(x),
        "test_images": len(xt),
        "image_size": list(x.shape[-2:]),
        "epochs": args.epochs,
        "auc": ab_accuracy_auc(pred_ab, yt),
        "auc_mixture_mean": ab_accuracy_auc(mean_ab, yt),
        "baseline_auc": ab_accuracy_auc(base_ab, yt),
        "grey_auc": ab_accuracy_auc(torch.zeros_like(yt), yt),
        "psnr": psnr(pred_rgb, test_rgb),
        "baseline_psnr": psnr(base_rgb, test_rgb),
        "grey_psnr": psnr(to_rgb(torch.zeros_like(yt)), test_rgb),
        "test_nll_per_pixel": nll / (len(xt) * pixels),
        "mean_test_chroma": float(torch.linalg.vector_norm(yt, dim=1).mean()),
        "mean_predicted_chroma": float(torch.linalg.vector_norm(pred_ab, dim=1).mean()),
        "baseline_mean_predicted_chroma": float(torch.linalg.vector_norm(base_ab, dim=1).mean()),
        "segments_used": int(segments.unique().numel()),
        "train_seconds": seconds,
        "baseline_train_seconds": base_seconds,
        "final_train_loss_per_pixel": history.epochs[-1]["train_loss"] / pixels,
        "device": runs.device_name(device),
        "seed": args.seed,
        "args": vars(args),
    }
    if test_segments is not None:
        metrics["segmentation_ari"] = float(adjusted_rand_score(test_segments.flatten().numpy(), segments.flatten().cpu().numpy()))
    runs.write_json(metrics, out / "metrics.json")

    plot_grid(out / "colorization.png", xt, pred_rgb, base_rgb, test_rgb, segments, test_segments, args.segments)
    plot_samples(out / "samples.png", xt, samples, test_rgb)
    loss_name = "-ELBO = -log p(y|x)" if args.objective == "soft" else "-log p(y, z*|x) (hard EM)"
    plot_curves(out / "training_curve.png", {
        f"latent model ({args.objective})": (history, f"{loss_name} per image"),
        "L2 baseline": (base_history, "Gaussian NLL (L2) per image"),
    })
    summary = {k: metrics[k] for k in ("auc", "baseline_auc", "psnr", "baseline_psnr", "segmentation_ari") if k in metrics}
    print(", ".join(f"{k} {v:.4f}" for k, v in summary.items()))
    print(f"wrote {out}")
    return metrics


if __name__ == "__main__":
    main()
