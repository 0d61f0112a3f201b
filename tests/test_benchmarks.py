"""The benchmark scripts run and write well-formed rows (their figures are not tested: benchmarks are not tests)."""

import json
import math
import sys
import time
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _common  # noqa: E402
import run_all  # noqa: E402

HEADLINE = {"svi_overhead": "ratio", "gmm_em": "ratio_vs_sklearn", "ctc": "enum_over_native"}


def test_paired_ratio_measures_a_known_ratio():
    import torch

    timing = _common.paired_ratio(lambda: time.sleep(0.006), lambda: time.sleep(0.002), torch.device("cpu"), repeats=5, warmup=1)
    assert 1.8 < timing["ratio"] < 3.5  # 3 in theory; sleep overshoots by a fraction of a millisecond
    assert timing["ratio_q25"] <= timing["ratio"] <= timing["ratio_q75"]
    assert timing["a_ms"] > timing["b_ms"] > 1.9


def test_write_results_keeps_other_devices_rows(tmp_path):
    def rows(dev, value):
        return [{"benchmark": "b", "case": "c", "device": "cpu", "device_name": dev, "torch": "t", "pyro": "p", "ratio": value}]

    _common.write_results("b", rows("X", 1.0), tmp_path)
    _common.write_results("b", rows("Y", 2.0), tmp_path)
    _common.write_results("b", rows("X", 3.0), tmp_path)
    saved = json.loads((tmp_path / "b.json").read_text())
    assert sorted((r["device_name"], r["ratio"]) for r in saved) == [("X", 3.0), ("Y", 2.0)]
    assert "| c | cpu | 3 |" in (tmp_path / "b.md").read_text()


def test_every_benchmark_runs_and_writes_rows(tmp_path):
    readme = tmp_path / "README.md"
    run_all.main(["--smoke", "--out", str(tmp_path), "--readme", str(readme), "--only", *HEADLINE])
    text = readme.read_text()
    for name, metric in HEADLINE.items():
        rows = json.loads((tmp_path / f"{name}.json").read_text())
        assert rows, name
        for row in rows:
            for key in ("benchmark", "case", "device", "device_name", "torch", "pyro"):
                assert isinstance(row[key], str) and row[key], (name, key)
            assert row["benchmark"] == name and row["device"] == "cpu" and row["threads"] == 1
            assert math.isfinite(row[metric]) and row[metric] > 0, (name, row)
        assert (tmp_path / f"{name}.md").read_text().startswith(f"## {name}")
        assert (tmp_path / f"{name}.png").stat().st_size > 0
        assert f"![{name}]({name}.png)" in text
    # the correctness checks the benchmarks carry hold even at smoke size
    svi = json.loads((tmp_path / "svi_overhead.json").read_text())
    assert all(r["loss_rel_diff"] < 1e-5 and r["param_max_diff"] < 1e-5 for r in svi if r["config"] != "default")
    gmm = json.loads((tmp_path / "gmm_em.json").read_text())
    assert all(abs(r["loglik_gap"]) < 1e-6 for r in gmm)
    ctc = json.loads((tmp_path / "ctc.json").read_text())
    assert all(r["value_max_diff"] < 1e-3 and r["grad_max_diff"] < 1e-4 for r in ctc)


@pytest.mark.parametrize("name", sorted(HEADLINE))
def test_help_names_every_flag(name, capsys):
    with pytest.raises(SystemExit):
        run_all._load(name).main(["--help"])
    out = capsys.readouterr().out
    for flag in ("--quick", "--device", "--out", "--threads"):
        assert flag in out
