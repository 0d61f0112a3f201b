"""The main job, examples/vae.py, end to end (small runs)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vae.py"


def run_example(tmp_path, *flags):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--out", str(out), "--no-progress", *flags],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(out.resolve()) in result.stdout  # it says where its output went
    return out, json.loads((out / "metrics.json").read_text())


def test_quick_run_on_embedded_digits(tmp_path):
    out, metrics = run_example(tmp_path, "--quick")
    assert metrics["dataset"] == "digits" and metrics["test_examples"] == 200
    assert metrics["stochastic_layers"] == 1 and metrics["encoder"] == "mlp" and metrics["z1_dim"] is None
    assert metrics["test_elbo"] < 0 and metrics["test_log_likelihood"] < 0
    # importance sampling with k=100 sits above the single-sample bound (up to its noise)
    assert metrics["test_log_likelihood"] > metrics["test_elbo"] - 0.5
    assert metrics["bits_per_dim"] > 0
    for name in ["samples.png", "reconstructions.png", "training_curve.png", "latent_scatter.png"]:
        assert (out / name).stat().st_size > 1000, name
    # training went somewhere: the last epoch's loss is well below the first
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"] - 1.0


def test_quick_run_on_binarized_mnist(tmp_path, shared_data):
    _, metrics = run_example(
        tmp_path, "--quick", "--dataset", "binarized_mnist", "--data-dir", str(shared_data), "--epochs", "1", "--z-dim", "8"
    )
    assert metrics["dataset"] == "binarized_mnist" and metrics["train_examples"] == 50000
    assert 0 < -metrics["test_log_likelihood"] < 250  # one epoch of a VAE is far below a uniform model's 543 nats


def test_missing_data_folder_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--quick", "--dataset", "mnist", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "train-images-idx3-ubyte" in result.stderr and str(tmp_path / "none") in result.stderr


@pytest.mark.slow
def test_full_default_run(tmp_path):
    _, metrics = run_example(tmp_path)
    assert metrics["eval_samples"] == 5000


def test_quick_run_with_the_compiled_elbo(tmp_path):
    _, metrics = run_example(tmp_path, "--quick", "--jit")
    assert metrics["jit"] and metrics["test_elbo"] < 0
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"] - 1.0


def test_jit_refuses_what_it_cannot_compile(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--quick", "--jit", "--guide", "iaf", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "--jit" in result.stderr and "--guide iaf" in result.stderr


def test_iwae_run_starts_from_an_elbo_runs_checkpoint(tmp_path):
    _, pre = run_example(tmp_path / "pre", "--quick", "--epochs", "5", "--checkpoint", str(tmp_path / "pre.pt"))
    _, metrics = run_example(tmp_path / "iwae", "--quick", "--epochs", "1", "--loss", "iwae", "--particles", "3",
                             "--init-from", str(tmp_path / "pre.pt"))
    assert metrics["init_from"]["epochs"] == 5 and metrics["init_from"]["train_seconds"] > 0
    assert len(metrics["history"]) == 1  # its own schedule, not the pretraining's epochs
    # it starts where the pretraining stopped, not from a fresh initialization
    assert metrics["history"][0]["train_loss"] < pre["history"][0]["train_loss"] - 1.0


def test_init_from_a_missing_file_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--quick", "--init-from", str(tmp_path / "none.pt"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "--init-from" in result.stderr and "none.pt" in result.stderr


def _finite_record(metrics):
    for key in ("test_elbo", "test_log_likelihood", "bits_per_dim", "seconds_per_epoch"):
        assert math.isfinite(metrics[key]), key


def test_quick_run_with_two_stochastic_layers(tmp_path):
    out, metrics = run_example(tmp_path, "--quick", "--stochastic-layers", "2", "--z1-dim", "8", "--z-hidden", "16", "--epochs", "3")
    assert metrics["stochastic_layers"] == 2 and metrics["encoder"] == "mlp" and metrics["z1_dim"] == 8
    assert set(metrics["active_units_per_layer"]) == {"z1", "z2"}
    assert math.isfinite(metrics["amortization_gap"])  # q(z1 | x) optimized per example, q(z2 | z1) kept
    assert metrics["active_units"] == sum(metrics["active_units_per_layer"].values())
    assert len(metrics["latent_mean_variances"]) == 8 + metrics["z_dim"]
    _finite_record(metrics)
    assert (out / "reconstructions.png").stat().st_size > 1000


def test_quick_run_of_the_convolutional_vae(tmp_path):
    _, metrics = run_example(tmp_path, "--quick", "--encoder", "conv", "--epochs", "3")
    assert metrics["encoder"] == "conv" and metrics["stochastic_layers"] == 1
    assert metrics["active_units_per_layer"] == {"z": metrics["active_units"]}
    _finite_record(metrics)
    assert metrics["parameters"]["model"] > 0 and metrics["parameters"]["guide"] > 0


@pytest.mark.parametrize("flags, named", [
    (["--stochastic-layers", "2", "--guide", "iaf"], "--stochastic-layers 2"),
    (["--stochastic-layers", "2", "--encoder", "conv"], "--encoder conv"),
    (["--encoder", "conv", "--guide", "local"], "--encoder conv"),
    (["--encoder", "conv", "--jit"], "--jit"),
    (["--stochastic-layers", "3"], "--stochastic-layers"),
])
def test_layers_and_encoder_are_checked_when_parsed(tmp_path, flags, named):
    result = subprocess.run([sys.executable, str(EXAMPLE), "--quick", *flags, "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and named in result.stderr
