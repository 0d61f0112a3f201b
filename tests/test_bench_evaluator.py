"""benchmarks/evaluator.py runs at smoke size and writes well-formed rows: finite positive rates, times and ratios."""

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import evaluator  # noqa: E402


def test_chunk_flops_counts_the_decoder_per_draw_and_the_encoder_per_image():
    # MNIST, 784-200-200-50: 413,600 flops per draw and image, 433,600 per image for the encoder
    assert evaluator.chunk_flops(1, 1, 784, (200, 200), 50) == 413_600 + 433_600
    assert evaluator.chunk_flops(500, 40, 784, (200, 200), 50) == 40 * 500 * 413_600 + 500 * 433_600


def test_smoke_run_writes_rates_breakdown_and_checks(tmp_path):
    rows = evaluator.main(["--smoke", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "evaluator.json").read_text()) == json.loads(json.dumps(rows))
    by_case = {r["case"]: r for r in rows}
    for r in rows:
        assert r["benchmark"] == "evaluator" and r["device"] == "cpu" and r["threads"] == 1 and r["clock"] == "thread_time"
        assert math.isfinite(r["ms_per_chunk"]), r  # a breakdown piece is a difference, and may come out below 0 when tiny
        if "ratio" in r:
            assert 0 < r["ratio_q25"] <= r["ratio"] <= r["ratio_q75"] < math.inf, r
    rates = [r for r in rows if r["case"].endswith("shape")]
    assert len(rates) == 3
    for r in rates:
        assert 0 < r["gflop_per_s"] < math.inf and 0 < r["matmul_gflop_per_s"] < math.inf and r["ms_per_chunk"] > 0, r
    # the smoke chunk (160 draws x 16 images) is replayed in two blocks, with the numbers of one call
    blocks = by_case["one model call per chunk / blocks"]
    assert blocks["block"] < blocks["chunk_size"] and blocks["same_numbers"] is True
    # the hand-written estimate is the same estimate from the same draws
    assert by_case["evaluator / hand-written"]["max_abs_diff"] < 1e-3
    # the pieces (the hand-written chunk's, then Pyro's bookkeeping) add up to the evaluator's chunk
    parts = [r for r in rows if r["case"].startswith("breakdown: ")]
    assert len(parts) == 7 and parts[-1]["case"] == "breakdown: Pyro bookkeeping"
    assert math.isclose(sum(r["share_of_evaluator"] for r in parts), 1.0, rel_tol=0.5)
    assert "| evaluator vs matmul, chunk shape |" in (tmp_path / "evaluator.md").read_text()
    assert (tmp_path / "evaluator.png").stat().st_size > 0
