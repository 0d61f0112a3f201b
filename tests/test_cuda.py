"""The CUDA paths against references computed elsewhere: Pyro's DiscreteHMM, torch's native CTC
kernel, the same fits on the CPU. Skipped without a GPU; run them on a CUDA machine with
``python -m pytest tests/test_cuda.py``."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from sklearn.datasets import load_iris
from torch.nn import functional as F

from pyro_lvm.data import dynamic_binarize, load_digits
from pyro_lvm.estimators import GaussianMixture
from pyro_lvm.guides import AmortizedNormal
from pyro_lvm.infer import JitTraceMeanField_ELBO, importance_log_likelihood, train
from pyro_lvm.models import DeepLatentGaussian
from pyro_lvm.ops.ctc import ctc_log_likelihood, ctc_viterbi
from pyro_lvm.ops.hmm import hmm_log_likelihood

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")


def _binarized_digits(n: int) -> torch.Tensor:
    x, _ = load_digits("train")
    return dynamic_binarize(x[:n].reshape(n, -1), torch.Generator().manual_seed(0))


def _vae_run(epochs: int, checkpoint, resume: bool = False):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model, guide = DeepLatentGaussian(64, 4, (32,)), AmortizedNormal(64, 4, (32,))
    history = train(
        model.model, guide, _binarized_digits(256), epochs=epochs, batch_size=64, device=CUDA,
        checkpoint=checkpoint, resume=resume, progress=False,
    )
    return model, guide, history


def test_vae_trains_on_cuda_and_its_log_likelihood_matches_the_cpu(tmp_path):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model, guide = DeepLatentGaussian(64, 4, (32,)), AmortizedNormal(64, 4, (32,))
    optimizer = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=1e-2)
    x = _binarized_digits(256)
    history = train(model.model, guide, x, loss=JitTraceMeanField_ELBO(), optimizer=optimizer, epochs=3,
                    batch_size=64, device=CUDA, progress=False)
    assert all(math.isfinite(v) for v in history.step_loss)
    assert all(p.device.type == "cuda" for p in [*model.parameters(), *guide.parameters()])
    with torch.no_grad():
        on_cuda = importance_log_likelihood(model.model, guide, x[:100].to(CUDA), num_samples=2000)
        model.cpu(), guide.cpu()
        on_cpu = importance_log_likelihood(model.model, guide, x[:100], num_samples=2000)
    assert on_cuda.device.type == "cuda"
    difference = on_cuda.cpu() - on_cpu  # two independent estimates of the same log p(x)
    assert abs(difference.mean().item()) < 0.05 and difference.abs().max().item() < 1.0


def test_resume_on_cuda_equals_the_uninterrupted_run(tmp_path):
    full_model, _, full_history = _vae_run(4, tmp_path / "full.pt")
    _vae_run(2, tmp_path / "part.pt")
    model, _, history = _vae_run(4, tmp_path / "part.pt", resume=True)
    assert history.step_loss == full_history.step_loss
    for p, q in zip(full_model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_mixture_em_on_cuda_equals_the_cpu_fit(covariance_type):
    X = torch.as_tensor(load_iris().data, dtype=torch.float64)
    precision = torch.linalg.inv(torch.cov(X.T))  # a fixed start: no random draws, which differ across devices
    start = dict(
        means_init=X[torch.tensor([0, 60, 120])],
        weights_init=torch.full((3,), 1 / 3, dtype=torch.float64),
        precisions_init=precision.expand(3, 4, 4) if covariance_type == "full" else precision.diagonal().expand(3, 4),
    )
    fits = [
        GaussianMixture(3, covariance_type=covariance_type, **start, device=device, dtype=torch.float64).fit(X)
        for device in ("cpu", CUDA)
    ]
    cpu, gpu = fits
    assert gpu.means_.device.type == "cuda" and gpu.n_iter_ == cpu.n_iter_
    torch.testing.assert_close(gpu.means_.cpu(), cpu.means_, rtol=0, atol=1e-8)
    assert gpu.lower_bound_ == pytest.approx(cpu.lower_bound_, abs=1e-10)


@pytest.mark.parametrize("n", [1, 32])  # the few-wide-steps and the frame-per-step loops
def test_enumerated_ctc_on_cuda_equals_the_native_kernel(n):
    g = torch.Generator().manual_seed(n)
    t_max, s_max, c = 60, 12, 9
    logits = torch.randn(t_max, n, c, generator=g).to(CUDA).requires_grad_()
    targets = torch.randint(1, c, (n, s_max), generator=g).to(CUDA)
    input_lengths = torch.randint(40, t_max + 1, (n,), generator=g).to(CUDA)
    target_lengths = torch.randint(1, s_max + 1, (n,), generator=g).to(CUDA)
    input_lengths[0], target_lengths[0] = t_max, s_max
    enum = ctc_log_likelihood(logits.log_softmax(-1), targets, input_lengths, target_lengths, method="enum")
    (grad_enum,) = torch.autograd.grad(enum.sum(), logits)
    with torch.backends.cudnn.flags(enabled=False):
        native = -F.ctc_loss(logits.log_softmax(-1), targets, input_lengths, target_lengths, reduction="none")
    (grad_native,) = torch.autograd.grad(native.sum(), logits)
    torch.testing.assert_close(enum, native, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(grad_enum, grad_native, rtol=0, atol=1e-4)
    cpu_path = ctc_viterbi(logits.detach().cpu().log_softmax(-1), targets.cpu(), input_lengths.cpu(), target_lengths.cpu())
    gpu_path = ctc_viterbi(logits.detach().log_softmax(-1), targets, input_lengths, target_lengths)
    assert torch.equal(gpu_path.cpu(), cpu_path)


def test_hmm_log_likelihood_on_cuda_equals_pyros_discrete_hmm():
    g = torch.Generator().manual_seed(0)
    k, t = 4, 30
    initial = torch.randn(k, generator=g, dtype=torch.float64)
    trans = torch.randn(k, k, generator=g, dtype=torch.float64)
    loc, scale = torch.randn(k, generator=g, dtype=torch.float64) * 2, torch.rand(k, generator=g, dtype=torch.float64) + 0.5
    value = torch.randn(5, t, generator=g, dtype=torch.float64) * 2
    expected = dist.DiscreteHMM(initial, trans, dist.Normal(loc, scale)).log_prob(value)
    ours = hmm_log_likelihood(initial.to(CUDA), trans.to(CUDA), dist.Normal(loc.to(CUDA), scale.to(CUDA)), value.to(CUDA))
    assert ours.device.type == "cuda"
    torch.testing.assert_close(ours.cpu(), expected, rtol=0, atol=1e-10)
