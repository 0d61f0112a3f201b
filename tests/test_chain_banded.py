"""BandedTransition's loops (few wide steps for small messages, one frame a step otherwise)
against the same chain written with a dense K x K transition matrix."""

import pytest
import torch

from pyro_lvm.ops import chain
from pyro_lvm.ops.chain import BandedTransition, DenseTransition, chain_forward, chain_log_total, chain_total


def _dense_logits(band: torch.Tensor) -> torch.Tensor:
    """(N, 1, K, K) matrix with ``[n, 0, s - d, s] = band[n, s, d]`` and -inf elsewhere."""
    n, k, width = band.shape
    dense = torch.full((n, 1, k, k), float("-inf"), dtype=band.dtype)
    for d in range(min(width, k)):  # moves from s - d < 0 never happen
        s = torch.arange(d, k)
        dense[:, 0, s - d, s] = band[:, d:, d]
    return dense


def _chain(t_max, n=3, k=7, width=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    band = torch.randn(n, k, width, generator=g, dtype=torch.float64)
    if k > 2:
        band[:, 2, 1] = float("-inf")  # a forbidden move
    init = torch.randn(n, k, generator=g, dtype=torch.float64)
    emissions = torch.randn(t_max, n, k, generator=g, dtype=torch.float64)
    final = torch.randn(n, k, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, t_max + 1, (n,), generator=g)
    lengths[0] = t_max
    return band, init, emissions, final, lengths


@pytest.mark.parametrize("small_message", [0, 10**9], ids=["frame-per-step", "few-wide-steps"])
@pytest.mark.parametrize("t_max", [1, 2, 5, 9, 16])
@pytest.mark.parametrize("semiring", ["log", "max"])
@pytest.mark.parametrize("k", [7, 1, 2], ids=["K7", "K1-narrower-than-band", "K2-narrower-than-band"])
def test_banded_messages_match_dense_chain(monkeypatch, small_message, t_max, semiring, k):
    monkeypatch.setattr(chain, "_SMALL_MESSAGE", small_message)
    band, init, emissions, final, lengths = _chain(t_max, k=k)
    dense = DenseTransition(_dense_logits(band))
    expected = chain_forward(init, emissions, dense, lengths, semiring)
    alphas, betas = BandedTransition(band).messages(init, emissions, lengths, final, semiring)
    assert torch.allclose(alphas.clamp(min=-1e10), expected.clamp(min=-1e10), rtol=1e-12, atol=1e-10)
    # beta[t] + alpha[t] reduces to the total at every frame inside the length
    total = chain_total(expected, final, semiring)
    for t in range(t_max):
        inside = lengths > t
        combined = chain_total((alphas[t] + betas[t]).unsqueeze(0), torch.zeros_like(final), semiring)
        assert torch.allclose(combined[inside], total[inside], rtol=1e-12)


@pytest.mark.parametrize("small_message", [0, 10**9], ids=["frame-per-step", "few-wide-steps"])
def test_banded_gradient_is_the_posterior_of_the_dense_chain(monkeypatch, small_message):
    monkeypatch.setattr(chain, "_SMALL_MESSAGE", small_message)
    band, init, emissions, final, lengths = _chain(11, seed=3)
    e1 = emissions.clone().requires_grad_()
    chain_log_total(init, e1, BandedTransition(band), lengths, final).sum().backward()
    e2 = emissions.clone().requires_grad_()
    chain_total(chain_forward(init, e2, DenseTransition(_dense_logits(band)), lengths), final).sum().backward()
    assert torch.allclose(e1.grad, e2.grad, atol=1e-12)


def test_banded_forward_is_differentiable_in_the_transition():
    band, init, emissions, final, lengths = _chain(6, seed=5)
    band = band.clamp(min=-30).requires_grad_()
    total = chain_total(chain_forward(init, emissions, BandedTransition(band), lengths), final).sum()
    (grad,) = torch.autograd.grad(total, band)
    dense = _dense_logits(band.detach()).requires_grad_()
    expected_total = chain_total(chain_forward(init, emissions, DenseTransition(dense), lengths), final).sum()
    (dense_grad,) = torch.autograd.grad(expected_total, dense)
    assert torch.allclose(total, expected_total)
    for d in range(band.size(-1)):
        s = torch.arange(d, band.size(1))
        assert torch.allclose(grad[:, d:, d], dense_grad[:, 0, s - d, s], atol=1e-12)


@pytest.mark.parametrize("k", [7, 1, 2])
@pytest.mark.parametrize("t_max", [1, 2, 5, 9])
def test_banded_best_path_is_the_dense_viterbi_path(k, t_max):
    """Chains with fewer states than the band is wide (CTC targets of 0 or 1 label) included."""
    band, init, emissions, final, lengths = _chain(t_max, k=k, seed=7)
    dense = DenseTransition(_dense_logits(band))
    alphas = chain_forward(init, emissions, dense, lengths, "max")
    path, score = BandedTransition(band).best_path(init, emissions, lengths, final)
    torch.testing.assert_close(score, chain_total(alphas, final, "max"), rtol=1e-12, atol=0)
    assert torch.equal(path, chain.chain_backtrack(alphas, final, dense, lengths, temperature=0)[0])
