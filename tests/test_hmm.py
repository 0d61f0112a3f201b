"""The dense-transition HMM against pyro.distributions.DiscreteHMM and brute-force enumeration of state paths."""

import itertools

import pyro.distributions as dist
import pytest
import torch

from pyro_lvm.ops.hmm import hmm_log_likelihood, hmm_posterior_marginals, hmm_sample_states, hmm_viterbi


def gaussian_hmm(n, t, k, heterogeneous, seed=0):
    g = torch.Generator().manual_seed(seed)
    initial = torch.randn(k, generator=g, dtype=torch.float64)
    trans_shape = (n, t, k, k) if heterogeneous else (k, k)
    trans = torch.randn(trans_shape, generator=g, dtype=torch.float64)
    obs = dist.Normal(torch.randn(k, generator=g, dtype=torch.float64) * 2, torch.rand(k, generator=g, dtype=torch.float64) + 0.5)
    value = torch.randn(n, t, generator=g, dtype=torch.float64) * 2
    return initial, trans, obs, value


def brute_force(initial, trans, obs, value):
    """All K^T state paths of one sequence (value (T,)), with log p(z, x); trans (T, K, K)."""
    t, k = value.size(0), initial.size(-1)
    z = torch.tensor(list(itertools.product(range(k), repeat=t)))
    initial = initial - initial.logsumexp(-1)
    trans = trans - trans.logsumexp(-1, True)
    prior = (initial.unsqueeze(-1) + trans[0]).logsumexp(-2)[z[:, 0]]
    steps = trans[torch.arange(1, t), z[:, :-1], z[:, 1:]].sum(-1)
    emit = obs.log_prob(value.unsqueeze(-1))[torch.arange(t), z].sum(-1)
    return z, prior + steps + emit


@pytest.mark.parametrize("heterogeneous", [False, True])
def test_log_likelihood_matches_discrete_hmm(heterogeneous):
    initial, trans, obs, value = gaussian_hmm(5, 30, 4, heterogeneous)
    expected = dist.DiscreteHMM(initial, trans, obs).log_prob(value)
    torch.testing.assert_close(hmm_log_likelihood(initial, trans, obs, value), expected, rtol=0, atol=1e-10)


def test_categorical_emissions_gradients_and_lengths():
    g = torch.Generator().manual_seed(1)
    n, t, k, m = 4, 12, 3, 6
    initial = torch.randn(n, k, generator=g, dtype=torch.float64, requires_grad=True)
    trans = torch.randn(k, k, generator=g, dtype=torch.float64, requires_grad=True)
    probs = torch.randn(k, m, generator=g, dtype=torch.float64).softmax(-1)
    value = torch.randint(0, m, (n, t), generator=g)
    lengths = torch.tensor([12, 7, 1, 10])
    ours = hmm_log_likelihood(initial, trans, dist.Categorical(probs), value, lengths)
    expected = torch.stack(
        [dist.DiscreteHMM(initial[i], trans, dist.Categorical(probs)).log_prob(value[i, : lengths[i]]) for i in range(n)]
    )
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-10)
    grads = torch.autograd.grad(ours.sum(), (initial, trans))
    expected_grads = torch.autograd.grad(expected.sum(), (initial, trans))
    for a, b in zip(grads, expected_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_viterbi_marginals_and_samples_against_brute_force():
    n, t, k = 2, 5, 3
    initial, trans, obs, value = gaussian_hmm(n, t, k, heterogeneous=True, seed=2)
    lengths = torch.tensor([5, 4])
    best = hmm_viterbi(initial, trans, obs, value, lengths)
    marginals = hmm_posterior_marginals(initial, trans, obs, value, lengths)
    samples = hmm_sample_states(initial, trans, obs, value, lengths, num_samples=20000)
    for i in range(n):
        length = int(lengths[i])
        z, scores = brute_force(initial, trans[i, :length], obs, value[i, :length])
        assert torch.equal(best[i, :length], z[scores.argmax()])
        assert (best[i, length:] == -1).all() and (samples[:, i, length:] == -1).all()
        post = (scores - scores.logsumexp(0)).exp()
        exact = torch.zeros(length, k, dtype=torch.float64).index_put_(
            (torch.arange(length).expand_as(z), z), post.unsqueeze(-1).expand_as(z), accumulate=True
        )
        torch.testing.assert_close(marginals[i, :length], exact, rtol=0, atol=1e-12)
        assert (marginals[i, length:] == 0).all()
        codes = (samples[:, i, :length] * k ** torch.arange(length - 1, -1, -1)).sum(-1)
        freq = torch.bincount(codes, minlength=k**length).double() / samples.size(0)
        order = (z * k ** torch.arange(length - 1, -1, -1)).sum(-1)
        assert ((freq[order] - post).abs() <= 4 * (post * (1 - post) / samples.size(0)).sqrt() + 1e-3).all()


def test_bad_input():
    initial, trans, obs, value = gaussian_hmm(3, 6, 2, heterogeneous=False)
    with pytest.raises(ValueError, match=r"lengths\[1\] = 7 is out of range"):
        hmm_log_likelihood(initial, trans, obs, value, torch.tensor([6, 7, 2]))
    with pytest.raises(ValueError, match="transition_logits must have shape"):
        hmm_log_likelihood(initial, trans[0], obs, value)
    with pytest.raises(ValueError, match="initial_logits must have shape"):
        hmm_log_likelihood(initial.expand(2, 2), trans, obs, value)
