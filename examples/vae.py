"""Train a deep latent Gaussian model (VAE) end to end and measure it the way papers do.

Story: ``z ~ N(0, I)``, ``x | z ~ Bernoulli(decoder(z))``; an amortized guide ``q(z | x)``;
Pyro SVI on the ELBO (or the IWAE bound); then the test ELBO, the importance-weighted
test log-likelihood and bits/dim, with figures. ``--stochastic-layers 2`` trains Burda et al.'s
two-layer story ``z2 -> z1 -> x`` with the guide ``q(z1 | x) q(z2 | z1)``; ``--encoder conv``
the convolutional VAE (stride-2 convolutions in the encoder, stride-1 convolutions and
depth-to-space in the decoder).

    python examples/vae.py                      # 8x8 digits bundled with scikit-learn (offline)
    python examples/vae.py --quick              # the same, in a few seconds
    python examples/vae.py --dataset mnist --data-dir DIR --epochs 50
    python examples/vae.py --guide iaf --loss iwae --particles 5   # any family, either objective
    python examples/vae.py --loss iwae --particles 50 --init-from elbo_run.pt   # IWAE after ELBO pretraining
    python examples/vae.py --dataset mnist --stochastic-layers 2   # 784-(200-200)-100-(100-100)-50
    python examples/vae.py --dataset mnist --encoder conv          # the convolutional VAE

Guide families (``--guide``): normal, mvn, lowrank, iaf, delta (the hard ELBO:
rate-distortion, not a bound), local (per-example parameters, non-amortized SVI)
and semi (encoder + ``--refine-steps`` SGD steps per example). Every run also
reports the amortization gap and the number of active latent units.

Writes ``metrics.json``, ``samples.png``, ``reconstructions.png``, ``training_curve.png``
(and ``latent_scatter.png`` for a 2-D latent) into ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from pyro import poutine

import pyro_lvm
from pyro_lvm import runs
from pyro_lvm.evaluation import (
    JIT_GUIDES,
    VAEExperiment,
    load_vae_data,
    run_vae_experiment,
)
from pyro_lvm.evaluation.vae_experiment import CONV_GUIDES, ENCODERS, TWO_LAYER_GUIDES
from pyro_lvm.guides import GUIDE_FAMILIES
from pyro_lvm.infer.distributed import init_from_environment

DATASET_DEFAULTS = {  # z_dim, epochs, batch size: a run of a few minutes on a laptop CPU
    "digits": dict(z_dim=2, epochs=300, batch_size=100),
    "mnist": dict(z_dim=50, epochs=20, batch_size=100),
    "binarized_mnist": dict(z_dim=50, epochs=20, batch_size=100),
}


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script; every numeric flag is checked when parsed (see :mod:`pyro_lvm.runs`)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=sorted(DATASET_DEFAULTS), default="digits",
                   help="digits: scikit-learn's 8x8 digits (always offline); mnist: IDX files, dynamically "
                   "binarized each epoch; binarized_mnist: Larochelle's static binarization (default: digits)")
    p.add_argument("--data-dir", default=None, help="folder with mnist/ or binarized_mnist/ (default: $PYRO_LVM_DATA)")
    p.add_argument("--guide", choices=sorted(GUIDE_FAMILIES), default="normal", help="guide family q(z|x) (default: normal)")
    p.add_argument("--loss", choices=["elbo", "iwae"], default="elbo",
                   help="elbo: Trace ELBO with the analytic KL where available; iwae: importance-weighted bound "
                   "(RenyiELBO, alpha=0) with --particles samples (default: elbo)")
    p.add_argument("--particles", type=runs.positive_int, default=1, help="samples per example in the training objective (default: 1)")
    p.add_argument("--rank", type=runs.positive_int, default=2, help="lowrank guide: columns of the covariance factor (default: 2)")
    p.add_argument("--flows", type=runs.positive_int, default=2, help="iaf guide: number of IAF layers (default: 2)")
    p.add_argument("--refine-steps", type=runs.nonnegative_int, default=5,
                   help="semi guide: SGD refinement steps per example and call; 0: the plain encoder (default: 5)")
    p.add_argument("--refine-lr", type=runs.positive_float, default=1e-2,
                   help="semi guide: SGD learning rate of the refinement (default: 0.01)")
    p.add_argument("--local-steps", type=runs.positive_int, default=500,
                   help="local guide: Adam steps fitting the test examples' parameters with the model fixed (default: 500)")
    p.add_argument("--gap-examples", type=runs.positive_int, default=100,
                   help="test examples for the amortization gap (per-example optimized ELBO minus the encoder's); at most "
                   "the evaluated examples (default: 100)")
    p.add_argument("--gap-steps", type=runs.positive_int, default=300,
                   help="Adam steps of the amortization gap's per-example optimization (default: 300)")
    p.add_argument("--epochs", type=runs.positive_int, default=None, help="training epochs (default: per dataset, see DATASET_DEFAULTS)")
    p.add_argument("--batch-size", type=runs.positive_int, default=None, help="minibatch size (default: 100)")
    p.add_argument("--lr", type=runs.positive_float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    p.add_argument("--lr-decay", type=runs.positive_float, default=1.0,
                   help="multiply the learning rate by this after every epoch (default: 1, constant)")
    p.add_argument("--z-dim", type=runs.positive_int, default=None, help="latent dimension (default: 2 for digits, 50 for MNIST)")
    p.add_argument("--hidden", type=runs.positive_int, nargs="+", default=[200, 200],
                   help="hidden layer sizes of encoder and decoder (default: 200 200)")
    p.add_argument("--stochastic-layers", type=runs.positive_int, choices=[1, 2], default=1,
                   help="1: z -> x; 2: z2 -> z1 -> x with z2 of size --z-dim, z1 of size --z1-dim, the networks between "
                   "them of sizes --z-hidden, guide q(z1 | x) q(z2 | z1) (default: 1)")
    p.add_argument("--z1-dim", type=runs.positive_int, default=100, help="two layers: size of z1 (default: 100)")
    p.add_argument("--z-hidden", type=runs.positive_int, nargs="+", default=[100, 100],
                   help="two layers: hidden layer sizes of p(z1 | z2) and q(z2 | z1) (default: 100 100)")
    p.add_argument("--encoder", choices=list(ENCODERS), default="mlp",
                   help="mlp: dense encoder and decoder; conv: stride-2 convolutions in the encoder (features of the last "
                   "--hidden size), stride-1 convolutions and PixelShuffle in the decoder (default: mlp)")
    p.add_argument("--activation", default="tanh", help="activation of the hidden layers (default: tanh)")
    p.add_argument("--kl-warmup", type=runs.nonnegative_int, default=0,
                   help="steps over which beta rises linearly from 0 to 1 (default: 0, no annealing)")
    p.add_argument("--eval-samples", type=runs.positive_int, default=5000,
                   help="importance samples per test example for log p(x) (default: 5000)")
    p.add_argument("--eval-examples", type=runs.positive_int, default=None,
                   help="evaluate on the first N test examples only, at most the test set (default: all)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file, written atomically every epoch")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    p.add_argument(
        "--init-from", default=None, metavar="CHECKPOINT",
        help="start from the weights in another run's checkpoint (same --guide and architecture), with this run's own "
             "loss, optimizer and schedule: e.g. --loss iwae after ELBO pretraining",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--seed", type=runs.nonnegative_int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", default="outputs/vae", help="output folder for metrics.json and figures (default: outputs/vae)")
    p.add_argument("--quick", action="store_true", help="a small run (seconds): few epochs, 100 importance samples on 200 test examples")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument(
        "--jit", action="store_true",
        help="compile the ELBO (pyro_lvm.infer.JitTraceMeanField_ELBO) and turn Pyro's validation off: the fast "
             "configuration of benchmarks/svi_overhead.py; --loss elbo with the normal or delta guide",
    )
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Parse ``argv`` and fill in the per-dataset and ``--quick`` defaults of the flags left out."""
    p = build_parser()
    args = p.parse_args(argv)
    defaults = DATASET_DEFAULTS[args.dataset]
    if args.z_dim is None:
        args.z_dim = defaults["z_dim"]
    if args.batch_size is None:
        args.batch_size = defaults["batch_size"]
    if args.epochs is None:
        args.epochs = min(30, defaults["epochs"]) if args.quick else defaults["epochs"]
    if args.quick:
        args.eval_samples = min(args.eval_samples, 100)
        args.eval_examples = 200 if args.eval_examples is None else min(args.eval_examples, 200)
        args.gap_examples, args.gap_steps = min(args.gap_examples, 50), min(args.gap_steps, 100)
        args.local_steps = min(args.local_steps, 200)
    if args.guide == "delta" and args.loss == "iwae":
        p.error("--guide delta has no density (it trains the hard ELBO); --loss iwae needs a guide with one")
    if args.jit and (args.loss != "elbo" or args.guide not in JIT_GUIDES or args.kl_warmup):
        p.error(f"--jit compiles the mean-field ELBO for the {', '.join(JIT_GUIDES)} guides: it needs --loss elbo, "
                f"one of those guides and no --kl-warmup (got --loss {args.loss} --guide {args.guide} --kl-warmup {args.kl_warmup})")
    if args.stochastic_layers == 2 and (args.guide not in TWO_LAYER_GUIDES or args.encoder != "mlp"):
        p.error(f"--stochastic-layers 2 takes --guide {' or '.join(TWO_LAYER_GUIDES)} and --encoder mlp "
                f"(got --guide {args.guide} --encoder {args.encoder})")
    if args.encoder == "conv" and args.guide not in CONV_GUIDES:
        p.error(f"--encoder conv needs a guide family with an encoder, --guide one of {', '.join(CONV_GUIDES)} "
                f"(got --guide {args.guide})")
    if args.jit and (args.stochastic_layers != 1 or args.encoder != "mlp"):
        p.error("--jit compiles the one-layer MLP VAE only (--stochastic-layers 1 --encoder mlp)")
    if args.init_from is not None and not Path(args.init_from).is_file():
        p.error(f"--init-from {args.init_from}: no such checkpoint file")
    return args


