"""Guide families for the deep latent Gaussian model, compared at one architecture, data set and budget.

Every case is one :func:`pyro_lvm.evaluation.run_vae_experiment`, the run ``examples/vae.py``
makes (same model, encoder sizes, data, epochs, batch size, learning-rate schedule and seed),
with one guide family, objective and encoder, in this process. The ``encoder`` column gives two
row sets: ``mlp`` (dense encoder and decoder, every family) and ``conv`` (the convolutional VAE:
stride-2 convolutions in the encoder, stride-1 convolutions and ``PixelShuffle`` in the decoder;
every family with an encoder, so not ``local``). Its record gives the test ELBO (the hard
ELBO for ``delta``, which is not a bound), test NLL by importance sampling (nats, positive),
amortization gap, active units, seconds per epoch, examples per second and peak memory (CUDA:
torch's peak allocation during the case; CPU: the process's peak resident set so far, so a
case's figure is at least the largest of the cases before it).

Writes ``OUT/guide_families_<device>.json`` (rows from other devices kept), a Markdown table
beside it and ``OUT/guide_families_<device>.png`` (test NLL against training wall clock).

    python benchmarks/guide_families.py --quick                  # CPU, 8x8 digits, a few minutes
    python benchmarks/guide_families.py --device cuda            # MNIST, Burda et al.'s 784-200-200-50
    python benchmarks/guide_families.py --device cuda --dataset binarized_mnist --cases normal:elbo normal:iwae
    python benchmarks/guide_families.py --device cuda --cases iaf:iwae --epochs 100 --batch-size 500   # one case, shorter
    python benchmarks/guide_families.py --quick --cases normal:elbo normal:elbo:conv   # GUIDE:LOSS[:ENCODER], mlp by default
    python benchmarks/guide_families.py --device cuda --keep-runs runs/gf --resume   # again after an interruption: done cases are read back

The full configuration is the IWAE paper's one-layer model (Burda, Grosse and
Salakhutdinov, 2015, Table 1: VAE 86.76 nats, IWAE k=50 84.78 nats, test NLL with k=5000
on dynamically binarized MNIST) with a shorter schedule: batch 100, Adam 1e-3 decayed by
``--lr-decay`` per epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, parser, row, setup, write_results  # noqa: E402

from pyro_lvm.evaluation import VAEData, VAEExperiment, load_vae_data, run_vae_experiment  # noqa: E402
from pyro_lvm.evaluation.vae_experiment import CONV_GUIDES  # noqa: E402
from pyro_lvm.runs import positive_float, positive_int, write_json  # noqa: E402

__all__ = ["CASES", "build_parser", "case_name", "experiment_for", "main", "plot", "run_case"]

NAME = "guide_families"

#: (guide, loss) pairs of one row set; every family with the ELBO, the IWAE bound for two.
FAMILY_CASES = [
    ("normal", "elbo"), ("mvn", "elbo"), ("lowrank", "elbo"), ("iaf", "elbo"), ("delta", "elbo"),
    ("local", "elbo"), ("semi", "elbo"), ("normal", "iwae"), ("iaf", "iwae"),
]
#: (guide, loss, encoder) of the full comparison: the mlp row set, then the conv row set (the families with an encoder).
CASES = [(g, loss, "mlp") for g, loss in FAMILY_CASES] + [(g, loss, "conv") for g, loss in FAMILY_CASES if g in CONV_GUIDES]
#: The cases of ``--smoke`` without ``--cases``: one of each kind of guide, and the conv encoder.
SMOKE_CASES = [("normal", "elbo", "mlp"), ("local", "elbo", "mlp"), ("normal", "elbo", "conv")]
#: Settings per size: data set, latent size, epochs, batch, lr decay, IWAE particles, evaluation.
CONFIGS = {
    "full": dict(dataset="mnist", z_dim=50, epochs=300, batch_size=100, lr_decay=0.99, particles=50,
                 eval_samples=5000, eval_examples=None, gap_examples=500, gap_steps=300),
    "quick": dict(dataset="digits", z_dim=8, epochs=40, batch_size=100, lr_decay=0.98, particles=5,
                  eval_samples=500, eval_examples=None, gap_examples=100, gap_steps=100),
    "smoke": dict(dataset="digits", z_dim=4, epochs=2, batch_size=100, lr_decay=1.0, particles=2,
                  eval_samples=20, eval_examples=50, gap_examples=10, gap_steps=5),
}
TABLE_COLUMNS = [
    "case", "encoder", "device", "dataset", "epochs", "test_elbo", "test_nll", "eval_samples", "test_examples", "bits_per_dim",
    "amortization_gap", "active_units", "active_directions", "seconds_per_epoch", "examples_per_second",
    "peak_memory_mb",
]


def case_name(guide: str, loss: str, encoder: str, particles: int) -> str:
    """The row's name: ``normal+elbo``, ``iaf+iwae(K=50)``, ``normal+elbo[conv]`` (the mlp rows keep their names)."""
    return f"{guide}+{loss}" + (f"(K={particles})" if loss == "iwae" else "") + ("" if encoder == "mlp" else f"[{encoder}]")


