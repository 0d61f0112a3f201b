"""The example and benchmark scripts check every numeric flag when they parse it (issue 13).

``--epochs 0`` used to mean "the default" (``args.epochs or default``) and ``--eval-examples -3``
failed only after training. Now every int or float flag takes one of the argparse types of
:mod:`pyro_lvm.runs`, so 0 (where it means nothing) and negative values stop the script before
anything runs, with a message that names the flag. The flags are read from each script's
parser, so a new flag without such a type fails here.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import pytest

from pyro_lvm import runs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ["examples/vae.py", "examples/gmm.py", "examples/colorization.py", "examples/impute.py", "examples/cvae.py",
            "examples/ssvae.py", "examples/attention.py"]
#: every benchmark script (the files starting with "_" are their shared helpers)
BENCHMARKS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "benchmarks").glob("[!_]*.py"))
POSITIVE = (runs.positive_int, runs.positive_float)
NONNEGATIVE = (runs.nonnegative_int, runs.nonnegative_float)
#: the flags where 0 means something, and what; every other numeric flag refuses 0
ZERO_MEANS = {
    **{(script, "--seed"): "seed 0" for script in EXAMPLES + BENCHMARKS if script != "benchmarks/run_all.py"},
    **{(script, "--threads"): "torch's default thread count" for script in BENCHMARKS},
    ("examples/vae.py", "--kl-warmup"): "no annealing",
    ("examples/vae.py", "--refine-steps"): "the plain encoder (SemiAmortized's refine_steps=0)",
    ("examples/gmm.py", "--tol"): "run all --max-iter iterations (as scikit-learn's tol=0)",
    ("examples/ssvae.py", "--alpha"): "no classification term (M2's bound alone)",
    ("examples/gmm.py", "--warmup"): "NUTS without adaptation (Pyro's warmup_steps=0)",
    ("examples/attention.py", "--hardem-warmup"): "hard EM from the random start (no exact epochs first)",
    ("benchmarks/gmm_em.py", "--tol"): "run all --max-iter iterations, both libraries",
}


@functools.cache
def load(script: str):
    """The script as a module (not run: its ``main`` sits behind ``if __name__ == "__main__"``)."""
    path = ROOT / script
    spec = importlib.util.spec_from_file_location(f"args_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(script: str, argv: list[str]):
    """What the script does with ``argv``: ``parse_args`` for the examples, the bare parser for the benchmarks."""
    module = load(script)
    return module.parse_args(argv) if script in EXAMPLES else module.build_parser().parse_args(argv)


def numeric_flags(script: str) -> dict[str, object]:
    """``{--flag: argparse type}`` of every option of the script's parser that converts its value."""
    return {a.option_strings[-1]: a.type for a in load(script).build_parser()._actions if a.type is not None}


