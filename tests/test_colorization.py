"""Colorization with a latent segmentation: exact enumeration, hard EM, data, the example."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from pyro_lvm.color import rgb_to_lab
from pyro_lvm.data import MissingDataError, load_cifar10_subset, make_shapes
from pyro_lvm.infer import HardEM, train
from pyro_lvm.models import ColorRegressor, LatentSegmentationColorizer

REPO = Path(__file__).resolve().parents[1]


def _batch(n=2, h=3, w=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = 100 * torch.rand(n, 1, h, w, generator=gen)
    y = 40 * torch.randn(n, 2, h, w, generator=gen)
    return x, y


def _hand_joint(model, x, y):
    """log p(z = k | x) + log p(y | z = k, x) per pixel, (N, H, W, K), from the network outputs."""
    logits, loc, scale = model.networks(x)
    yy = y.permute(0, 2, 3, 1).unsqueeze(-2)  # (N, H, W, 1, 2)
    return logits.log_softmax(-1) + dist.Normal(loc, scale).log_prob(yy).sum(-1)


@pytest.mark.parametrize("color_head", ["pixel", "palette"])
def test_enumerated_loss_equals_per_pixel_logsumexp(color_head):
    model = LatentSegmentationColorizer(3, hidden=4, num_layers=2, color_head=color_head).double()
    x, y = (t.double() for t in _batch())
    loss = TraceEnum_ELBO(max_plate_nesting=3).differentiable_loss(model.model, model.guide, x, y)
    expected = -torch.logsumexp(_hand_joint(model, x, y), -1).sum()
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-8)
    # the gradients agree too (the enumerated loss is the exact marginal likelihood)
    params = list(model.parameters())
    g1 = torch.autograd.grad(loss, params)
    g2 = torch.autograd.grad(expected, params)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_hard_em_assignment_is_argmax_posterior_and_loss_is_joint_at_it():
    model = LatentSegmentationColorizer(4, hidden=4, num_layers=2)
    x, y = _batch(seed=1)
    hard = HardEM(max_plate_nesting=3)
    z_star = hard.map_trace(model.model, model.guide, x, y).nodes["z"]["value"]
    joint = _hand_joint(model, x, y)
    assert z_star.shape == (2, 3, 4)
    assert torch.equal(z_star, joint.argmax(-1))
    assert torch.equal(z_star, model.posterior(x, y).logits.argmax(-1))
    expected = -joint.max(-1).values.sum()
    torch.testing.assert_close(torch.as_tensor(hard.loss(model.model, model.guide, x, y)), expected.detach(), rtol=1e-5, atol=1e-3)


def test_posterior_and_predictions_against_hand_computation():
    model = LatentSegmentationColorizer(3, hidden=4, num_layers=2)
    x, y = _batch(seed=2)
    joint = _hand_joint(model, x, y)
    torch.testing.assert_close(model.posterior(x, y).logits, joint.log_softmax(-1))
    logits, loc, scale = model.networks(x)
    torch.testing.assert_close(model.map_latents(x), logits.argmax(-1))
    mean = (logits.softmax(-1).unsqueeze(-1) * loc).sum(-2).permute(0, 3, 1, 2)
    torch.testing.assert_close(model.predict(x, kind="mean"), mean)
    # the mode is the component mean where the mixture density is highest
    mode = model.predict(x, kind="mode").permute(0, 2, 3, 1)
    mixture = dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(loc, scale).to_event(1))
    density_at_means = torch.stack([mixture.log_prob(loc[..., k, :]) for k in range(3)], -1)
    best = density_at_means.argmax(-1)
    torch.testing.assert_close(mode, loc.gather(-2, best[..., None, None].expand(2, 3, 4, 1, 2)).squeeze(-2))
    assert (mixture.log_prob(mode) >= density_at_means.max(-1).values - 1e-5).all()


def test_samples_match_the_mixture_moments():
    model = LatentSegmentationColorizer(3, hidden=4, num_layers=2)
    x, _ = _batch(n=1, h=2, w=2, seed=3)
    samples = model.sample(20000, x)
    assert samples.shape == (20000, 1, 2, 2, 2)
    logits, loc, scale = model.networks(x)
    mixture = dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(loc, scale).to_event(1))
    mean, std = mixture.mean.detach().permute(0, 3, 1, 2), mixture.variance.detach().sqrt().permute(0, 3, 1, 2)
    torch.testing.assert_close(samples.mean(0), mean, atol=float(4 * std.max() / math.sqrt(20000)), rtol=0)
    torch.testing.assert_close(samples.std(0), std, rtol=0.05, atol=0)
    # the model run without y samples colours of the same shape
    assert model.model(x).shape == (1, 2, 2, 2)


def test_bad_input_raises_value_error_naming_it():
    model = LatentSegmentationColorizer(2, hidden=4, num_layers=1)
    x, y = _batch()
    with pytest.raises(ValueError, match=r"y must be .* shape \(N, 2, H, W\)"):
        model.model(x, y[:, :, :2])
    with pytest.raises(ValueError, match=r"y must be .* shape"):
        model.model(x, y[:1])
    with pytest.raises(ValueError, match=r"x must be .* shape \(N, 1, H, W\)"):
        model.model(torch.rand(2, 3, 4, 4) * 100, y)
    with pytest.raises(ValueError, match=r"x must hold L\* values in \[0, 100\]"):
        model.model(x / 100 - 0.5, y)
    with pytest.raises(ValueError, match=r"y must hold a\*, b\* values"):
        model.model(x, 10 * y)
    with pytest.raises(ValueError, match=r"x must hold L\* values"):
        model.map_latents(x + 200)
    with pytest.raises(ValueError, match=r"y must be"):
        ColorRegressor(hidden=4, num_layers=1).model(x, y[..., :2])
    for k in (0, -1):
        with pytest.raises(ValueError, match=r"num_segments \(K\) must be an integer >= 1"):
            LatentSegmentationColorizer(k)
    with pytest.raises(ValueError, match="color_head must be"):
        LatentSegmentationColorizer(2, color_head="global")


def test_shapes_grey_levels_do_not_give_the_colour_away():
    images, segments = make_shapes(300, size=32, num_classes=4, seed=5)
    assert images.shape == (300, 3, 32, 32) and segments.shape == (300, 32, 32)
    assert images.min() >= 0 and images.max() <= 1
    lab = rgb_to_lab(images.double())
    light = lab[:, 0]
    hue = torch.atan2(lab[:, 2], lab[:, 1])
    for c in range(4):
        mask = segments == c
        # the same two lightness levels in equal shares for every class
        assert light[mask].mean() == pytest.approx(60.0, abs=1.0)
        assert (light[mask] > 60).float().mean() == pytest.approx(0.5, abs=0.03)
        # two hues per class: primary at 2 pi c / C (about 70%), secondary opposite-ish
        primary = torch.cos(hue[mask] - 2 * math.pi * c / 4) > math.cos(0.3)
        assert primary.float().mean() == pytest.approx(0.7, abs=0.1)
    first, again, other = make_shapes(3, seed=7), make_shapes(3, seed=7), make_shapes(3, seed=8)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1]) and not torch.equal(first[0], other[0])
    with pytest.raises(ValueError, match="num_classes must be between 2 and 6"):
        make_shapes(2, num_classes=7)


def test_cifar10_subset_loader(shared_data, tmp_path):
    images, labels = load_cifar10_subset(shared_data, "test")
    assert images.shape == (1000, 3, 32, 32) and images.dtype == torch.float32
    assert labels.tolist()[:10] == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]  # canonical CIFAR-10 test_batch labels
    torch.testing.assert_close(images.mean((0, 2, 3)), torch.tensor([0.497, 0.487, 0.451]), atol=1e-3, rtol=0)
    train_images, _ = load_cifar10_subset(shared_data)
    assert train_images.shape == (4000, 3, 32, 32)
    with pytest.raises(MissingDataError, match="cifar10_subset.npz"):
        load_cifar10_subset(tmp_path)
    with pytest.raises(ValueError, match="split must be"):
        load_cifar10_subset(shared_data, "valid")


def test_hard_em_training_with_train_reduces_the_hard_loss():
    images, _ = make_shapes(32, size=16, seed=0)
    lab = rgb_to_lab(images)
    x, y = lab[:, :1], lab[:, 1:]
    model = LatentSegmentationColorizer(4, hidden=8, num_layers=2, color_head="palette")
    history = train(model.model, model.guide, (x, y), loss=HardEM(max_plate_nesting=3), steps=30, batch_size=16, lr=0.02, progress=False)
    first, last = sum(history.step_loss[:4]) / 4, sum(history.step_loss[-4:]) / 4
    assert last < first - 0.5 * 256  # at least half a nat per pixel better


def _run_example(tmp_path, *flags):
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, str(REPO / "examples" / "colorization.py"), "--quick", "--no-progress", "--out", str(out), *flags],
        check=True, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert (out / "colorization.png").stat().st_size > 0 and (out / "samples.png").is_file()
    return json.loads((out / "metrics.json").read_text())


def test_quick_shapes_run_recovers_segments_and_beats_the_baseline(tmp_path):
    metrics = _run_example(tmp_path)
    assert metrics["dataset"] == "shapes"
    assert metrics["segmentation_ari"] > 0.6
    assert metrics["auc"] > metrics["baseline_auc"] + 0.02
    assert metrics["psnr"] > metrics["baseline_psnr"]


@pytest.mark.slow
def test_quick_shapes_run_with_hard_em(tmp_path):
    metrics = _run_example(tmp_path, "--objective", "hard")
    assert metrics["objective"] == "hard"
    assert metrics["segmentation_ari"] > 0.6
    assert metrics["auc"] > metrics["baseline_auc"]


@pytest.mark.slow
def test_quick_cifar10_run(tmp_path, shared_data):
    metrics = _run_example(tmp_path, "--dataset", "cifar10", "--data-dir", str(shared_data))
    assert metrics["dataset"] == "cifar10" and "segmentation_ari" not in metrics
    assert 0 < metrics["baseline_auc"] < 1 and 0 < metrics["auc"] < 1 and metrics["psnr"] > 15