def experiment_for(guide: str, loss: str, encoder: str, config: dict, args) -> VAEExperiment:
    """The settings of one case (checked by :class:`~pyro_lvm.evaluation.VAEExperiment` before any case runs)."""
    return VAEExperiment(
        dataset=config["dataset"], guide=guide, loss=loss, encoder=encoder, particles=config["particles"] if loss == "iwae" else 1,
        z_dim=config["z_dim"], hidden=list(args.hidden), epochs=config["epochs"], batch_size=config["batch_size"],
        lr=args.lr, lr_decay=config["lr_decay"], eval_samples=config["eval_samples"],
        eval_examples=config["eval_examples"], gap_examples=config["gap_examples"], gap_steps=config["gap_steps"],
        device=args.device, seed=args.seed,
    )


def run_case(experiment: VAEExperiment, args, data: VAEData, out_dir: Path | None) -> dict:
    """Train and evaluate one case on ``data`` in this process; returns its record (``examples/vae.py``'s ``metrics.json``).

    With ``out_dir`` (``--keep-runs``) the record is written there as ``metrics.json`` with the
    case's settings beside it (``experiment.json``, written after the case succeeds); under
    ``args.resume`` a folder holding the record of the same settings is read back instead of run again.
    """
    name = case_name(experiment.guide, experiment.loss, experiment.encoder, experiment.particles)
    settings = {**experiment.to_dict(), "data_dir": args.data_dir}
    if out_dir is not None:
        metrics, record = out_dir / "metrics.json", out_dir / "experiment.json"
        if args.resume and metrics.exists() and record.exists() and json.loads(record.read_text()) == settings:
            print(f"-- {name}: done before, reading {metrics}", flush=True)
            return json.loads(metrics.read_text())
        record.unlink(missing_ok=True)  # until this case succeeds, the folder holds no finished case
    print(f"-- {name}", flush=True)
    m = run_vae_experiment(experiment, data, progress=False).metrics
    print(f"test {'ELBO' if m['test_elbo_is_bound'] else 'hard ELBO'} {m['test_elbo']:.2f} nats, test NLL {m['test_nll']:.2f} "
          f"nats (k={m['eval_samples']}, {m['test_examples']} images), {m['seconds_per_epoch']:.2f} s/epoch", flush=True)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(m, metrics)
        write_json(settings, record)
        m = json.loads(metrics.read_text())  # the same record a resumed run reads back (tensors as lists)
    return m


def plot(rows: list[dict], histories: dict[str, list[dict]], path: Path) -> Path:
    """Left: test NLL against training wall clock, one point per case (circles and crosses: mlp with the ELBO and
    IWAE; squares and pluses: conv). Right: the test loss during training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, r in enumerate(rows):
        color = plt.get_cmap("tab10")(i % 10)
        marker = {"mlp": "x" if r["loss"] == "iwae" else "o", "conv": "+" if r["loss"] == "iwae" else "s"}[r["encoder"]]
        left.scatter(r["train_seconds"], r["test_nll"], marker=marker, color=color)
        left.annotate(r["case"], (r["train_seconds"], r["test_nll"]), fontsize=8, xytext=(4, 2), textcoords="offset points")
        epochs = [e for e in histories.get(r["case"], []) if e.get("val_loss") is not None]
        if epochs:
            seconds = torch.tensor([e["seconds"] for e in histories[r["case"]]]).cumsum(0)
            right.plot(
                [seconds[e["epoch"]].item() for e in epochs], [e["val_loss"] for e in epochs], "o-", ms=3, color=color, label=r["case"]
            )
    left.set_xlabel("training wall clock (s)")
    left.set_ylabel("test NLL (nats), importance sampled")
    left.set_title(f"{rows[0]['dataset']} on {rows[0]['device_name']}", fontsize=9)
    right.set_xlabel("training wall clock (s)")
    right.set_ylabel("test loss (nats)")
    right.set_title("training objective on the test examples (-ELBO, -IWAE bound or -hard ELBO)", fontsize=9)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's command line: the flags every benchmark takes and the settings shared by every case."""
    p = parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=("digits", "mnist", "binarized_mnist"), default=None,
                   help="data set (default: mnist, dynamically binarized; digits under --quick/--smoke)")
    p.add_argument("--data-dir", default=None, help="folder with mnist/ or binarized_mnist/ (default: $PYRO_LVM_DATA)")
    p.add_argument("--cases", nargs="+", default=None, metavar="GUIDE:LOSS[:ENCODER]",
                   help="cases to run, e.g. normal:elbo iaf:iwae normal:elbo:conv; ENCODER mlp (default) or conv (default: "
                        "every family with elbo, normal and iaf with iwae, with the mlp and, but for local, the conv encoder)")
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs of every case (default: 300; 40 under --quick)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="minibatch size of every case (default: 100)")
    p.add_argument("--eval-samples", type=positive_int, default=None,
                   help="importance samples per test example for the test NLL (default: 5000; 500 under --quick)")
    p.add_argument("--eval-examples", type=positive_int, default=None,
                   help="score only the first N test examples (default: all of them)")
    p.add_argument("--particles", type=positive_int, default=None, help="IWAE particles K (default: 50; 5 under --quick)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    p.add_argument(
        "--lr-decay", type=positive_float, default=None, help="learning-rate factor per epoch (default: 0.99; 0.98 under --quick)"
    )
    p.add_argument("--hidden", type=positive_int, nargs="+", default=[200, 200], help="encoder and decoder hidden sizes (default: 200 200)")
    p.add_argument("--keep-runs", default=None,
                   help="keep each case's record (metrics.json, as examples/vae.py writes it) and settings in a folder under this one")
    p.add_argument("--resume", action="store_true",
                   help="with --keep-runs, read back the cases already run there with the same settings instead of rerunning them")
    return p