def refused(script: str, argv: list[str], capsys) -> str:
    """Parse ``argv``, expecting argparse to refuse it; returns its message."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        parse(script, argv)
    assert exit_.value.code == 2, argv
    return capsys.readouterr().err


@pytest.mark.parametrize("script", EXAMPLES + BENCHMARKS)
def test_every_numeric_flag_uses_a_checked_type(script):
    flags = numeric_flags(script)
    assert flags, f"{script} has no numeric flag: is build_parser() the one main() uses?"
    for flag, kind in flags.items():
        expected = NONNEGATIVE if (script, flag) in ZERO_MEANS else POSITIVE
        assert kind in expected, f"{script} {flag}: type {getattr(kind, '__name__', kind)}, expected one of {expected}"
    unknown = {flag for s, flag in ZERO_MEANS if s == script} - set(flags)
    assert not unknown, f"ZERO_MEANS names flags {script} does not have: {unknown}"


@pytest.mark.parametrize("script", EXAMPLES + BENCHMARKS)
def test_zero_and_negative_values_stop_at_parse_time_naming_the_flag(script, capsys):
    for flag, kind in numeric_flags(script).items():
        err = refused(script, [flag, "-1"], capsys)
        assert f"argument {flag}" in err and "-1" in err, err
        if kind in (runs.positive_float, runs.nonnegative_float):
            assert f"argument {flag}" in refused(script, [flag, "nan"], capsys)
        if (script, flag) in ZERO_MEANS:
            assert getattr(parse(script, [flag, "0"]), flag[2:].replace("-", "_")) in (0, [0])
        else:
            err = refused(script, [flag, "0"], capsys)
            assert f"argument {flag}" in err and "> 0" in err, err


@pytest.mark.parametrize("script", EXAMPLES + BENCHMARKS)
def test_the_defaults_still_parse(script):
    args = parse(script, [])
    for flag in numeric_flags(script):
        value = getattr(args, flag[2:].replace("-", "_"))
        assert value is None or all(v >= 0 for v in (value if isinstance(value, list) else [value])), (flag, value)


def test_vae_fills_in_its_defaults_only_where_no_value_was_given():
    vae = load("examples/vae.py")
    args = vae.parse_args([])
    assert (args.epochs, args.batch_size, args.z_dim) == (300, 100, 2)  # DATASET_DEFAULTS["digits"]
    args = vae.parse_args(["--quick", "--epochs", "3", "--batch-size", "7", "--z-dim", "5", "--eval-examples", "50"])
    assert (args.epochs, args.batch_size, args.z_dim, args.eval_examples) == (3, 7, 5, 50)
    assert vae.parse_args(["--quick"]).eval_examples == 200


def test_vae_refuses_more_eval_examples_than_the_test_set_before_training(tmp_path, monkeypatch):
    vae = load("examples/vae.py")
    monkeypatch.setattr(vae, "run_vae_experiment", lambda *a, **k: pytest.fail("it trained before checking --eval-examples"))
    n_test = len(vae.load_vae_data("digits").x_test)
    with pytest.raises(ValueError, match=rf"--eval-examples {n_test + 1}: .* {n_test} test examples"):
        vae.main(["--eval-examples", str(n_test + 1), "--out", str(tmp_path), "--no-progress"])


def test_gmm_refuses_what_would_fail_after_the_fits(capsys):
    # az.loo needs two draws (one draw: IndexError after every fit)
    assert "--num-samples" in refused("examples/gmm.py", ["--num-samples", "1"], capsys)
    # the smallest true component has n // 2 points: 1 per cluster would leave it empty
    assert "--n-per-cluster" in refused("examples/gmm.py", ["--n-per-cluster", "1"], capsys)
    assert load("examples/gmm.py").parse_args(["--num-samples", "2", "--n-per-cluster", "2", "--max-k", "1"]).max_k == 1
    # model selection fits K = 1..max-k to the selection points: K above their count failed after every other fit
    err = refused("examples/gmm.py", ["--selection-points", "5"], capsys)  # --max-k 6
    assert "--max-k 6" in err and "5 points" in err, err
    # 2 per cluster: 4 + 2 + 1 = 7 synthetic points in all, fewer than the 150 selection points asked for
    assert "7 points" in refused("examples/gmm.py", ["--n-per-cluster", "2", "--max-k", "8"], capsys)
    assert load("examples/gmm.py").parse_args(["--n-per-cluster", "2", "--max-k", "7"]).max_k == 7


def test_colorization_lr_zero_is_refused_and_its_defaults_still_apply(capsys):
    assert "argument --lr" in refused("examples/colorization.py", ["--lr", "0"], capsys)
    args = load("examples/colorization.py").parse_args([])
    assert (args.lr, args.epochs, args.segments) == (1e-2, 10, 8)  # DATASET_DEFAULTS["shapes"]


@pytest.mark.parametrize("flag, split, size", [("--train-images", "train", 4000), ("--test-images", "test", 1000)])
def test_colorization_refuses_more_cifar_images_than_the_subset_has(flag, split, size, shared_data):
    colorization = load("examples/colorization.py")
    args = colorization.parse_args(["--dataset", "cifar10", "--data-dir", str(shared_data), flag, str(size + 1)])
    with pytest.raises(ValueError, match=rf"{flag} {size + 1}: .* {size} {split} images"):
        colorization.load_data(args)


@pytest.mark.parametrize("script", ["examples/vae.py", "benchmarks/guide_families.py"])
def test_every_hidden_size_is_checked_not_only_the_first(script, capsys):
    assert "argument --hidden" in refused(script, ["--hidden", "200", "0"], capsys)
