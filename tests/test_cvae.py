"""The conditional VAE for quadrant completion and its baseline.

References: the quadrants written out by index; torch's ``binary_cross_entropy_with_logits`` over
the missing pixels (the baseline exactly, and the CVAE when its decoder ignores z, where every
importance weight equals log p(y | x)). The conditional estimator itself is checked against the
closed form of a conditional linear-Gaussian model in tests/test_conditional.py.
"""

import json
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch
import torch.nn.functional as F

from pyro_lvm.data import MISSING, mask_quadrants, observed_quadrant_mask
from pyro_lvm.guides import make_guide
from pyro_lvm.models import CompletionRegressor, ConditionalVAE

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("observed, seen", [
    (1, [(1, 0)]), (2, [(0, 0), (1, 0)]), (3, [(0, 0), (0, 1), (1, 0)]),
])
def test_observed_quadrants_are_pyros(observed, seen):
    mask = observed_quadrant_mask(observed, 6, 4)
    expected = torch.zeros(6, 4, dtype=torch.bool)
    for row, col in seen:  # (0, 0) top-left, (1, 0) bottom-left, (0, 1) top-right
        expected[3 * row : 3 * row + 3, 2 * col : 2 * col + 2] = True
    assert torch.equal(mask, expected)


def test_mask_quadrants_marks_the_missing_pixels():
    images = torch.bernoulli(torch.full((5, 1, 4, 4), 0.5))
    x, y = mask_quadrants(images, 2)
    assert torch.equal(y, images.reshape(5, 16))
    seen = observed_quadrant_mask(2, 4, 4).flatten()
    assert torch.equal(x[:, seen], y[:, seen]) and (x[:, ~seen] == MISSING).all()


def test_bad_quadrant_input_is_named():
    with pytest.raises(ValueError, match="observed must be the number of observed quadrants, 1, 2 or 3, got 4"):
        mask_quadrants(torch.zeros(2, 4, 4), 4)
    with pytest.raises(ValueError, match="height must be a positive even int"):
        observed_quadrant_mask(1, 5, 4)
    with pytest.raises(ValueError, match=r"images must be a tensor \(N, H, W\) or \(N, 1, H, W\), got \(2, 3, 4, 4\)"):
        mask_quadrants(torch.zeros(2, 3, 4, 4), 1)
    with pytest.raises(ValueError, match=r"pixels in \[0, 1\]"):
        mask_quadrants(torch.full((2, 4, 4), 2.0), 1)


def _batch(seed=0):
    torch.manual_seed(seed)
    return mask_quadrants(torch.bernoulli(torch.full((6, 4, 4), 0.4)).double(), 1)


def _bce_of_missing(logits, x, y):
    """-log p(y | x) summed over the pixels missing from x, per image, by torch."""
    return (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * (x == MISSING)).sum(-1)


def test_baseline_log_likelihood_is_the_bernoulli_of_the_missing_pixels():
    x, y = _batch()
    model = CompletionRegressor(16, (5,)).double()
    assert torch.allclose(model.log_likelihood(x, y), -_bce_of_missing(model.network(x), x, y))


def test_cvae_estimate_is_exact_when_the_decoder_ignores_z():
    x, y = _batch(1)
    model = ConditionalVAE(16, 3, (5,)).double()
    with torch.no_grad():
        model.decoder[0].weight[:, 16:] = 0.0  # p(y | z, x) = p(y | x), so p(z | x, y) = p(z | x)
        logits = model.decoder(torch.cat([x, torch.zeros(6, 3, dtype=x.dtype)], -1))

    def prior_network(x, y):  # the exact posterior as proposal: every importance weight is log p(y | x)
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", model.prior(x))

    log_p = model.log_likelihood(x, y, guide=prior_network, num_samples=7, chunk_size=3)
    assert torch.allclose(log_p, -_bce_of_missing(logits, x, y), atol=1e-10)


def test_cvae_completions_keep_the_observed_pixels():
    x, _ = _batch(2)
    model = ConditionalVAE(16, 3, (5,)).double()
    draws, z = model.sample(4, x, return_latents=True)
    assert draws.shape == (4, 6, 16) and z.shape == (4, 6, 3)
    seen = x != MISSING
    assert torch.equal(draws[:, seen], x[seen].expand(4, -1)) and set(draws.unique().tolist()) <= {0.0, 1.0}


def test_a_guide_that_does_not_read_y_is_named():
    x, y = _batch()
    model = ConditionalVAE(16, 3, (5,)).double()
    blind = make_guide("normal", 16, 3, inputs=("x",), model=model.forward, hidden_dims=(4,)).double()
    with pytest.raises(ValueError, match="the guide's encoders read \\['x'\\] but not the observed argument 'y'"):
        model.log_likelihood(x, y, guide=blind)
    with pytest.raises(ValueError, match=r"y must be a tensor of the shape of x, \(6, 16\)"):
        model(x, y[:, :8])


def test_quick_example_runs(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "examples/cvae.py"), "--quick", "--no-progress", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "metrics.json").read_text())["results"]
    assert {(r["observed_quadrants"], r["model"]) for r in rows} == {(q, m) for q in (1, 2, 3) for m in ("cvae", "baseline")}
    assert all(r["nll"] > 0 for r in rows)
    assert (tmp_path / "completions.png").exists()
