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

    cpu = torch.device("cpu")
    timing = _common.paired_ratio(lambda: time.sleep(0.03), lambda: time.sleep(0.01), cpu, repeats=5, warmup=1, clock="perf_counter")
    # 3 in theory; on a loaded machine each sleep overshoots by up to a few milliseconds
    assert 1.5 < timing["ratio"] < 3.5
    assert timing["ratio_q25"] <= timing["ratio"] <= timing["ratio_q75"]
    assert timing["a_ms"] > timing["b_ms"] > 9.9 and timing["clock"] == "perf_counter"
    # the default clock on one CPU thread counts this thread's CPU time: busy work, not sleep
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        busy = _common.paired_ratio(lambda: sum(range(400_000)), lambda: sum(range(200_000)), cpu, repeats=7)
        idle = _common.paired_ratio(lambda: time.sleep(0.01), lambda: sum(range(200_000)), cpu, repeats=3)
    finally:
        torch.set_num_threads(threads)
    assert busy["clock"] == "thread_time" and 1.6 < busy["ratio"] < 2.5
    assert idle["a_ms"] < 2.0  # sleeping costs no CPU time


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
    # every configuration with the plain step's analytic KL takes the same step; `pyro` (Monte Carlo KL) and
    # `default` (a whole train() call) have no step to compare
    unchecked = {"default", "pyro"}
    checked = [r for r in svi if r["config"] not in unchecked]
    assert checked and all(r["loss_rel_diff"] < 1e-5 and r["param_max_diff"] < 1e-5 for r in checked)
    assert all(r.get("loss_rel_diff") is None for r in svi if r["config"] in unchecked)
    gmm = json.loads((tmp_path / "gmm_em.json").read_text())
    assert all(abs(r["loglik_gap"]) < 1e-6 for r in gmm)
    ctc = json.loads((tmp_path / "ctc.json").read_text())
    assert all(r["value_max_diff"] < 1e-3 and r["grad_max_diff"] < 1e-4 for r in ctc)


def test_tables_have_one_column_per_field(tmp_path):
    def header(table: str) -> list[str]:
        return [c.strip() for c in table.splitlines()[0].strip("|").split("|")]

    # fields that only later rows have, in several of them (a peer's extra fields), and a repeated request
    rows = [{"case": "a", "device": "cpu", "ratio": 1.0}] + [
        {"case": f"peer {i}", "device": "cpu", "ratio": 2.0, "peer": "jax", "jax_s": 0.5} for i in range(3)
    ]
    assert header(_common.markdown_table(rows)) == ["case", "device", "ratio", "peer", "jax_s"]
    assert header(_common.markdown_table(rows, ["case", "ratio", "case"])) == ["case", "ratio"]
    assert "| peer 2 | cpu | 2 | jax | 0.5 |" in _common.markdown_table(rows)
    # --report-only rebuilds every results/<name>.md from its JSON, keeping the text above the table
    (tmp_path / "b.json").write_text(json.dumps([{**r, "device_name": "X", "torch": "t", "pyro": "p"} for r in rows]))
    (tmp_path / "b.md").write_text("## b\n\nnotes\n\n| case | peer | peer |\n|---|---|---|\n| a |  |  |\n")
    run_all.main(["--report-only", "--out", str(tmp_path), "--readme", str(tmp_path / "README.md")])
    text = (tmp_path / "b.md").read_text()
    assert text.startswith("## b\n\nnotes\n\n| case | device | ratio | peer | jax_s |")
    # and the committed tables have one column per field
    for table in [*(BENCHMARKS / "results").glob("*.md"), BENCHMARKS / "README.md"]:
        for line in table.read_text().splitlines():
            if line.startswith("| ") and not line.startswith("|---"):
                cols = header(line)
                if cols[0] == "case":
                    assert len(cols) == len(set(cols)), (table.name, cols)


def test_result_files_map_to_their_benchmark():
    assert run_all._benchmark_of("gmm_em") == "gmm_em"
    assert run_all._benchmark_of("guide_families_cuda") == "guide_families"
    assert run_all._benchmark_of("ctc_old") == "ctc" and run_all._benchmark_of("other") is None