@torch.no_grad()
def encode(guide, x: torch.Tensor, site: str) -> torch.Tensor:
    """One draw of the latent ``site`` from q(. | x) per example, shape (N, its size)."""
    return poutine.trace(guide).get_trace(x).nodes[site]["value"]


@torch.no_grad()
def save_figures(out, model, guide, history, x_test, y_test, side, args) -> list[str]:
    """Figures for the test examples ``x_test`` (those ``guide`` covers) into ``out``; returns their names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def grid(images: torch.Tensor, rows: int, cols: int, path: str, title: str) -> None:
        fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.8, rows * 0.8 + 0.4))
        for ax, img in zip(axes.flat, images.cpu()):
            ax.imshow(img.reshape(side, side), cmap="gray", vmin=0, vmax=1)
            ax.axis("off")
        fig.suptitle(title)
        fig.savefig(out / path, dpi=100, bbox_inches="tight")
        plt.close(fig)

    written = ["samples.png", "reconstructions.png", "training_curve.png"]
    grid(model.sample(64, mean=True), 8, 8, written[0], "samples: mean of p(x | z), z ~ N(0, I)")
    site = "z1" if args.stochastic_layers == 2 else "z"  # the latent x is drawn from
    z_test = encode(guide, x_test, site)  # all at once: a local guide's rows are the test examples in order
    x = x_test[:10]
    recon = model.likelihood_dist(z_test[:10]).mean
    grid(torch.cat([x, recon]), 2, 10, written[1], f"top: test images; bottom: mean of p(x | {site}), {site} ~ q({site} | x)")

    ax = history.plot(ylabel="negative ELBO (nats)" if args.loss == "elbo" else f"negative IWAE bound, K={args.particles} (nats)")
    fig = ax.figure
    fig.savefig(out / written[2], dpi=100, bbox_inches="tight")
    plt.close(fig)

    if z_test.shape[-1] == 2:
        z = z_test.cpu()
        fig, ax = plt.subplots(figsize=(5, 5))
        sc = ax.scatter(z[:, 0], z[:, 1], c=None if y_test is None else y_test, cmap="tab10", s=6)
        if y_test is not None:
            fig.colorbar(sc, ax=ax, label="digit")
        ax.set_title(f"test images in latent space: {site} ~ q({site} | x)")
        fig.savefig(out / "latent_scatter.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append("latent_scatter.png")
    return written


def main(argv=None) -> dict:
    args = parse_args(argv)
    ranks = init_from_environment()  # under torchrun: join its process group; train() then runs on every rank
    out = runs.output_dir(args.out) if ranks is None or ranks.is_main else None
    data = load_vae_data(args.dataset, args.data_dir, seed=args.seed)
    if args.eval_examples is not None and args.eval_examples > len(data.x_test):
        raise ValueError(f"--eval-examples {args.eval_examples}: {args.dataset} has only {len(data.x_test)} test examples")
    experiment = VAEExperiment(**{k: getattr(args, k) for k in VAEExperiment.__dataclass_fields__})
    run = run_vae_experiment(experiment, data, progress=not args.no_progress and out is not None)
    if out is None:  # rank 0 writes the figures and metrics
        return run.metrics
    metrics = run.metrics
    metrics["pyro_lvm"] = pyro_lvm.__version__
    is_bound = metrics["test_elbo_is_bound"]
    metrics["figures"] = save_figures(out, run.model, run.guide, run.history, run.x_eval, run.y_eval, data.side, args)
    runs.write_json(metrics, out / "metrics.json")
    gap = metrics["amortization_gap"]
    gap_text = "n/a (no encoder)" if gap is None else f"{gap:.2f} nats"
    print(
        f"test {'hard ELBO' if not is_bound else 'ELBO'} {metrics['test_elbo']:.2f} nats, "
        f"test log p(x) {metrics['test_log_likelihood']:.2f} nats "
        f"(k={args.eval_samples}, {metrics['test_examples']} images), {metrics['bits_per_dim']:.4f} bits/dim, "
        f"{metrics['seconds_per_epoch']:.2f} s/epoch; amortization gap {gap_text}, "
        f"{metrics['active_units']}/{metrics['z_dim'] + (metrics['z1_dim'] or 0)} active units "
        f"({metrics['active_directions']} active directions; per layer {metrics['active_units_per_layer']})"
    )
    print(f"wrote metrics.json and {len(metrics['figures'])} figures to {out.resolve()}")
    return metrics


if __name__ == "__main__":
    main()
