"""The importance-weighted evaluator against the machine's matrix-multiply rate, with a breakdown of its time.

What is timed: :func:`pyro_lvm.infer.importance_log_likelihood` of ``DeepLatentGaussian(784, 50, (200, 200))``
(tanh, Bernoulli) with an ``AmortizedNormal`` guide (the networks of ``svi_overhead.py``, untrained:
the arithmetic does not depend on the weights) on N = 500 random binary images, ``chunk_size`` 40:
the chunks ``examples/vae.py`` evaluates with (``chunked_log_likelihood``: 500 images, at most 20,000
weights at once), so a chunk here is one of the 2,500 of a k = 5000 evaluation of the 10,000 MNIST test
images. Each call draws ``--chunks`` chunks; times are per chunk, in thread CPU time on one thread.

**Flops** (counted analytically, per chunk of k draws of N images; a multiply-add is 2 flops; only the
matrix multiplies count, the elementwise work below is not counted as flops):
decoder ``k * N * 2 * (z * h1 + h1 * h2 + h2 * D)`` = 413,600 per draw and image, plus the encoder, run
once per chunk, ``N * 2 * (D * h1 + h1 * h2 + h2 * 2 z)`` = 433,600 per image (2.6% of a chunk's flops).

**Rates.** ``gflop_per_s`` = those flops / the evaluator's time per chunk; ``matmul_gflop_per_s`` = the
rate of a plain ``torch.matmul`` of the decoder's last layer at the chunk's shape, ``(k N, h2) @ (h2, D)``
= (20000, 200) @ (200, 784), and at the shape of one block of the model's replay (the evaluator
replays the model against at most 1,024 weights per call on the CPU: ``(2 N, 200) @ (200, 784)``).
Their ``ratio`` (matmul rate / evaluator rate) is paired: evaluator and matmul alternate, and the
per-pair time ratio is scaled by the flop ratio; median and quartiles.

**Rows.**

- ``evaluator vs matmul, chunk shape`` / ``block shape``: the headline rate ratios;
- ``hand-written vs matmul, chunk shape``: the same k-sample estimate in plain PyTorch (no Pyro: the
  guide's encoder and output layer once per chunk, the draws ``loc + eps * scale``, the Gaussian
  densities in closed form, the decoder and ``-binary_cross_entropy_with_logits(...).sum(-1)`` in the
  evaluator's blocks, a running ``logsumexp``), the floor for this arithmetic in eager PyTorch;
- ``evaluator / hand-written``: paired time ratio; ``max_abs_diff`` between the two estimates from the
  same seed (the same draws; the densities are rounded differently), nats;
- ``one model call per chunk / blocks``: the evaluator with the model replayed in one call per chunk
  (``_BLOCK_WEIGHTS`` set past any chunk, as before the blocks) over the evaluator as it is, paired;
  ``same_numbers``: both give bit-identical estimates from the same seed;
- ``breakdown: ...``: where a chunk's time goes. The hand-written chunk is timed cut short after each
  piece (cumulative stages, each paired against the whole hand-written chunk: ``ratio`` is the stage's share
  of it): the guide (encoder, draws, the two Gaussian densities); the decoder's three ``F.linear`` (bias
  included, chained without the activation); its two ``tanh``; ``logsigmoid`` of the logits; the rest of the
  Bernoulli log-likelihood (torch's ``Bernoulli.log_prob`` is ``-binary_cross_entropy_with_logits`` on the
  data broadcast to the logits: ``logsigmoid``, ``1 - x``, a multiply, a subtract, the negation; then the sum
  over pixels); the final ``logsumexp``. A piece's ``ms_per_chunk`` is the difference of successive stages
  (a tiny piece can come out below 0). ``Pyro bookkeeping`` = evaluator - hand-written: tracing, replay,
  plates, distribution objects, torch's Gaussian ``log_prob``, ``pack_tensors``/``contract_to_tensor`` per
  block, and per call the guide check and Pyro's validation of the first chunk (spread over the call's
  ``--chunks`` chunks; a k = 5000 evaluation makes 125 per call). ``share_of_evaluator`` = the piece's time /
  the evaluator's.

The PNG draws the breakdown, with the evaluator's time, the hand-written one's, and the time all its
flops would take at the chunk-shape matmul rate.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import statistics
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import paired_ratio, parser, row, setup, write_markdown, write_results  # noqa: E402
from svi_overhead import _networks  # noqa: E402

from pyro_lvm.guides.heads import positive_scale  # noqa: E402
from pyro_lvm.infer import importance_log_likelihood  # noqa: E402
from pyro_lvm.runs import positive_int  # noqa: E402

__all__ = ["SIZES", "TABLE_COLUMNS", "HandEstimate", "build_parser", "chunk_flops", "main", "plot"]

NAME = "evaluator"
#: the module whose ``_BLOCK_WEIGHTS`` sets the model's blocks (the hand-written floor uses the same blocks)
EVALUATE = importlib.import_module("pyro_lvm.infer.evaluate")
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)

#: sizes per mode: examples N, chunk_size k, chunks per timed call, pairs; network sizes
SIZES = {
    "full": dict(examples=500, chunk_size=40, chunks=5, pairs=21, data_dim=784, hidden=(200, 200), z_dim=50),
    "quick": dict(examples=500, chunk_size=40, chunks=2, pairs=7, data_dim=784, hidden=(200, 200), z_dim=50),
    "smoke": dict(examples=16, chunk_size=160, chunks=2, pairs=3, data_dim=64, hidden=(32, 32), z_dim=4),  # 2 blocks per chunk
}

TABLE_COLUMNS = [
    "case", "device", "ratio", "ratio_q25", "ratio_q75", "ratio_of", "gflop_per_s", "matmul_gflop_per_s", "matmul_shape",
    "ms_per_chunk", "share_of_evaluator", "same_numbers", "max_abs_diff", "examples", "chunk_size", "block", "pairs",
]


def chunk_flops(examples: int, chunk_size: int, data_dim: int, hidden: tuple[int, int], z_dim: int) -> int:
    """Matrix-multiply flops of one chunk (a multiply-add = 2): the decoder per draw and image, the encoder
    (its two hidden layers and the output layer of ``loc`` and ``scale``) once per image."""
    h1, h2 = hidden
    decoder = 2 * (z_dim * h1 + h1 * h2 + h2 * data_dim)
    encoder = 2 * (data_dim * h1 + h1 * h2 + h2 * 2 * z_dim)
    return chunk_size * examples * decoder + examples * encoder


class HandEstimate:
    """The evaluator's k-sample estimate in plain PyTorch, from the same networks and the same draws.

    Per chunk: the guide's encoder and output layer on x (N, D) give ``loc`` and ``scale`` (N, z); the
    draws are ``loc + eps * scale`` with ``eps`` (k, N, z) standard normal (as ``Normal.rsample``); the
    decoder and the Bernoulli log-likelihood run in the evaluator's blocks of draws.
    """

    def __init__(self, model: torch.nn.Module, guide: torch.nn.Module, block: int) -> None:
        site = guide.sites[0]
        self.encoder, self.output_layer, self.decoder, self.block = site.encoder, site.output_layer, model.decoder, block

    def guide(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draws z (k, N, z) and ``log p(z) - log q(z | x)`` (k, N)."""
        loc, raw = self.output_layer(self.encoder(x)).chunk(2, dim=-1)
        scale = positive_scale(raw)
        eps = torch.empty((k, *loc.shape), dtype=loc.dtype, device=loc.device).normal_()
        z = loc + eps * scale
        log_q = (-0.5 * eps**2 - scale.log() - LOG_SQRT_2PI).sum(-1)
        log_p = (-0.5 * z**2 - LOG_SQRT_2PI).sum(-1)
        return z, log_p - log_q

    def log_likelihood(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log p(x | z)`` (k, N) for z (k, N, z) and x (N, D), block by block."""
        return torch.cat([bernoulli_log_prob(self.decoder(zb), x) for zb in z.split(self.block)])

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, num_samples: int, chunk_size: int) -> torch.Tensor:
        """``log p(x_n)`` estimates (N,), nats."""
        running = None
        for start in range(0, num_samples, chunk_size):
            z, log_prior_ratio = self.guide(x, min(chunk_size, num_samples - start))
            chunk = torch.logsumexp(self.log_likelihood(z, x) + log_prior_ratio, dim=0)
            running = chunk if running is None else torch.logaddexp(running, chunk)
        return running - math.log(num_samples)


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sum_d log Bernoulli(x_d | logits_d)`` (..., N) for logits (..., N, D), as torch's ``Bernoulli.log_prob``
    computes it (on the data broadcast to the logits' shape) and ``Independent`` sums it."""
    return (-F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")).sum(-1)


@contextmanager
def _block_weights(value: int) -> Iterator[None]:
    """The evaluator with the model replayed against at most ``value`` weights per call."""
    before = EVALUATE._BLOCK_WEIGHTS
    EVALUATE._BLOCK_WEIGHTS = value
    try:
        yield
    finally:
        EVALUATE._BLOCK_WEIGHTS = before


def _seeded(fn: Callable[[], torch.Tensor], seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return fn()


def _stages(hand: HandEstimate, x: torch.Tensor, k: int) -> dict[str, Callable[[], object]]:
    """One chunk of the hand-written estimate cut short, each stage doing the one before and one piece more:
    the guide; then per block the decoder's linear layers alone (chained, no tanh); the whole decoder; and
    ``logsigmoid`` of its logits; or instead the whole Bernoulli log-likelihood. The full chunk adds the
    ``logsumexp``. Name of the piece a stage adds -> the stage."""
    layers = [m for m in hand.decoder if isinstance(m, torch.nn.Linear)]

    def linears(h: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            h = layer(h)
        return h

    tails = {
        "guide (encoder, draws, Gaussian densities)": None,
        "decoder matmuls": linears,
        "decoder tanh": hand.decoder,
        "logsigmoid of the logits": lambda zb: F.logsigmoid(hand.decoder(zb)),
        "rest of Bernoulli log_prob (1 - x, *, -, neg, sum)": lambda zb: bernoulli_log_prob(hand.decoder(zb), x),
    }

    def stage(tail: Callable | None) -> Callable[[], object]:
        @torch.no_grad()
        def run():
            z, _ = hand.guide(x, k)
            return z if tail is None else [tail(zb) for zb in z.split(hand.block)]

        return run

    return {name: stage(tail) for name, tail in tails.items()}


def build_parser() -> argparse.ArgumentParser:
    """The flags every benchmark takes, and the sizes (defaults per mode: see :data:`SIZES`)."""
    p = parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--examples", type=positive_int, default=None, help="images N per call (default 500; smoke 16)")
    p.add_argument("--chunk-size", type=positive_int, default=None, help="draws k per chunk (default 40; smoke 160)")
    p.add_argument("--chunks", type=positive_int, default=None, help="chunks per timed call (default 5, quick 2)")
    p.add_argument("--pairs", type=positive_int, default=None, help="timed pairs per ratio (default 21, quick 7, smoke 3)")
    return p


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    device = setup(args)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    sizes = {**SIZES[mode], **{key: getattr(args, key) for key in ("examples", "chunk_size", "chunks", "pairs")
                                if getattr(args, key) is not None}}
    n, k, pairs = sizes["examples"], sizes["chunk_size"], sizes["pairs"]
    num_samples = k * sizes["chunks"]
    data_dim, hidden, z_dim = sizes["data_dim"], sizes["hidden"], sizes["z_dim"]
    model, guide = _networks(data_dim, hidden, z_dim, device, args.seed)
    x = torch.bernoulli(torch.full((n, data_dim), 0.13, device=device))
    block = min(k, max(1, EVALUATE._BLOCK_WEIGHTS // n)) if device.type == "cpu" else k
    hand = HandEstimate(model, guide, block)
    flops = chunk_flops(n, k, data_dim, hidden, z_dim)
    per_chunk = 1.0 / sizes["chunks"]
    mm_b = torch.randn(hidden[-1], data_dim, device=device)
    matmuls = {  # shape -> the left operand
        f"({k * n}, {hidden[-1]}) @ ({hidden[-1]}, {data_dim})": torch.randn(k * n, hidden[-1], device=device),
        f"({block * n}, {hidden[-1]}) @ ({hidden[-1]}, {data_dim})": torch.randn(block * n, hidden[-1], device=device),
    }

    def evaluator():
        return importance_log_likelihood(model.model, guide, x, num_samples=num_samples, chunk_size=k)

    def handwritten():
        return hand(x, num_samples, k)

    common = dict(examples=n, chunk_size=k, block=block, chunks=sizes["chunks"], pairs=pairs, flops_per_chunk=flops)
    rows, quick = [], args.quick or args.smoke

    def rate_row(case: str, fn: Callable[[], object], shape: str) -> dict:
        a = matmuls[shape]
        mm_flops = 2 * a.shape[0] * a.shape[1] * data_dim
        t = paired_ratio(fn, lambda: torch.matmul(a, mm_b), device, repeats=pairs)
        scale = mm_flops / (flops * sizes["chunks"])  # time ratio -> rate ratio
        ms = t["a_ms"] * per_chunk
        rows.append(row(
            NAME, case, device, quick, ratio=t["ratio"] * scale, ratio_q25=t["ratio_q25"] * scale, ratio_q75=t["ratio_q75"] * scale,
            ratio_of="matmul rate / rate", gflop_per_s=flops / ms / 1e6, matmul_gflop_per_s=mm_flops / t["b_ms"] / 1e6,
            matmul_shape=shape, ms_per_chunk=ms, **common,
        ))
        print(f"{NAME} {case:42s} {rows[-1]['gflop_per_s']:6.1f} GFLOP/s, matmul {rows[-1]['matmul_gflop_per_s']:6.1f}: "
              f"ratio {rows[-1]['ratio']:.2f}", flush=True)
        return rows[-1]

    shapes = list(matmuls)
    mine = rate_row("evaluator vs matmul, chunk shape", evaluator, shapes[0])
    rate_row("evaluator vs matmul, block shape", evaluator, shapes[-1])
    floor = rate_row("hand-written vs matmul, chunk shape", handwritten, shapes[0])

    t = paired_ratio(evaluator, handwritten, device, repeats=pairs)
    diff = (_seeded(evaluator, args.seed) - _seeded(handwritten, args.seed)).abs().max().item()
    rows.append(row(NAME, "evaluator / hand-written", device, quick, ratio=t["ratio"], ratio_q25=t["ratio_q25"],
                    ratio_q75=t["ratio_q75"], ratio_of="time / hand-written time", ms_per_chunk=t["a_ms"] * per_chunk,
                    max_abs_diff=diff, **common))
    bookkeeping = (t["a_ms"] - t["b_ms"]) * per_chunk
    print(f"{NAME} evaluator / hand-written: {t['ratio']:.3f} (max |diff| {diff:.2e} nats)", flush=True)

    with _block_weights(10**18):
        unblocked = _seeded(evaluator, args.seed)
    same = bool(torch.equal(unblocked, _seeded(evaluator, args.seed)))

    def one_call():
        with _block_weights(10**18):
            return evaluator()

    t = paired_ratio(one_call, evaluator, device, repeats=pairs)
    rows.append(row(NAME, "one model call per chunk / blocks", device, quick, ratio=t["ratio"], ratio_q25=t["ratio_q25"],
                    ratio_q75=t["ratio_q75"], ratio_of="time / evaluator time", ms_per_chunk=t["a_ms"] * per_chunk,
                    same_numbers=same, **common))
    print(f"{NAME} one model call per chunk / blocks: {t['ratio']:.3f} (same numbers: {same})", flush=True)

    eval_ms, previous, hand_ms = mine["ms_per_chunk"], 0.0, []

    def hand_chunk():
        return hand(x, k, k)

    def piece_row(name: str, share: float, t: dict | None) -> None:
        ms = share * statistics.median(hand_ms)
        quartiles = {} if t is None else dict(ratio=t["ratio"], ratio_q25=t["ratio_q25"], ratio_q75=t["ratio_q75"],
                                              ratio_of="stage time / hand-written chunk time")
        rows.append(row(NAME, f"breakdown: {name}", device, quick, ms_per_chunk=ms, share_of_evaluator=ms / eval_ms,
                        **quartiles, **common))
        print(f"{NAME} breakdown: {name:52s} {ms:8.2f} ms per chunk ({ms / eval_ms:.0%})", flush=True)

    for name, stage in _stages(hand, x, k).items():
        t = paired_ratio(stage, hand_chunk, device, repeats=pairs)
        hand_ms.append(t["b_ms"])
        piece_row(name, t["ratio"] - previous, t)
        previous = t["ratio"]
    piece_row("logsumexp", 1.0 - previous, None)
    rows.append(row(NAME, "breakdown: Pyro bookkeeping", device, quick, ms_per_chunk=bookkeeping,
                    share_of_evaluator=bookkeeping / eval_ms, **common))

    path = write_results(NAME, rows, args.out)
    write_markdown(NAME, json.loads(path.read_text()), path.parent, TABLE_COLUMNS)
    plot(rows, eval_ms, floor["ms_per_chunk"], flops / mine["matmul_gflop_per_s"] / 1e6, path.parent / f"{NAME}.png")
    print(f"wrote {path}, {NAME}.md and {NAME}.png")
    return rows


def plot(rows: list[dict], evaluator_ms: float, hand_ms: float, matmul_ms: float, path: Path) -> Path:
    """Bar chart of the breakdown (ms per chunk), with the evaluator's, the hand-written floor's and the
    matmul-rate times as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [r for r in rows if r["case"].startswith("breakdown: ")]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(parts) + 2))
    y = list(range(len(parts)))
    ax.barh(y, [r["ms_per_chunk"] for r in parts], color="tab:blue")
    ax.set_yticks(y, [r["case"].removeprefix("breakdown: ") for r in parts], fontsize=8)
    ax.invert_yaxis()
    for ms, label, color in ((evaluator_ms, "evaluator", "tab:red"), (hand_ms, "hand-written", "tab:orange"),
                             (matmul_ms, "its flops at the matmul rate", "tab:green")):
        ax.axvline(ms, color=color, ls="--", lw=1, label=f"{label}: {ms:.1f} ms")
    r0 = parts[0]
    ax.set_xlabel(f"ms per chunk ({r0['chunk_size']} draws x {r0['examples']} images), one thread, thread CPU time")
    ax.set_title(f"{NAME}: where a chunk's time goes\n{r0['device_name']}, torch {r0['torch']}, pyro {r0['pyro']}", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