def main(argv: list[str] | None = None) -> list[dict]:
    p = build_parser()
    args = p.parse_args(argv)
    if args.resume and not args.keep_runs:
        p.error("--resume needs --keep-runs: the folder where the earlier cases were kept")
    device = setup(args)
    size = "smoke" if args.smoke else "quick" if args.quick else "full"
    config = dict(CONFIGS[size])
    for key in ("dataset", "epochs", "batch_size", "eval_samples", "eval_examples", "particles", "lr_decay"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    cases = (SMOKE_CASES if size == "smoke" else CASES) if args.cases is None else [tuple(c.split(":")) for c in args.cases]
    for i, case in enumerate(cases):
        if len(case) == 2:
            cases[i] = case = (*case, "mlp")
        if len(case) != 3 or case[1] not in ("elbo", "iwae"):
            raise ValueError(f"--cases takes GUIDE:LOSS[:ENCODER] with LOSS elbo or iwae, got {':'.join(case)!r}")
    experiments = [experiment_for(guide, loss, encoder, config, args) for guide, loss, encoder in cases]

    rows, histories = [], {}
    data = load_vae_data(config["dataset"], args.data_dir, seed=args.seed)
    for e in experiments:
        folder = f"{e.guide}_{e.loss}" + ("" if e.encoder == "mlp" else f"_{e.encoder}")
        m = run_case(e, args, data, Path(args.keep_runs) / folder if args.keep_runs else None)
        case = case_name(e.guide, e.loss, e.encoder, m["particles"])
        histories[case] = m["history"]
        rows.append(row(
            NAME, case, device, args.quick or args.smoke,
            threads=args.threads or None, clock="wall (perf_counter) inside the training loop",
            guide=e.guide, loss=e.loss, encoder=m["encoder"], particles=m["particles"], dataset=m["dataset"], epochs=m["epochs"],
            batch_size=config["batch_size"], lr=args.lr, lr_decay=config["lr_decay"], z_dim=m["z_dim"],
            hidden=m["hidden"], objective=m["objective"], test_elbo=m["test_elbo"],
            test_elbo_is_bound=m["test_elbo_is_bound"], test_nll=m["test_nll"], bits_per_dim=m["bits_per_dim"],
            eval_samples=m["eval_samples"], test_examples=m["test_examples"], likelihood_proposal=m["likelihood_proposal"],
            amortization_gap=m["amortization_gap"], gap_examples=m["gap_examples"], active_units=m["active_units"],
            active_directions=m["active_directions"],
            train_seconds=m["train_seconds"], seconds_per_epoch=m["seconds_per_epoch"],
            examples_per_second=m["examples_per_second"], peak_memory_mb=m["peak_memory_mb"],
        ))
    name = f"{NAME}_{device.type}"
    path = write_results(name, rows, args.out)
    all_rows = json.loads(path.read_text())
    notes = (
        f"## {name}\n\n`python benchmarks/guide_families.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n\n"
        "test_elbo of `delta` is the hard ELBO (rate-distortion objective, no entropy term): not a bound on log p(x); "
        "its test_nll uses a Gaussian proposal around the point. test_nll: importance sampling with eval_samples "
        "samples per test example (positive, nats). amortization_gap: per-example optimized ELBO minus the encoder's "
        "(same family, gap_examples test examples); none for `local`, which has no encoder. encoder: `mlp` (dense "
        "encoder and decoder of the hidden sizes) or `conv` (the convolutional VAE: stride-2 convolutions, then a "
        "feature layer of the last hidden size; decoder of stride-1 convolutions and PixelShuffle). active_units: latent axes "
        "whose posterior mean varies across test examples (variance > 0.01, Burda et al.); active_directions: the "
        "same count along principal directions, which full-covariance guides and flows may rotate away from the axes. "
        "Wall-clock figures come from a shared machine when the device is a CPU.\n\n"
    )
    (path.parent / f"{name}.md").write_text(notes + markdown_table(all_rows, TABLE_COLUMNS))
    plot(rows, histories, path.parent / f"{name}.png")
    print(f"wrote {path}, {name}.md and {name}.png")
    return rows


if __name__ == "__main__":
    main()
