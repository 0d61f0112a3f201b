"""benchmarks/scaling.py runs at smoke size and writes a timing row per point and a finite slope per sweep."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import scaling  # noqa: E402


def test_fit_slope_recovers_a_power_law():
    sizes = [2, 4, 8, 16]
    assert scaling.fit_slope(sizes, [3.0 * s**1.5 for s in sizes]) == pytest.approx(1.5)
    assert scaling.fit_slope(sizes, [0.1] * 4) == pytest.approx(0.0, abs=1e-12)


def test_smoke_run_writes_every_sweep(tmp_path):
    rows = scaling.main(["--smoke", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "scaling.json").read_text()) == json.loads(json.dumps(rows))
    sweeps = scaling.SWEEPS["smoke"]
    points = [r for r in rows if "size" in r]
    summaries = [r for r in rows if "slope" in r]
    assert [(r["part"], r["parameter"]) for r in summaries] == list(sweeps)
    for (part, parameter), sizes in sweeps.items():
        mine = [r for r in points if (r["part"], r["parameter"]) == (part, parameter)]
        assert [r["size"] for r in mine] == list(sizes)
        for r in mine:
            assert r["benchmark"] == "scaling" and r["device"] == "cpu" and r["threads"] == 1 and r["clock"] == "thread_time"
            assert 0 < r["seconds_q25"] <= r["seconds"] <= r["seconds_q75"] and r["repeats"] == scaling.REPEATS["smoke"]
            assert parameter not in r["fixed"].split("=")[0]
    for r in summaries:
        assert math.isfinite(r["slope"]) and math.isfinite(r["slope_top"]) and r["points"] == len(sweeps[r["part"], r["parameter"]])
        assert r["expected"] == scaling.EXPECTED[r["part"], r["parameter"]]
    assert "| training step, batch slope |" in (tmp_path / "scaling.md").read_text()
    assert (tmp_path / "scaling.png").stat().st_size > 0
