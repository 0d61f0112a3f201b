"""Attention as a latent alignment on CoNLL-SIGMORPHON 2017 task 1 (morphological inflection).

Each model reads a lemma and its feature tags and writes the inflected form. The same networks
(character embeddings, a bidirectional LSTM encoder, a decoder LSTM, 0th-order attention) are
trained five ways: ``soft`` (deterministic attention, the baseline), ``exact`` (the latent
alignment summed by enumeration: the exact log p(y | x)), ``hardem`` (each a_t replaced by its
MAP; from a random start it collapses, so ``--hardem-warmup 5`` trains 5 exact epochs first),
``variational`` (an amortized q(a_t | x, y), the ELBO summed by enumeration) and ``monotonic``
(a_t >= a_{t-1}, summed by the chain recursions). Outputs come from beam search.

Writes into --out: ``metrics.json`` (a list ``results``: language, setting, model, accuracy,
levenshtein, nll (exact test NLL, nats per word, for every model: the 0th-order sum is
tractable, so the variational model's NLL is exact too, not a bound), perplexity (per
character, <eos> counted), alignment_entropy (mean entropy of p(a_t | x, y) per output step;
of the attention weights for soft), train_seconds, and for hardem the exact warm-up epochs
hardem_warmup), ``alignments_<model>.png`` (alignment heat maps of a few test words) and
``accuracy_vs_time.png`` (greedy dev accuracy after each epoch).

    python examples/attention.py --language english --setting medium --model all
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tqdm import tqdm  # noqa: E402

from pyro_lvm import runs  # noqa: E402
from pyro_lvm.data.sigmorphon import SIGMORPHON_LANGUAGES  # noqa: E402
from pyro_lvm.evaluation.inflection import KINDS, SETTINGS, alignment_probs, prepare_inflection, run_inflection, trim_words  # noqa: E402

QUICK = dict(epochs=1, train_limit=200, eval_limit=50, curve_words=20, embed=8, hidden=16, beam_width=2)


def build_parser() -> argparse.ArgumentParser:
    """The command line; every numeric flag is checked when parsed (see :mod:`pyro_lvm.runs`)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--language", default="english", help=f"a language with files in the data folder ({', '.join(SIGMORPHON_LANGUAGES)})")
    p.add_argument("--setting", choices=sorted(SETTINGS), default="medium", help="training pairs: high 10,000, medium 1,000, low 100")
    p.add_argument("--data-dir", default=None, help="folder with sigmorphon2017/ (default: $PYRO_LVM_DATA)")
    p.add_argument("--model", choices=[*KINDS, "all"], default="all", help="which story and objective (all: every one)")
    p.add_argument("--epochs", type=runs.positive_int, default=30, help="passes over the training pairs")
    p.add_argument("--batch-size", type=runs.positive_int, default=32)
    p.add_argument("--lr", type=runs.positive_float, default=1e-3, help="Adam learning rate")
    p.add_argument("--embed", type=runs.positive_int, default=32, help="character and tag embedding size")
    p.add_argument("--hidden", type=runs.positive_int, default=64, help="LSTM units (per direction in the encoder)")
    p.add_argument("--hardem-warmup", type=runs.nonnegative_int, default=0,
                   help="epochs of exact training before hard EM (0: hard EM from the random start, which collapses each "
                        "word's alignment onto one source position: English medium accuracy 0.100 vs 0.829 exact; 5 recommended)")
    p.add_argument("--beam-width", type=runs.positive_int, default=4, help="beam search width for the test outputs")
    p.add_argument("--heatmaps", type=runs.positive_int, default=3, help="test words shown in each alignment figure")
    p.add_argument("--quick", action="store_true", help="a smoke run: 200 training words, 1 epoch, 50 test words, tiny networks")
    p.add_argument("--out", default="results/attention", help="output folder")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--seed", type=runs.nonnegative_int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def plot_alignments(model, data, words: int, title: str, path) -> None:
    src, src_len, tgt, tgt_len = trim_words(tuple(t[:words] for t in data["tensors"]["test"]))
    probs = alignment_probs(model, src, src_len, tgt, tgt_len)
    fig, axes = plt.subplots(1, words, figsize=(4 * words, 4), squeeze=False)
    for i, ax in enumerate(axes[0]):
        s, t = int(src_len[i]), int(tgt_len[i])
        ax.imshow(probs[i, :t, :s].cpu(), cmap="Greys", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(s), [data["sources"].symbols[j] for j in src[i, :s].tolist()], rotation=90, fontsize=7)
        ax.set_yticks(range(t), [*data["splits"]["test"].forms[i], "<eos>"][:t], fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    """Parse ``argv`` (every numeric flag is checked by its type at parse time)."""
    return build_parser().parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    runs.set_seed(args.seed)
    device = runs.resolve_device(args.device)
    out = runs.output_dir(args.out)
    data = prepare_inflection(args.language, args.setting, args.data_dir)
    settings = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, embed=args.embed, hidden=args.hidden,
                    beam_width=args.beam_width, device=device, progress=not args.no_progress, hardem_warmup=args.hardem_warmup)
    if args.quick:
        settings.update(QUICK)
    kinds = KINDS if args.model == "all" else (args.model,)
    results, curves = [], {}
    for kind in tqdm(kinds, desc="models", disable=args.no_progress):
        runs.set_seed(args.seed)
        run = run_inflection(data, kind, **settings)
        m = run["metrics"]
        results.append({"language": args.language, "setting": args.setting, "model": kind,
                        **{k: m[k] for k in ("accuracy", "levenshtein", "nll", "perplexity", "alignment_entropy", "train_seconds")},
                        **({"hardem_warmup": run["hardem_warmup"]} if kind == "hardem" else {})})
        curves[kind] = run["curve"]
        plot_alignments(run["model"], data, min(args.heatmaps, len(data["splits"]["test"])),
                        f"{kind}: {'attention weights' if kind == 'soft' else 'p(a_t | x, y)'}", out / f"alignments_{kind}.png")
        print(f"{args.language} {args.setting} {kind:12s} accuracy {m['accuracy']:.3f}  levenshtein {m['levenshtein']:.3f}  "
              f"nll {m['nll']:.2f}  perplexity {m['perplexity']:.3f}  entropy {m['alignment_entropy']:.3f}  {m['train_seconds']:.0f} s")
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, curve in curves.items():
        ax.plot([s for s, _ in curve], [a for _, a in curve], marker="o", label=kind)
    ax.set(xlabel="training seconds", ylabel="dev accuracy (greedy)", title=f"{args.language}, {args.setting}")
    ax.legend()
    fig.savefig(out / "accuracy_vs_time.png", dpi=100)
    plt.close(fig)
    metrics = {"results": results, "device": runs.device_name(device), "args": vars(args) | {"device": str(device)},
               "nll_note": "exact log p(y | x) for every model (the 0th-order alignment sum is tractable)"}
    runs.write_json(metrics, out / "metrics.json")
    print(f"wrote {out}/metrics.json and figures")
    return metrics


if __name__ == "__main__":
    main()
