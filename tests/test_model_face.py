"""Every model family shows the one face of pyro_lvm.models.base, and its answers match references.

The face: a ``LatentVariableModel`` subclass whose ``forward`` is the story, with ``max_plate_nesting``,
``latent_sites`` and ``latent_size``, answering ``posterior``, ``map_latents``, ``sample`` and
``log_likelihood`` or raising ``NotAnswerable``. The references are computed by hand (a per-pixel
mixture marginalized with logsumexp, Bayes' rule), by torch (``ctc_loss`` and its gradient) or in
closed form (the linear-Gaussian model).
"""

import math
import sys
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.poutine.util import site_is_subsample

import pyro_lvm.models
from pyro_lvm.guides import AmortizedNormal
from pyro_lvm.infer import HardEM
from pyro_lvm.models import (
    ColorRegressor,
    ColumnCTC,
    DeepLatentGaussian,
    LatentSegmentationColorizer,
    ctc_alignment_model,
)
from pyro_lvm.models.base import LatentVariableModel, NotAnswerable

sys.path.insert(0, str(Path(__file__).parent))
from linear_gaussian import LinearGaussian  # noqa: E402

QUESTIONS = ("posterior", "map_latents", "sample", "log_likelihood")
WITHOUT_LATENTS = {"ColorRegressor", "CompletionRegressor", "SoftAttentionInflector"}  # families with no latent variables


