"""Missing pixels: given the bottom half of each test digit, infer the top half under a VAE trained on complete digits.

Story (:class:`~pyro_lvm.models.MaskedDeepLatentGaussian`): ``z ~ N(0, I)``, ``x_d | z ~ Bernoulli(f(z)_d)``
observed where ``mask`` is True; the mask is data, so any mask works (here: the bottom half of the rows).
The VAE (decoder ``f`` and a diagonal Gaussian encoder) is trained on complete, dynamically binarized
training digits; then the top half of each test digit is inferred four ways:

* ``svi``: the lecture notes' program, ``q(z) q(x_top; phi)`` with a per-pixel Bernoulli per image
  beside the encoder for ``z``, fitted by SVI with the model fixed (:func:`~pyro_lvm.infer.imputation.fit_missing_values`).
  The pixels are enumerated (``TraceEnum_ELBO``), so the ELBO is exact in them and only ``z`` is sampled;
  ``q(x_top)`` starts at the decoder's output at the encoder's mean of ``z``;
* ``importance``: ``E[x_top | x_bottom]`` under self-normalized importance weights with the encoder as
  proposal (Mattei & Frellsen, 2019; :meth:`~pyro_lvm.models.MaskedDeepLatentGaussian.impute`);
* ``importance_fitted``: the same estimate with the encoder that ``svi`` fitted as the proposal of ``z``
  (the encoder trained on complete digits is a poor proposal for half digits; any proposal with full
  support gives a consistent estimate, and a better one needs fewer draws);
* ``train_mean``: each pixel's mean over the training set;
* ``knn``: scikit-learn's ``KNNImputer`` over binarized training digits.

The encoder, trained on complete digits, reads each test digit with its top half filled by the training
mean (the story itself never reads the missing pixels).

Each gets the mean Bernoulli log-likelihood of the true missing pixels (nats per pixel) and the accuracy
of ``p > 0.5``.

    python examples/impute.py                 # MNIST (dynamically binarized, from $PYRO_LVM_DATA)
    python examples/impute.py --quick         # scikit-learn's 8x8 digits, seconds
    python examples/impute.py --init-from outputs/impute/vae.pt   # skip training: a checkpoint of this script

Writes ``metrics.json`` (``results``: rows with ``method``, ``missing_pixel_log_likelihood`` and
``missing_pixel_accuracy``), ``completions.png`` (observed half, each completion, truth) and the VAE's
checkpoint ``vae.pt`` into ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402
from sklearn.impute import KNNImputer  # noqa: E402
from tqdm import tqdm  # noqa: E402

from pyro_lvm import runs  # noqa: E402
from pyro_lvm.data import dynamic_binarize  # noqa: E402
from pyro_lvm.evaluation.vae_experiment import load_vae_data  # noqa: E402
from pyro_lvm.guides import make_guide  # noqa: E402
from pyro_lvm.infer import apply_to_first, load_weights, train  # noqa: E402
from pyro_lvm.infer.imputation import MissingValuesGuide, fit_missing_values, missing_value_scores  # noqa: E402
from pyro_lvm.models import DeepLatentGaussian, MaskedDeepLatentGaussian  # noqa: E402

METHODS = ("svi", "importance", "importance_fitted", "train_mean", "knn")


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script; every numeric flag is checked when parsed (see :mod:`pyro_lvm.runs`)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=["mnist", "digits"], default="mnist",
                   help="mnist (28x28, dynamically binarized) or digits (scikit-learn's 8x8) (default: mnist)")
    p.add_argument("--data-dir", default=None, help="where MNIST lies (default: $PYRO_LVM_DATA)")
    p.add_argument("--epochs", type=runs.positive_int, default=10, help="VAE training epochs (default: 10)")
    p.add_argument("--batch-size", type=runs.positive_int, default=100, help="training batch size (default: 100)")
    p.add_argument("--lr", type=runs.positive_float, default=1e-3, help="Adam learning rate of the VAE (default: 1e-3)")
    p.add_argument("--z-dim", type=runs.positive_int, default=20, help="latent size (default: 20)")
    p.add_argument("--hidden", type=runs.positive_int, nargs="+", default=[200, 200],
                   help="hidden widths of the encoder and decoder (default: 200 200)")
    p.add_argument("--test-examples", type=runs.positive_int, default=1000,
                   help="test digits to complete, the first of the test set (default: 1000)")
    p.add_argument("--num-samples", type=runs.positive_int, default=5000,
                   help="importance samples per digit for the importance-weighted imputation; with few, the "
                        "self-normalized estimate leans on a handful of draws and is overconfident (default: 5000)")
    p.add_argument("--impute-batch", type=runs.positive_int, default=10,
                   help="digits per importance-sampling call; memory grows with num-samples x impute-batch (default: 10)")
    p.add_argument("--svi-steps", type=runs.positive_int, default=2000,
                   help="Adam steps fitting q(z) q(x_top) per run of the notes' program (default: 2000)")
    p.add_argument("--svi-lr", type=runs.positive_float, default=0.01, help="its learning rate (default: 0.01)")
    p.add_argument("--svi-particles", type=runs.positive_int, default=1,
                   help="its draws of z per step; the pixels are summed out exactly, so one suffices (default: 1)")
    p.add_argument("--knn-neighbors", type=runs.positive_int, default=5, help="KNNImputer's n_neighbors (default: 5)")
    p.add_argument("--knn-train", type=runs.positive_int, default=10000,
                   help="training digits KNNImputer searches, the first of the training set (default: 10000)")
    p.add_argument("--init-from", default=None, help="a checkpoint of this script's VAE (vae.pt) to start from, skipping training")
    p.add_argument("--figure-examples", type=runs.positive_int, default=8, help="digits in the figure (default: 8)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--seed", type=runs.nonnegative_int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", default="outputs/impute", help="output folder (default: outputs/impute)")
    p.add_argument("--quick", action="store_true",
                   help="digits, 30 epochs, 100 test digits, 1000 importance samples, 500 SVI steps (seconds)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Parse ``argv`` and apply the ``--quick`` settings to the flags left at their defaults."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.quick:
        quick = dict(dataset="digits", epochs=30, test_examples=100, num_samples=1000, svi_steps=500, knn_train=1000)
        for name, value in quick.items():
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    return args


def figure(columns: dict[str, torch.Tensor], side: int, path) -> None:
    """One row per digit, one column per image set (each (n, D))."""
    n = next(iter(columns.values())).shape[0]
    fig, axes = plt.subplots(n, len(columns), figsize=(1.3 * len(columns), 1.3 * n), squeeze=False)
    for j, (title, images) in enumerate(columns.items()):
        for i in range(n):
            axes[i, j].imshow(images[i].reshape(side, side).cpu(), cmap="gray", vmin=0, vmax=1)
            axes[i, j].axis("off")
        axes[0, j].set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    args = parse_args(argv)
    runs.set_seed(args.seed)
    device = runs.resolve_device(args.device)
    out = runs.output_dir(args.out)
    data = load_vae_data(args.dataset, args.data_dir, seed=args.seed)
    if args.test_examples > len(data.x_test):
        raise SystemExit(f"--test-examples {args.test_examples}: {args.dataset} has {len(data.x_test)} test digits")
    D = data.x_train.shape[1]

    # the VAE, trained on complete digits
    pyro.clear_param_store()
    vae = DeepLatentGaussian(D, args.z_dim, args.hidden, output_bias=DeepLatentGaussian.output_bias_from_data(data.x_train))
    guide = make_guide("normal", D, args.z_dim, hidden_dims=args.hidden)
    start = time.perf_counter()
    if args.init_from is not None:
        load_weights(args.init_from, vae.model, guide, device=device)
    else:
        train(vae.model, guide, data.x_train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=device,
              batch_transform=apply_to_first(dynamic_binarize), checkpoint=out / "vae.pt", progress=not args.no_progress)
    train_seconds = time.perf_counter() - start
    vae.to(device)
    guide.to(device)
    model = MaskedDeepLatentGaussian(D, args.z_dim, args.hidden).to(device)
    model.load_state_dict(vae.state_dict())
    model.eval()
    guide.eval()

    # the test digits, their bottom half observed; the top half is filled with the training mean, which the
    # story never reads but the encoder does (it was trained on complete digits)
    x = data.x_test[: args.test_examples].to(device)
    mask = (torch.arange(D, device=device) >= D // 2).expand_as(x)  # rows are row-major: the bottom half
    train_mean = data.x_train.mean(0).to(device)
    observed = torch.where(mask, x, train_mean)

    probs, seconds = {}, {}
    steps = tqdm(METHODS, desc="methods", disable=args.no_progress)
    for method in steps:
        start = time.perf_counter()
        if method == "svi":  # q(x_top) starts at the decoder's output at the encoder's mean of z
            with torch.no_grad():
                init = model.likelihood_dist(model.map_latents(observed, mask, guide=guide)).mean
            family = MissingValuesGuide(copy.deepcopy(guide), tuple(x.shape), init=init).to(device)
            probs[method] = fit_missing_values(model.with_missing, family, observed, mask, steps=args.svi_steps,
                                               lr=args.svi_lr, num_particles=args.svi_particles)
        elif method == "importance":
            probs[method] = model.impute(observed, mask, guide=guide, num_samples=args.num_samples, batch_size=args.impute_batch)
        elif method == "importance_fitted":  # the same estimate, z proposed by the encoder the notes' program fitted
            probs[method] = model.impute(observed, mask, guide=family.latent_guide, num_samples=args.num_samples,
                                         batch_size=args.impute_batch)
        elif method == "train_mean":
            probs[method] = train_mean.expand_as(x)
        else:
            reference = dynamic_binarize(data.x_train[: args.knn_train], generator=torch.Generator().manual_seed(args.seed))
            imputer = KNNImputer(n_neighbors=args.knn_neighbors).fit(reference.numpy())
            holes = torch.where(mask, x, torch.full((), float("nan"), device=device)).cpu().numpy()
            probs[method] = torch.as_tensor(imputer.transform(holes), dtype=x.dtype, device=device)
        seconds[method] = time.perf_counter() - start

    results = [{"method": m, **missing_value_scores(probs[m], x, mask), "seconds": seconds[m]} for m in METHODS]
    for row in results:
        print(f"{row['method']:>11}: {row['missing_pixel_log_likelihood']:.4f} nats/pixel, "
              f"accuracy {row['missing_pixel_accuracy']:.4f}")

    k = min(args.figure_examples, len(x))
    shown = {"observed": torch.where(mask, x, torch.full((), 0.5))[:k]}
    shown.update({m: torch.where(mask, x, probs[m])[:k] for m in METHODS})
    shown["truth"] = x[:k]
    figure(shown, data.side, out / "completions.png")

    metrics = {
        "dataset": args.dataset,
        "test_examples": len(x),
        "missing": "the top half of the rows of each digit; the bottom half observed",
        "missing_pixels_per_digit": int((~mask[0]).sum()),
        "results": results,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "no_progress")},
        "vae": {"epochs": None if args.init_from else args.epochs, "init_from": args.init_from, "train_seconds": train_seconds},
        "device": str(device),
        "device_name": runs.device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "figures": ["completions.png"],
    }
    runs.write_json(metrics, out / "metrics.json")
    print(f"wrote metrics.json and completions.png to {out.resolve()}")


if __name__ == "__main__":
    main()