@pytest.mark.parametrize("name", sorted(HEADLINE))
def test_help_names_every_flag(name, capsys):
    with pytest.raises(SystemExit):
        run_all._load(name).main(["--help"])
    out = capsys.readouterr().out
    for flag in ("--quick", "--device", "--out", "--threads"):
        assert flag in out


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_jax_peer_em_matches_scikit_learn(covariance_type):
    pytest.importorskip("jax", reason="the JAX peer needs jax (pip install numpyro jax)")
    import warnings

    from _jax_gmm_em import JaxMixtureEM
    from gmm_em import make_data, shared_init
    from sklearn.mixture import GaussianMixture

    X = make_data(2000, 3, 3, seed=4)
    init = shared_init(X, 3, covariance_type, seed=4)
    peer = JaxMixtureEM(X, init, covariance_type, tol=1e-6, max_iter=50, reg_covar=1e-6).fit()
    reference = GaussianMixture(3, covariance_type=covariance_type, tol=1e-6, max_iter=50, reg_covar=1e-6, **init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.fit(X)
    assert peer.n_iter_ == reference.n_iter_
    assert peer.score() == pytest.approx(reference.score(X), abs=1e-10)


def test_guide_families_writes_a_row_per_case(tmp_path, monkeypatch):
    import guide_families

    argv = ["--smoke", "--out", str(tmp_path), "--cases", "delta:elbo", "normal:iwae", "normal:elbo:conv",
            "--eval-examples", "30", "--keep-runs", str(tmp_path / "runs")]
    rows = guide_families.main(argv)
    assert [r["case"] for r in rows] == ["delta+elbo", "normal+iwae(K=2)", "normal+elbo[conv]"]
    assert [r["encoder"] for r in rows] == ["mlp", "mlp", "conv"]  # the conv row set beside the mlp one
    for r in rows:
        assert r["benchmark"] == "guide_families" and r["dataset"] == "digits" and r["test_examples"] == 30
        assert math.isfinite(r["test_nll"]) and r["test_nll"] > 0 and r["seconds_per_epoch"] > 0
    assert not rows[0]["test_elbo_is_bound"] and rows[1]["test_elbo_is_bound"]  # delta's hard ELBO is labelled as such
    assert rows[1]["test_elbo"] <= -rows[1]["test_nll"] + 1e-3  # the IWAE bound is below the K=20 estimate, up to noise
    assert rows[2]["test_elbo_is_bound"] and rows[2]["amortization_gap"] is not None  # the conv encoder's own gap
    saved = json.loads((tmp_path / "guide_families_cpu.json").read_text())
    assert [r["case"] for r in saved] == [r["case"] for r in rows]
    table = (tmp_path / "guide_families_cpu.md").read_text()
    assert "| normal+iwae(K=2) | mlp | cpu | digits |" in table and "| normal+elbo[conv] | conv | cpu | digits |" in table
    assert (tmp_path / "runs" / "normal_elbo_conv" / "metrics.json").exists()
    # the default cases: every family with the mlp encoder, then every family with an encoder (not local) with conv
    conv, mlp = ([c[:2] for c in guide_families.CASES if c[2] == encoder] for encoder in ("conv", "mlp"))
    assert conv == [c for c in mlp if c[0] != "local"] and len(mlp) == 9
    with pytest.raises(ValueError, match=r"conv encoder needs a guide family with an encoder.*'local'"):
        guide_families.main(["--smoke", "--out", str(tmp_path / "bad"), "--cases", "normal:elbo", "local:elbo:conv"])
    assert (tmp_path / "guide_families_cpu.png").stat().st_size > 0
    # --resume reads the kept cases back instead of training them again; other settings run anew
    class Rerun(Exception):
        pass

    def no_training(*args, **kwargs):
        raise Rerun("a case ran")

    monkeypatch.setattr(guide_families, "run_vae_experiment", no_training)
    again = guide_families.main([*argv, "--resume"])
    assert [(r["case"], r["test_nll"]) for r in again] == [(r["case"], r["test_nll"]) for r in rows]
    with pytest.raises(Rerun):
        guide_families.main([*argv[:-4], "--eval-examples", "20", "--keep-runs", str(tmp_path / "runs"), "--resume"])