def _colour_batch(n=3, h=2, w=3, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return 100 * torch.rand(n, 1, h, w, generator=gen, dtype=dtype), 30 * torch.randn(n, 2, h, w, generator=gen, dtype=dtype)


def _ctc_batch(seed=0):
    """Images (3, 4, 7), widths, targets padded with -1, target lengths: small enough to enumerate."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(3, 4, 7, generator=gen, dtype=torch.float64)
    return images, torch.tensor([7, 5, 6]), torch.tensor([[1, 2, 2], [3, -1, -1], [2, 1, -1]]), torch.tensor([3, 1, 2])


def _ctc_model():
    return ColumnCTC(height=4, num_labels=3, hidden=4).double().eval()


def _gmm_case():
    model = pyro_lvm.models.GaussianMixtureModel(
        2, "diag", prior="weak", weights=torch.tensor([0.3, 0.7]), means=torch.tensor([[0.0, 0.0], [3.0, 1.0]]),
        covariances=torch.tensor([[1.0, 0.5], [0.7, 2.0]]),
    )
    return model, (torch.randn(5, 2),), (), {}


def _dlgm_case():
    guide = AmortizedNormal(6, 2, (4,))
    return DeepLatentGaussian(6, 2, (5,)), (torch.bernoulli(torch.full((4, 6), 0.3)),), (), {"guide": guide}


def _hierarchical_dlgm_case():
    from test_hierarchical_conv import TwoLayerGuide

    model = pyro_lvm.models.HierarchicalDeepLatentGaussian(6, 3, 2, (5,), (4,))
    return model, (torch.bernoulli(torch.full((4, 6), 0.3)),), (), {"guide": TwoLayerGuide(6, 3, 2)}


def _masked_dlgm_case():
    """The VAE observing half of each example's values: story data (x, mask)."""
    x = torch.bernoulli(torch.full((4, 6), 0.3))
    mask = torch.tensor([[True] * 3 + [False] * 3] * 4)
    return pyro_lvm.models.MaskedDeepLatentGaussian(6, 2, (5,)), (x, mask), (), {"guide": AmortizedNormal(6, 2, (4,))}


def _conv_dlgm_case():
    from test_hierarchical_conv import conv_guide

    data = (torch.bernoulli(torch.full((4, 64), 0.3)),)
    return pyro_lvm.models.ConvDeepLatentGaussian(8, 3, (8, 4)), data, (), {"guide": conv_guide(8, 3)}


def _attention_case(cls):
    """Three words of 2-4 source symbols and 1-3 output steps for an attention story."""
    src, src_len = torch.tensor([[2, 3, 4, 5], [3, 2, 0, 0], [4, 4, 2, 0]]), torch.tensor([4, 2, 3])
    tgt, tgt_len = torch.tensor([[2, 3, 0], [0, 0, 0], [3, 0, 0]]), torch.tensor([3, 1, 2])
    return cls(6, 4, embed=4, hidden=5, max_output_length=5), (src, src_len, tgt, tgt_len), (src, src_len), {}


def _completion_batch():
    """Four 4x4 binary images with two quadrants observed: inputs (missing pixels -1) and images."""
    from pyro_lvm.data import mask_quadrants

    return mask_quadrants(torch.bernoulli(torch.full((4, 4, 4), 0.4)), 2)


def _cases():
    """name -> (model, story data, inputs of a conditional story, keyword arguments of the questions)."""
    images, widths, targets, lengths = _ctc_batch()
    x, y = _colour_batch(dtype=torch.float32)
    cases = {
        "DeepLatentGaussian": _dlgm_case,
        "HierarchicalDeepLatentGaussian": _hierarchical_dlgm_case,
        "ConvDeepLatentGaussian": _conv_dlgm_case,
        "MaskedDeepLatentGaussian": _masked_dlgm_case,
        "LatentSegmentationColorizer": lambda: (LatentSegmentationColorizer(3, hidden=4, num_layers=1), (x, y), (x,), {}),
        "ColorRegressor": lambda: (ColorRegressor(hidden=4, num_layers=1), (x, y), (x,), {}),
        "ColumnCTC": lambda: (_ctc_model(), (images, widths, targets, lengths), (images, widths), {}),
        "HardAttentionInflector": lambda: _attention_case(pyro_lvm.models.HardAttentionInflector),
        "MonotonicAttentionInflector": lambda: _attention_case(pyro_lvm.models.MonotonicAttentionInflector),
        "SoftAttentionInflector": lambda: _attention_case(pyro_lvm.models.SoftAttentionInflector),
        "ConditionalVAE": lambda: (pyro_lvm.models.ConditionalVAE(16, 2, (5,)), _completion_batch(), _completion_batch()[:1], {}),
        "CompletionRegressor": lambda: (pyro_lvm.models.CompletionRegressor(16, (5,)), _completion_batch(), _completion_batch()[:1], {}),
        "SemiSupervisedVAE": lambda: (pyro_lvm.models.SemiSupervisedVAE(6, 3, 2, (5,)),
                                      (torch.bernoulli(torch.full((4, 6), 0.3)),), (), {}),
    }
    if issubclass(getattr(pyro_lvm.models, "GaussianMixtureModel", object), LatentVariableModel):
        cases["GaussianMixtureModel"] = _gmm_case
    return cases


CASES = _cases()


def test_every_family_exported_by_models_is_walked():
    exported = {name for name in pyro_lvm.models.__all__ if isinstance(getattr(pyro_lvm.models, name), type)}
    families = {name for name in exported if issubclass(getattr(pyro_lvm.models, name), LatentVariableModel)}
    assert families == set(CASES), "a family without the face, or one this test does not walk"
    assert {"DeepLatentGaussian", "LatentSegmentationColorizer", "ColorRegressor", "ColumnCTC"} <= families


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_face(name):
    model, data, inputs, kwargs = CASES[name]()
    cls = type(model)
    assert issubclass(cls, LatentVariableModel)
    assert isinstance(cls.max_plate_nesting, int) and cls.max_plate_nesting >= 1
    assert isinstance(cls.latent_sites, tuple) and all(isinstance(s, str) for s in cls.latent_sites)
    assert isinstance(model.latent_size, int) and model.latent_size >= 0
    assert (model.latent_size == 0) == (name in WITHOUT_LATENTS)
    # the story, run through the module: its latent sites are latent_sites, its plates fit max_plate_nesting
    guide = kwargs.get("guide", model.guide)
    guide_trace = poutine.trace(guide).get_trace(*data)
    trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(*data)
    trace.compute_log_prob()
    sites = {n: s for n, s in trace.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)}
    latent = {n for n, s in sites.items() if not s["is_observed"]}
    latent -= {n for n in guide_trace.nodes if n not in cls.latent_sites}  # globals a point guide covers
    assert latent == set(cls.latent_sites)
    nesting = max(len(s["cond_indep_stack"]) for s in sites.values())
    assert nesting <= cls.max_plate_nesting
    assert any(s["type"] == "param" for s in trace.nodes.values()) or name == "GaussianMixtureModel"
    # every question is answered, or refused with NotAnswerable
    calls = {
        "posterior": lambda: model.posterior(*data, **kwargs),
        "map_latents": lambda: model.map_latents(*data, **kwargs),
        "sample": lambda: model.sample(2, *inputs),
        "log_likelihood": lambda: model.log_likelihood(*data, **kwargs),
    }
    answered = {}
    for question, call in calls.items():
        try:
            answered[question] = call()
        except NotAnswerable as error:
            assert type(model).__name__ in str(error) and question in str(error)
    assert set(answered) == set(QUESTIONS) - ({"posterior", "map_latents"} if name in WITHOUT_LATENTS else set())
    n = len(data[0])
    assert isinstance(answered["log_likelihood"], torch.Tensor) and answered["log_likelihood"].shape == (n,)
    assert torch.isfinite(answered["log_likelihood"]).all()
    if "posterior" in answered:
        assert isinstance(answered["posterior"], torch.distributions.Distribution)
        assert answered["posterior"].batch_shape[0] == n and answered["map_latents"].shape[0] == n
    drawn = answered["sample"]
    assert drawn.shape[0] == 2
    if name not in WITHOUT_LATENTS:
        drawn, latents = model.sample(2, *inputs, return_latents=True)
        assert drawn.shape[0] == 2 and latents.shape[0] == 2


