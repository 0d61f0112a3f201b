"""RGB <-> Lab in torch against scikit-image and published values; ab-AuC and PSNR against references."""

import numpy as np
import pytest
import torch

from pyro_lvm.color import lab_to_rgb, rgb_to_lab
from pyro_lvm.metrics import ab_accuracy_auc, psnr


@pytest.fixture
def skcolor():
    """scikit-image's colour module, the reference (a test-only dependency)."""
    return pytest.importorskip("skimage.color")


def test_rgb_to_lab_matches_skimage(skcolor):
    rgb = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    rgb[0, :, 0, 0] = 0.0  # black, and values in the linear segment of the sRGB curve
    rgb[0, :, 0, 1] = 0.02
    expected = skcolor.rgb2lab(rgb.permute(0, 2, 3, 1).numpy())
    got = rgb_to_lab(rgb).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-8)


@pytest.mark.filterwarnings("ignore:Conversion from CIE-LAB")
def test_lab_to_rgb_matches_skimage_including_out_of_gamut(skcolor):
    gen = torch.Generator().manual_seed(1)
    lab = torch.stack(
        (100 * torch.rand(500, generator=gen), 200 * torch.rand(500, generator=gen) - 100, 200 * torch.rand(500, generator=gen) - 100), -1
    ).double()
    expected = skcolor.lab2rgb(lab.numpy())
    got = lab_to_rgb(lab, channel_dim=-1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-8)


def test_published_lab_values_of_primaries():
    # CIE L*a*b* (D65) of the sRGB primaries and white, as published (e.g. brucelindbloom.com, EasyRGB)
    rgb = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    expected = torch.tensor(
        [[53.24, 80.09, 67.20], [87.73, -86.18, 83.18], [32.30, 79.19, -107.86], [100.0, 0.0, 0.0]], dtype=torch.float64
    )
    torch.testing.assert_close(rgb_to_lab(rgb, channel_dim=-1), expected, atol=0.01, rtol=0)


def test_round_trip_and_gradients():
    rgb = torch.rand(4, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-6, rtol=0)
    lab = rgb_to_lab(rgb)
    torch.testing.assert_close(rgb_to_lab(lab_to_rgb(lab)), lab, atol=1e-4, rtol=0)
    # differentiable: gradients are finite everywhere, including black and white pixels
    x = torch.cat((rgb, torch.zeros(1, 3, 5, 5, dtype=torch.float64), torch.ones(1, 3, 5, 5, dtype=torch.float64)))
    x.requires_grad_(True)
    lab_to_rgb(rgb_to_lab(x)).sum().backward()
    assert torch.isfinite(x.grad).all()
    small = torch.rand(1, 3, 2, 2, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(rgb_to_lab, (small,))


def test_color_bad_input():
    with pytest.raises(ValueError, match="rgb must have 3 colour channels"):
        rgb_to_lab(torch.rand(2, 4, 3, 3))
    with pytest.raises(ValueError, match=r"rgb values must lie in \[0, 1\]"):
        rgb_to_lab(255 * torch.rand(2, 3, 3, 3) + 2)
    with pytest.raises(ValueError, match="lab must be a floating point"):
        lab_to_rgb(torch.zeros(2, 3, 3, 3, dtype=torch.long))


def test_ab_accuracy_auc_equals_numerical_sweep():
    gen = torch.Generator().manual_seed(0)
    pred, true = 60 * torch.randn(3, 2, 8, 8, generator=gen), 60 * torch.randn(3, 2, 8, 8, generator=gen)
    d = torch.linalg.vector_norm(pred - true, dim=1).flatten().numpy()
    thresholds = np.linspace(0, 150, 150001)
    curve = (d[None, :] <= thresholds[:, None]).mean(1)
    expected = np.sum(0.5 * (curve[1:] + curve[:-1]) * np.diff(thresholds)) / 150  # trapezoid rule
    assert ab_accuracy_auc(pred, true) == pytest.approx(expected, abs=1e-4)
    assert ab_accuracy_auc(true, true) == 1.0
    with pytest.raises(ValueError, match="pred_ab and true_ab must have the same shape"):
        ab_accuracy_auc(pred, true[:2])


def test_psnr_matches_skimage():
    metrics = pytest.importorskip("skimage.metrics")
    gen = torch.Generator().manual_seed(0)
    true = torch.rand(3, 3, 8, 8, generator=gen, dtype=torch.float64)
    pred = (true + 0.1 * torch.randn(3, 3, 8, 8, generator=gen, dtype=torch.float64)).clamp(0, 1)
    expected = np.mean([metrics.peak_signal_noise_ratio(t.numpy(), p.numpy(), data_range=1.0) for t, p in zip(true, pred)])
    assert psnr(pred, true) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("convert, name", [(rgb_to_lab, "rgb"), (lab_to_rgb, "lab")])
def test_color_non_finite_values_are_an_error(convert, name, bad):
    x = torch.full((2, 3, 4, 4), 0.5)
    x[1, 2, 3, 0] = bad
    with pytest.raises(ValueError, match=rf"{name} holds NaN or infinite values \(1 of 96\); expected finite"):
        convert(x)


@pytest.mark.parametrize("layout", [(2, 3, 8, 8), (2, 8, 8, 3)])
def test_integer_colour_image_error_names_the_dtype(layout):
    image = torch.randint(0, 256, layout, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"rgb must be a floating point tensor of sRGB values in \[0, 1\], got dtype torch.uint8"):
        rgb_to_lab(image)
    with pytest.raises(ValueError, match=r"lab must be a floating point tensor .*got dtype torch.int64"):
        lab_to_rgb(image.long())


def test_colorization_data_with_an_integer_dtype_names_the_dtype():
    from pyro_lvm.models.colorization import check_colorization_data

    x, y = torch.full((2, 1, 4, 4), 50.0), torch.zeros(2, 2, 4, 4)
    check_colorization_data(x, y)
    with pytest.raises(ValueError, match=r"x must be a floating point tensor of lightness L\*.*got dtype torch.int64"):
        check_colorization_data(x.long(), y)
    with pytest.raises(ValueError, match=r"y must be a floating point tensor of ab colours.*got dtype torch.int64"):
        check_colorization_data(x, y.long())
    with pytest.raises(ValueError, match=r"x must be .* shape \(N, 1, H, W\), got \(2, 3, 4, 4\)"):
        check_colorization_data(x.expand(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"y holds NaN or infinite values"):
        check_colorization_data(x, torch.full_like(y, float("nan")))


def test_split_lab_is_lightness_and_ab_of_skimage(skcolor):
    from pyro_lvm.color import split_lab

    rgb = torch.rand(2, 3, 5, 4, dtype=torch.float64)
    light, ab = split_lab(rgb)
    expected = torch.from_numpy(skcolor.rgb2lab(rgb.permute(0, 2, 3, 1).numpy())).permute(0, 3, 1, 2)
    assert light.shape == (2, 1, 5, 4) and ab.shape == (2, 2, 5, 4) and light.is_contiguous() and ab.is_contiguous()
    torch.testing.assert_close(light, expected[:, :1], rtol=0, atol=1e-8)
    torch.testing.assert_close(ab, expected[:, 1:], rtol=0, atol=1e-8)
    with pytest.raises(ValueError, match=r"rgb must be sRGB images of shape \(N, 3, H, W\), got \(3, 5, 4\)"):
        split_lab(rgb[0])