def test_families_that_cannot_answer_say_why():
    x, y = _colour_batch(dtype=torch.float32)
    regressor = ColorRegressor(hidden=4, num_layers=1)
    for call in (lambda: regressor.posterior(x, y), lambda: regressor.map_latents(x), lambda: regressor.sample(1, x, return_latents=True)):
        with pytest.raises(NotAnswerable, match="ColorRegressor cannot answer .*: it has no latent variables"):
            call()
    model, (xb,), _, _ = _dlgm_case()
    for question in ("posterior", "map_latents", "log_likelihood"):
        with pytest.raises(NotAnswerable, match=f"DeepLatentGaussian cannot answer {question} without a guide: z is continuous"):
            getattr(model, question)(xb)
    with pytest.raises(NotAnswerable, match="DeepLatentGaussian cannot answer guide: z is continuous; pick a guide family"):
        model.guide(xb)


def test_colorizer_log_likelihood_is_the_per_pixel_mixture_marginalized_by_hand():
    model = LatentSegmentationColorizer(3, hidden=4, num_layers=2).double()
    x, y = _colour_batch(n=5)
    logits, loc, scale = model.networks(x)
    yy = y.permute(0, 2, 3, 1).unsqueeze(-2)  # (N, H, W, 1, 2)
    log_normal = -0.5 * ((yy - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)
    per_pixel = torch.logsumexp(logits.log_softmax(-1) + log_normal.sum(-1), -1)  # (N, H, W)
    expected = per_pixel.sum((-2, -1))
    torch.testing.assert_close(model.log_likelihood(x, y, chunk_size=2), expected, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(model.log_likelihood(x, y), expected, rtol=1e-12, atol=1e-10)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        model.log_likelihood(x, y, chunk_size=0)


def test_colorizer_posterior_is_bayes_rule_by_hand():
    model = LatentSegmentationColorizer(4, hidden=4, num_layers=2, color_head="palette").double()
    x, y = _colour_batch(seed=1)
    logits, loc, scale = model.networks(x)
    prior = logits.exp() / logits.exp().sum(-1, keepdim=True)
    yy = y.permute(0, 2, 3, 1).unsqueeze(-2)
    density = torch.exp(-0.5 * ((yy - loc) / scale) ** 2).prod(-1) / (2 * math.pi * scale.prod(-1))
    bayes = prior * density / (prior * density).sum(-1, keepdim=True)
    torch.testing.assert_close(model.posterior(x, y).probs, bayes, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(model.posterior(x).probs, prior, rtol=1e-12, atol=1e-12)
    assert torch.equal(model.map_latents(x, y), bayes.argmax(-1)) and torch.equal(model.map_latents(x), prior.argmax(-1))


def test_colorizer_samples_carry_their_segments():
    model = LatentSegmentationColorizer(3, hidden=4, num_layers=1, min_scale=1e-3, color_head="palette")
    with torch.no_grad():
        model.palette[:, 2:] = -30.0  # scales at min_scale: a draw sits on its segment's mean
    x, _ = _colour_batch(dtype=torch.float32)
    y, z = model.sample(4, x, return_latents=True)
    assert y.shape == (4, 3, 2, 2, 3) and z.shape == (4, 3, 2, 3)
    _, loc, _ = model.networks(x)
    torch.testing.assert_close(y.permute(0, 1, 3, 4, 2), loc[0, 0, 0][z].detach(), atol=0.05, rtol=0)


def test_regressor_log_likelihood_is_the_gaussian_by_hand():
    model = ColorRegressor(hidden=4, num_layers=1, sigma=7.0).double()
    x, y = _colour_batch(n=4)
    residual = y - model.networks(x)
    expected = (-0.5 * (residual / 7.0) ** 2 - math.log(7.0) - 0.5 * math.log(2 * math.pi)).sum((1, 2, 3))
    torch.testing.assert_close(model.log_likelihood(x, y, chunk_size=3), expected.detach(), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("method", ["native", "enum"])
def test_ctc_log_likelihood_is_torch_ctc_loss(method):
    model = _ctc_model()
    model.method = method
    images, widths, targets, lengths = _ctc_batch()
    expected = -F.ctc_loss(model.log_probs(images), targets.clamp(min=0), widths, lengths, reduction="none")
    torch.testing.assert_close(model.log_likelihood(images, widths, targets, lengths), expected.detach(), rtol=1e-10, atol=1e-10)
    # the story's loss (soft training) is the same number
    elbo = Trace_ELBO(max_plate_nesting=model.max_plate_nesting)
    loss = elbo.differentiable_loss(model.model, model.guide, images, widths, targets, lengths)
    torch.testing.assert_close(loss, -expected.sum(), rtol=1e-10, atol=1e-10)


def test_ctc_posterior_is_the_gradient_of_torch_ctc_loss():
    """d log p(y | x) / d a_tc = p(z_t = c | y, x) - softmax(a_t)_c for frame logits a (inside each width)."""
    model = _ctc_model()
    images, widths, targets, lengths = _ctc_batch(seed=2)
    a = model.log_probs(images).detach().requires_grad_()  # (W, N, C)
    log_lik = -F.ctc_loss(a.log_softmax(-1), targets.clamp(min=0), widths, lengths, reduction="sum")
    (grad,) = torch.autograd.grad(log_lik, a)
    expected = (grad + a.softmax(-1)).detach().transpose(0, 1)  # (N, W, C)
    probs = model.posterior(images, widths, targets, lengths).probs
    inside = torch.arange(7) < widths.unsqueeze(-1)
    torch.testing.assert_close(probs[inside], expected[inside], rtol=1e-9, atol=1e-10)
    assert (probs[~inside][:, model.blank] == 1).all()
    best = model.map_latents(images, widths, targets, lengths)
    assert ((best >= 0) == inside).all()


def test_ctc_viterbi_story_is_hard_em_on_the_enumerated_alignment():
    """Viterbi training's story gives the loss and gradients of HardEM on the literal alignment program."""
    model = _ctc_model()
    images, widths, targets, lengths = _ctc_batch(seed=3)
    ours = Trace_ELBO(max_plate_nesting=1).differentiable_loss(model.viterbi_story, model.guide, images, widths, targets, lengths)
    pyro.clear_param_store()
    hard_em = HardEM(max_plate_nesting=1).differentiable_loss(
        ctc_alignment_model, model.guide, model.log_probs(images), targets, widths, lengths
    )
    torch.testing.assert_close(ours, hard_em, rtol=1e-10, atol=1e-10)
    params = list(model.parameters())
    for g1, g2 in zip(torch.autograd.grad(ours, params), torch.autograd.grad(hard_em, params)):
        torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-10)


def test_ctc_samples_are_collapsed_alignments():
    from pyro_lvm.ops import ctc_collapse

    model = _ctc_model()
    images, widths, _, _ = _ctc_batch()
    strings, frames = model.sample(5, images, widths, return_latents=True)
    assert strings.shape == frames.shape == (5, 3, 7)
    assert ((frames >= 0) == (torch.arange(7) < widths.unsqueeze(-1))).all()
    for row, labels in zip(strings.view(-1, 7).tolist(), ctc_collapse(frames.view(-1, 7), model.blank)):
        assert row == labels + [-1] * (7 - len(labels))


def _linear_dlgm(lg: LinearGaussian) -> DeepLatentGaussian:
    """The DLGM whose decoder is the linear-Gaussian model's ``x | z ~ N(W z + b, sigma^2 I)``."""
    model = DeepLatentGaussian(lg.D, lg.d, (), likelihood="gaussian").double()
    with torch.no_grad():
        model.decoder.output_layer.weight.copy_(lg.W)
        model.decoder.output_layer.bias.copy_(lg.b)
        model.raw_scale.fill_(math.log(math.expm1(lg.sigma - 1e-4)))  # softplus(raw) + 1e-4 = sigma
    return model


def test_dlgm_log_likelihood_against_the_linear_gaussian_closed_form():
    lg = LinearGaussian.random(d=2, D=3, sigma=0.5)
    model = _linear_dlgm(lg)
    x = lg.sample(6)
    exact = lg.log_marginal(x)
    # the true posterior as the proposal: every importance weight is log p(x) itself
    torch.testing.assert_close(model.log_likelihood(x, guide=lg.exact_guide, num_samples=3), exact, rtol=0, atol=1e-10)
    # a proposal wider than the posterior: a consistent estimate
    mean, precision = lg.posterior(x)
    wide = torch.linalg.inv(precision) * 2.0

    def wide_guide(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.MultivariateNormal(mean, wide))

    estimate = model.log_likelihood(x, guide=wide_guide, num_samples=4000, chunk_size=1000)
    torch.testing.assert_close(estimate, exact, rtol=0, atol=0.05)
    # posterior and MAP through the exact guide are the closed-form posterior
    q = model.posterior(x, guide=lg.exact_guide)
    torch.testing.assert_close(q.mean, mean)
    torch.testing.assert_close(q.covariance_matrix, torch.linalg.inv(precision).expand(6, 2, 2))
    torch.testing.assert_close(model.map_latents(x, guide=lg.exact_guide), mean)


def test_dlgm_samples_and_means():
    model = DeepLatentGaussian(5, 2, (4,))
    x, z = model.sample(7, return_latents=True)
    assert x.shape == (7, 5) and z.shape == (7, 2) and set(x.unique().tolist()) <= {0.0, 1.0}
    means = model.sample(7, mean=True)
    assert ((means > 0) & (means < 1)).all()
