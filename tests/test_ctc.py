"""CTC alignment: torch's ctc_loss, brute-force enumeration of alignments and Pyro's TraceEnum_ELBO /
infer_discrete on the literal program are the references."""

import itertools
import math

import pyro
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import TraceEnum_ELBO, infer_discrete

from pyro_lvm.distributions import CTC
from pyro_lvm.models import ctc_alignment_model
from pyro_lvm.ops.ctc import (
    ctc_collapse,
    ctc_greedy_decode,
    ctc_log_likelihood,
    ctc_posterior_marginals,
    ctc_sample_alignments,
    ctc_viterbi,
    ctc_viterbi_log_likelihood,
)

METHODS = ["native", "enum"]


def random_case(seed, t=20, n=6, c=5, s=6, feasible=True):
    """Random float64 logits with repeated labels, ragged input/target lengths and an empty target."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(t, n, c, generator=g, dtype=torch.float64)
    targets = torch.randint(1, c, (n, s), generator=g)
    targets[0, 1] = targets[0, 0]  # a repeat needs a blank between
    targets[1, 2:4] = targets[1, 1]
    target_lengths = torch.randint(1, s + 1, (n,), generator=g)
    target_lengths[0], target_lengths[-1] = s, 0
    input_lengths = torch.randint(t // 2, t + 1, (n,), generator=g)
    input_lengths[0] = t
    if feasible:
        input_lengths = torch.maximum(input_lengths, 2 * target_lengths + 1)
    return logits, targets, input_lengths, target_lengths


def torch_ll(log_probs, targets, input_lengths, target_lengths, zero_infinity=False):
    return -F.ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction="none", zero_infinity=zero_infinity)


def all_alignments(t, c):
    return torch.tensor(list(itertools.product(range(c), repeat=t)))


def brute_force(log_probs, target, blank=0):
    """Every alignment of one sequence (log_probs (T, C)) that collapses to ``target``, with log p(z | x)."""
    z = all_alignments(*log_probs.shape)
    keep = torch.tensor([row == list(target) for row in ctc_collapse(z, blank)])
    z = z[keep]
    return z, log_probs.gather(1, z.t()).sum(0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_torch_ctc_loss(method, seed):
    logits, targets, il, tl = random_case(seed)
    logits.requires_grad_()
    ref = torch_ll(logits.log_softmax(-1), targets, il, tl)
    (ref_grad,) = torch.autograd.grad(ref.sum(), logits)
    ours = ctc_log_likelihood(logits.log_softmax(-1), targets, il, tl, method=method)
    (grad,) = torch.autograd.grad(ours.sum(), logits)
    assert torch.isfinite(ref).all()
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-10)


def test_gradient_wrt_log_probs_is_the_posterior():
    logits, targets, il, tl = random_case(2)
    log_probs = logits.log_softmax(-1).requires_grad_()
    grads = [torch.autograd.grad(ctc_log_likelihood(log_probs, targets, il, tl, method=m).sum(), log_probs)[0] for m in METHODS]
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-10)
    torch.testing.assert_close(grads[1], ctc_posterior_marginals(log_probs, targets, il, tl), rtol=0, atol=1e-12)
    # torch's kernel reports exp(log_probs) - posterior on frames inside the input
    (kernel,) = torch.autograd.grad(torch_ll(log_probs, targets, il, tl).sum(), log_probs)
    inside = (torch.arange(logits.size(0)).unsqueeze(-1) < il).unsqueeze(-1)
    torch.testing.assert_close(kernel + log_probs.exp() * inside, grads[1], rtol=0, atol=1e-10)
    # finite differences of the function itself
    small = [x[:6, :2] for x in (log_probs.detach(),)][0].clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda lp: ctc_log_likelihood(lp, targets[:2, :2], [6, 5], [2, 1], method="enum"), (small,)
    )


@pytest.mark.parametrize("method", METHODS)
def test_infeasible_pairs(method):
    logits, targets, il, tl = random_case(3, t=8, n=4, s=4, feasible=False)
    targets[0] = torch.tensor([1, 1, 1, 1])
    il[0], tl[0] = 6, 4  # needs 4 labels + 3 blanks = 7 frames
    log_probs = logits.log_softmax(-1)
    ref = torch_ll(log_probs, targets, il, tl)
    ours = ctc_log_likelihood(log_probs, targets, il, tl, method=method)
    assert ours[0] == float("-inf")
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))
    torch.testing.assert_close(ours[~torch.isinf(ref)], ref[~torch.isinf(ref)], rtol=0, atol=1e-10)
    logits.requires_grad_()
    ref = torch_ll(logits.log_softmax(-1), targets, il, tl, zero_infinity=True)
    ours = ctc_log_likelihood(logits.log_softmax(-1), targets, il, tl, method=method, zero_infinity=True)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)
    (ref_grad,) = torch.autograd.grad(ref.sum(), logits)
    (grad,) = torch.autograd.grad(ours.sum(), logits)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-10)
    assert (grad[:, 0] == 0).all()


def test_float32_matches_torch():
    logits, targets, il, tl = random_case(4, t=60, n=8, c=12, s=10)
    log_probs = logits.float().log_softmax(-1)
    ref = torch_ll(log_probs, targets, il, tl)
    torch.testing.assert_close(ctc_log_likelihood(log_probs, targets, il, tl, method="enum"), ref, rtol=1e-5, atol=1e-4)


def test_enumerated_program_equals_vectorized_chain():
    logits, targets, il, tl = random_case(5, t=7, n=4, c=4, s=3)
    logits.requires_grad_()
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    loss = elbo.differentiable_loss(ctc_alignment_model, lambda *a, **k: None, logits.log_softmax(-1), targets, il, tl)
    (grad,) = torch.autograd.grad(loss, logits)
    ours = ctc_log_likelihood(logits.log_softmax(-1), targets, il, tl, method="enum")
    (ours_grad,) = torch.autograd.grad(-ours.sum(), logits)
    torch.testing.assert_close(loss, -ours.sum(), rtol=0, atol=1e-10)
    torch.testing.assert_close(grad, ours_grad, rtol=0, atol=1e-10)


def _program_labels(trace, targets, target_lengths, t):
    """Frame labels from the positions ``s_t`` of an ``infer_discrete`` trace."""
    positions = torch.stack([trace.nodes[f"s_{i}"]["value"] for i in range(t)], -1)  # (N, T)
    ext = torch.zeros(targets.size(0), 2 * targets.size(1) + 1, dtype=torch.long)
    ext[:, 1::2] = targets * (torch.arange(targets.size(1)) < target_lengths.unsqueeze(-1))
    return ext.gather(1, positions)


def test_viterbi_against_brute_force_and_infer_discrete():
    t, c = 7, 3
    logits, targets, il, tl = random_case(6, t=t, n=5, c=c, s=3)
    log_probs = logits.log_softmax(-1)
    best = ctc_viterbi(log_probs, targets, il, tl)
    best_ll = ctc_viterbi_log_likelihood(log_probs, targets, il, tl)
    for i in range(targets.size(0)):
        target = targets[i, : tl[i]].tolist()
        z, scores = brute_force(log_probs[: il[i], i], target)
        assert torch.equal(best[i, : il[i]], z[scores.argmax()])
        assert (best[i, il[i] :] == -1).all()
        assert ctc_collapse(best[i]) == [target]
        torch.testing.assert_close(best_ll[i], scores.max(), rtol=0, atol=1e-12)
    trace = pyro.poutine.trace(infer_discrete(ctc_alignment_model, first_available_dim=-2, temperature=0)).get_trace(
        log_probs, targets, il, tl
    )
    program = _program_labels(trace, targets, tl, t)
    inside = torch.arange(t) < il.unsqueeze(-1)
    assert torch.equal(program[inside], best[inside])


def test_posterior_samples_match_exact_path_probabilities():
    t, c = 6, 3
    log_probs = torch.randn(t, 1, c, dtype=torch.float64).log_softmax(-1)
    targets, il, tl = torch.tensor([[1, 1]]), torch.tensor([t]), torch.tensor([2])
    z, scores = brute_force(log_probs[:, 0], [1, 1])
    exact = (scores - scores.logsumexp(0)).exp()
    num = 20000
    samples = ctc_sample_alignments(log_probs, targets, il, tl, num_samples=num)[:, 0]  # (num, T)
    assert all(row == [1, 1] for row in ctc_collapse(samples))
    codes = (samples * c ** torch.arange(t - 1, -1, -1)).sum(-1)
    freq = torch.bincount(codes, minlength=c**t).double()[(z * c ** torch.arange(t - 1, -1, -1)).sum(-1)] / num
    assert freq.sum() == 1
    assert ((freq - exact).abs() <= 4 * (exact * (1 - exact) / num).sqrt() + 1e-3).all()
    # infer_discrete(temperature=1) on the program, one draw per copy of the sequence in the plate
    copies = 4000
    trace = pyro.poutine.trace(infer_discrete(ctc_alignment_model, first_available_dim=-2, temperature=1)).get_trace(
        log_probs.expand(t, copies, c), targets.expand(copies, 2), il.expand(copies), tl.expand(copies)
    )
    drawn = _program_labels(trace, targets.expand(copies, 2), tl.expand(copies), t)
    assert all(row == [1, 1] for row in ctc_collapse(drawn))
    codes = (drawn * c ** torch.arange(t - 1, -1, -1)).sum(-1)
    freq = torch.bincount(codes, minlength=c**t).double()[(z * c ** torch.arange(t - 1, -1, -1)).sum(-1)] / copies
    assert ((freq - exact).abs() <= 4 * (exact * (1 - exact) / copies).sqrt() + 1e-3).all()


def test_posterior_marginals_against_brute_force():
    t, c = 6, 3
    logits, targets, il, tl = random_case(7, t=t, n=3, c=c, s=2)
    log_probs = logits.log_softmax(-1)
    marginals = ctc_posterior_marginals(log_probs, targets, il, tl)
    for i in range(3):
        z, scores = brute_force(log_probs[: il[i], i], targets[i, : tl[i]].tolist())
        weights = (scores - scores.logsumexp(0)).exp()
        exact = torch.zeros(il[i], c, dtype=torch.float64).index_put_(
            (torch.arange(il[i]).expand_as(z), z), weights.unsqueeze(-1).expand_as(z), accumulate=True
        )
        torch.testing.assert_close(marginals[: il[i], i], exact, rtol=0, atol=1e-12)
        assert (marginals[il[i] :, i] == 0).all()


def test_greedy_decode_and_collapse():
    z = torch.tensor([[0, 1, 1, 0, 1, 2, 2, 0, -1], [3, 3, 3, 0, 0, 3, -1, -1, -1]])
    assert ctc_collapse(z) == [[1, 1, 2], [3, 3]]
    log_probs = F.one_hot(z.clamp(min=0).t(), 4).double().clamp(min=1e-6).log().log_softmax(-1)
    assert ctc_greedy_decode(log_probs, torch.tensor([9, 4])) == [[1, 1, 2], [3]]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(targets=torch.tensor([[1, 0], [2, 1]])), r"targets\[0, 1\] = 0 is the blank"),
        (lambda a: a.update(targets=torch.tensor([[1, 2], [5, 1]])), r"targets\[1, 0\] = 5 is outside the classes"),
        (lambda a: a.update(target_lengths=torch.tensor([2, 3])), r"target_lengths\[1\] = 3 is out of range"),
        (lambda a: a.update(input_lengths=torch.tensor([9, 4])), r"input_lengths\[0\] = 9 is out of range"),
        (lambda a: a.update(input_lengths=torch.tensor([0, 4])), r"input_lengths\[0\] = 0 is out of range"),
        (lambda a: a.update(log_probs=torch.zeros(4, 5)), r"log_probs must be a floating tensor of shape \(T, N, C\)"),
        (lambda a: a.update(input_lengths=torch.tensor([4.0, 4.0])), "input_lengths must hold integers"),
    ],
)
@pytest.mark.parametrize("fn", [ctc_log_likelihood, ctc_viterbi, ctc_posterior_marginals])
def test_bad_input(fn, change, message):
    args = dict(log_probs=torch.randn(4, 2, 5).log_softmax(-1), targets=torch.tensor([[1, 2], [3, 0]]),
                input_lengths=torch.tensor([4, 3]), target_lengths=torch.tensor([2, 1]))
    change(args)
    with pytest.raises(ValueError, match=message):
        fn(**args)


def test_unnormalized_log_probs_warn():
    log_probs = torch.randn(4, 2, 5).log_softmax(-1)
    log_probs[2, 1] += 1.0
    with pytest.warns(RuntimeWarning, match="sequence 1, frame 2"):
        ctc_log_likelihood(log_probs, torch.tensor([[1, 2], [3, 0]]), [4, 4], [2, 1], method="enum")


def test_ctc_distribution_in_a_pyro_model():
    logits, targets, il, tl = random_case(8)
    log_probs = logits.log_softmax(-1)

    def model(method):
        with pyro.plate("strings", targets.size(0), dim=-1):
            pyro.sample("y", CTC(log_probs, il, tl, method=method), obs=targets)

    ref = torch_ll(log_probs, targets, il, tl).sum()
    for method in METHODS:
        trace = pyro.poutine.trace(model).get_trace(method)
        torch.testing.assert_close(trace.log_prob_sum(), ref, rtol=0, atol=1e-10)
    padded = torch.where(torch.arange(targets.size(1)) < tl.unsqueeze(-1), targets, -1)
    torch.testing.assert_close(CTC(log_probs, il).log_prob(padded).sum(), ref, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="value row 0 has -1 padding before a label"):
        CTC(log_probs, il).log_prob(torch.tensor([[-1, 1]]).expand(targets.size(0), 2))


def test_ctc_distribution_is_normalized_and_samples_match():
    t, c = 4, 3
    log_probs = torch.randn(t, 1, c, dtype=torch.float64).log_softmax(-1)
    strings = [list(s) for k in range(t + 1) for s in itertools.product(range(1, c), repeat=k)]
    values = torch.tensor([s + [-1] * (t - len(s)) for s in strings])
    log_p = CTC(log_probs.expand(t, len(strings), c), method="enum").log_prob(values)
    torch.testing.assert_close(log_p.logsumexp(0), torch.zeros((), dtype=torch.float64), rtol=0, atol=1e-12)
    num = 20000
    drawn = CTC(log_probs).sample((num,))[:, 0]  # (num, T)
    index = {tuple(s): i for i, s in enumerate(strings)}
    counts = torch.bincount(torch.tensor([index[tuple(x for x in r if x >= 0)] for r in drawn.tolist()]), minlength=len(strings))
    p = log_p.exp()
    assert ((counts / num - p).abs() <= 4 * (p * (1 - p) / num).sqrt() + 1e-3).all()


def test_hard_em_on_the_program_is_viterbi_training():
    hard_em = pytest.importorskip("pyro_lvm.infer.hard_em")
    logits, targets, il, tl = random_case(9, t=7, n=3, c=4, s=3)
    logits.requires_grad_()
    loss = hard_em.HardEM(max_plate_nesting=1).differentiable_loss(
        ctc_alignment_model, lambda *a, **k: None, logits.log_softmax(-1), targets, il, tl
    )
    ours = -ctc_viterbi_log_likelihood(logits.log_softmax(-1), targets, il, tl).sum()
    torch.testing.assert_close(loss, ours, rtol=0, atol=1e-10)
    grads = [torch.autograd.grad(x, logits)[0] for x in (loss, ours)]
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-10)


def test_digit_strings_ground_truth():
    from pyro_lvm.data import load_digits
    from pyro_lvm.data.digit_strings import make_digit_strings, span_alignment_accuracy

    images, labels = load_digits("test")
    d = make_digit_strings(images, labels, 50, max_digits=4, seed=3)
    assert d.images.shape[0] == 50 and (d.target_lengths >= 1).all() and (d.target_lengths <= 4).all()
    for i in range(50):
        n, w = int(d.target_lengths[i]), int(d.widths[i])
        assert (d.images[i, :, w:] == 0).all()
        inside = torch.zeros(d.images.size(2), dtype=torch.bool)
        for k in range(n):
            lo, hi = d.spans[i, k].tolist()
            inside[lo:hi] = True
            assert d.images[i, :, lo].amax() > 0.1 and d.images[i, :, hi - 1].amax() > 0.1  # cropped to ink
        assert (d.images[i, :, ~inside] == 0).all()  # gaps are blank columns
        assert (d.spans[i, n:] == -1).all() and (d.targets[i, n:] == -1).all()
    assert ctc_collapse(d.frame_labels) == [t[:n] for t, n in zip(d.targets.tolist(), d.target_lengths.tolist())]
    assert span_alignment_accuracy(d.frame_labels, d.spans) == 1.0
    shifted = torch.cat([torch.zeros_like(d.frame_labels[:, :3]), d.frame_labels[:, :-3]], 1)  # 3 columns late
    assert 0 < span_alignment_accuracy(shifted, d.spans) < span_alignment_accuracy(shifted, d.spans, tolerance=2) < 1
    assert span_alignment_accuracy(shifted, d.spans, tolerance=3) == 1.0


def run_example(tmp_path, *flags):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "ctc_alignment.py"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path), "--no-progress", *flags], check=True, env=env, timeout=600)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for name in metrics["figures"]:
        assert (tmp_path / name).stat().st_size > 1000
    return metrics


def test_example_runs(tmp_path):
    metrics = run_example(tmp_path, "--quick", "--train-strings", "200", "--test-strings", "40", "--epochs", "1")
    for mode in ("soft", "hard"):
        for key in ("label_error_rate", "viterbi_frame_alignment_accuracy", "test_log_likelihood_per_string"):
            assert math.isfinite(metrics[mode][key])
    assert set(metrics["figures"]) == {"posterior_soft.png", "posterior_hard.png", "training_curve.png"}


def test_example_runs_with_one_digit_strings(tmp_path):
    """Targets one label wide: the posterior figures used to crash and leave --out empty."""
    metrics = run_example(tmp_path, "--quick", "--max-digits", "1", "--train-strings", "60", "--test-strings", "10",
                          "--epochs", "1", "--figures", "2")
    assert set(metrics["figures"]) == {"posterior_soft.png", "posterior_hard.png", "training_curve.png"}
    for mode in ("soft", "hard"):
        assert math.isfinite(metrics[mode]["test_log_likelihood_per_string"])


def test_example_runs_on_mnist(tmp_path, shared_data):
    metrics = run_example(tmp_path, "--dataset", "mnist", "--data-dir", str(shared_data), "--quick",
                          "--train-strings", "100", "--test-strings", "20", "--epochs", "1")
    assert metrics["dataset"] == "mnist" and metrics["frames_max"] > 28


@pytest.mark.slow
def test_example_quick_learns_alignments(tmp_path):
    metrics = run_example(tmp_path, "--quick")
    for mode in ("soft", "hard"):
        assert metrics[mode]["label_error_rate"] < 0.2
    # soft CTC places its label spikes near, not inside, the digits; Viterbi training keeps them closer
    assert metrics["hard"]["viterbi_frame_alignment_accuracy"] > max(0.4, metrics["soft"]["viterbi_frame_alignment_accuracy"])


def test_nan_log_probs_raise():
    log_probs = torch.randn(4, 2, 5).log_softmax(-1)
    log_probs[1, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="log_probs contains NaN: sequence 0, frame 1"):
        ctc_log_likelihood(log_probs, torch.tensor([[1, 2], [3, 0]]), [4, 4], [2, 1])


def test_zero_probabilities():
    """-inf log-probabilities (classes impossible at some frames) give torch's values; the enumerated
    gradient stays the (finite) posterior where torch's own backward gives NaN."""
    logits, targets, il, tl = random_case(10, t=12, n=3, c=5, s=3)
    logits[:, :, 4] = float("-inf")  # class 4 impossible everywhere
    logits[:4, 1, 0] = float("-inf")  # no blank in sequence 1's first frames
    targets = targets.clamp(max=3)
    log_probs = logits.log_softmax(-1).requires_grad_()
    ref = torch_ll(log_probs, targets, il, tl)
    assert torch.isfinite(ref).all()
    for method in METHODS:
        torch.testing.assert_close(ctc_log_likelihood(log_probs, targets, il, tl, method=method), ref, rtol=0, atol=1e-10)
    (grad,) = torch.autograd.grad(ctc_log_likelihood(log_probs, targets, il, tl, method="enum").sum(), log_probs)
    assert torch.isfinite(grad).all() and (grad[:, :, 4] == 0).all() and (grad[:4, 1, 0] == 0).all()
    torch.testing.assert_close(grad, ctc_posterior_marginals(log_probs, targets, il, tl), rtol=0, atol=1e-12)


def test_long_inputs_match_torch():
    """T = 500 frames: the vectorized chain (no Pyro site per frame) still equals torch."""
    logits, targets, il, tl = random_case(11, t=500, n=4, c=30, s=60)
    logits.requires_grad_()
    ref = torch_ll(logits.log_softmax(-1), targets, il, tl)
    ours = ctc_log_likelihood(logits.log_softmax(-1), targets, il, tl, method="enum")
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-9)
    grads = [torch.autograd.grad(x.sum(), logits)[0] for x in (ours, ref)]
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-10)
    best = ctc_viterbi(logits.detach().log_softmax(-1), targets, il, tl)
    assert ctc_collapse(best) == [t[:n] for t, n in zip(targets.tolist(), tl.tolist())]


def test_chain_forward_under_autograd_matches_the_posterior_path():
    """The banded recursion differentiated by autograd (chain_forward + chain_total) and by the
    forward-backward posterior (chain_log_total) agree; so do the posteriors of both directions."""
    from pyro_lvm.ops import chain_forward, chain_log_total, chain_total
    from pyro_lvm.ops.ctc import _alignment_chain, _check

    logits, targets, il, tl = random_case(12)
    chain = _alignment_chain(_check(logits.log_softmax(-1), targets, il, tl, 0), 0)
    emissions = chain.emissions.detach().requires_grad_()
    tracked = chain_total(chain_forward(chain.init, emissions, chain.transition, chain.lengths), chain.final)
    fast = chain_log_total(chain.init, emissions, chain.transition, chain.lengths, chain.final)
    torch.testing.assert_close(tracked, fast, rtol=0, atol=1e-10)
    grads = [torch.autograd.grad(x.sum(), emissions)[0] for x in (tracked, fast)]
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-10)


# Targets zero, one and two labels wide, and a batch mixing empty and longer targets (issue 13):
# (targets, target_lengths) per case; the padding past a length is a label that must be ignored.
SHORT_TARGETS = {
    "width0": ([[], [], []], [0, 0, 0]),
    "width1": ([[1], [2], [2]], [1, 1, 0]),
    "width2": ([[1, 1], [2, 1], [2, 2]], [2, 1, 0]),
    "mixed": ([[1, 2, 2], [2, 2, 1], [1, 1, 1], [1, 2, 1], [2, 1, 2]], [0, 3, 1, 0, 2]),
}


def frames_needed(name):
    """(N,) the fewest frames that can produce each target of a case: its labels plus a blank between repeats."""
    rows, lengths = SHORT_TARGETS[name]
    return torch.tensor([max(1, n + sum(a == b for a, b in itertools.pairwise(r[:n]))) for r, n in zip(rows, lengths)])


def short_case(name, t, c=3, seed=0):
    """Random float64 logits (T, N, C) for one of :data:`SHORT_TARGETS`, with ragged input lengths:
    row 0 takes all ``t`` frames, the others one or two fewer where their target allows."""
    rows, lengths = SHORT_TARGETS[name]
    targets = torch.tensor(rows, dtype=torch.long).reshape(len(rows), -1)
    tl = torch.tensor(lengths)
    need = frames_needed(name)
    assert (need <= t).all(), "the case must be feasible"
    il = torch.maximum(need, torch.tensor([t] + [t - 1 - i % 2 for i in range(len(rows) - 1)]))
    logits = torch.randn(t, len(rows), c, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return logits, targets, il, tl


def short_cases(ts):
    return [(name, t) for name in SHORT_TARGETS for t in ts if t >= int(frames_needed(name).max())]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name, t", short_cases([1, 2, 3, 6]))
def test_short_targets_match_torch(name, t, method):
    logits, targets, il, tl = short_case(name, t)
    logits.requires_grad_()
    ref = torch_ll(logits.log_softmax(-1), targets, il, tl)
    ours = ctc_log_likelihood(logits.log_softmax(-1), targets, il, tl, method=method)
    assert torch.isfinite(ref).all()
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)
    grads = [torch.autograd.grad(x.sum(), logits)[0] for x in (ours, ref)]
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-10)
    padded = torch.where(torch.arange(targets.size(1)) < tl.unsqueeze(-1), targets, -1)
    torch.testing.assert_close(CTC(logits.log_softmax(-1), il, method=method).log_prob(padded), ref, rtol=0, atol=1e-10)


def test_one_label_targets_of_the_issue():
    log_probs = torch.randn(6, 2, 4, generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    targets = torch.tensor([[1], [2]])
    ref = torch_ll(log_probs, targets, [6, 6], [1, 1])
    for method in METHODS:
        torch.testing.assert_close(ctc_log_likelihood(log_probs, targets, [6, 6], [1, 1], method=method), ref)


@pytest.mark.parametrize("name, t", short_cases([1, 2, 3, 5]))
def test_short_targets_viterbi_samples_and_marginals_against_brute_force(name, t):
    logits, targets, il, tl = short_case(name, t, seed=1)
    log_probs = logits.log_softmax(-1)
    c = log_probs.size(-1)
    best = ctc_viterbi(log_probs, targets, il, tl)
    best_ll = ctc_viterbi_log_likelihood(log_probs, targets, il, tl)
    drawn = ctc_sample_alignments(log_probs, targets, il, tl, num_samples=50)
    marginals = ctc_posterior_marginals(log_probs, targets, il, tl)
    for i in range(targets.size(0)):
        target = targets[i, : tl[i]].tolist()
        z, scores = brute_force(log_probs[: il[i], i], target)
        assert ctc_collapse(best[i]) == [target] and (best[i, il[i] :] == -1).all()
        torch.testing.assert_close(best_ll[i], scores.max(), rtol=0, atol=1e-12)
        assert log_probs[: il[i], i].gather(1, best[i, : il[i]].unsqueeze(-1)).sum() == pytest.approx(float(scores.max()), abs=1e-12)
        assert ctc_collapse(drawn[:, i]) == [target] * 50 and (drawn[:, i, il[i] :] == -1).all()
        weights = (scores - scores.logsumexp(0)).exp()
        exact = torch.zeros(il[i], c, dtype=torch.float64).index_put_(
            (torch.arange(il[i]).expand_as(z), z), weights.unsqueeze(-1).expand_as(z), accumulate=True
        )
        torch.testing.assert_close(marginals[: il[i], i], exact, rtol=0, atol=1e-12)
        torch.testing.assert_close(marginals[: il[i], i].sum(-1), torch.ones(int(il[i]), dtype=torch.float64))
        assert (marginals[il[i] :, i] == 0).all()


# Every public CTC function checks log_probs and input_lengths with one helper (issue 13).
PUBLIC = {
    "log_likelihood_native": lambda lp, il, y, tl: ctc_log_likelihood(lp, y, il, tl, method="native"),
    "log_likelihood_enum": lambda lp, il, y, tl: ctc_log_likelihood(lp, y, il, tl, method="enum"),
    "viterbi": lambda lp, il, y, tl: ctc_viterbi(lp, y, il, tl),
    "viterbi_log_likelihood": lambda lp, il, y, tl: ctc_viterbi_log_likelihood(lp, y, il, tl),
    "sample_alignments": lambda lp, il, y, tl: ctc_sample_alignments(lp, y, il, tl),
    "posterior_marginals": lambda lp, il, y, tl: ctc_posterior_marginals(lp, y, il, tl),
    "greedy_decode": lambda lp, il, y, tl: ctc_greedy_decode(lp, il),
    "CTC": lambda lp, il, y, tl: CTC(lp, il),
    "CTC_log_prob": lambda lp, il, y, tl: CTC(lp, il, tl).log_prob(y),
}


def _poison(value):
    def change(args):
        args["log_probs"][2, 1, 3] = value

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (_poison(float("inf")), r"log_probs contains \+inf: sequence 1, frame 2 \(log-probabilities must be finite or -inf\)"),
        (_poison(float("nan")), r"log_probs contains NaN: sequence 1, frame 2 \(log-probabilities must be finite or -inf\)"),
        (lambda a: a.update(input_lengths=[99, 3]), r"input_lengths\[0\] = 99 is out of range: expected 1 <= input length <= T = 4"),
        (lambda a: a.update(input_lengths=[4, -5]), r"input_lengths\[1\] = -5 is out of range: expected 1 <= input length <= T = 4"),
        (lambda a: a.update(input_lengths=[9, 5]), r"input_lengths\[0\] = 9 is out of range: expected 1 <= input length <= T = 4"),
        (lambda a: a.update(input_lengths=[4, 4, 4]), r"input_lengths must have shape \(N,\) = \(2,\), got \(3,\)"),
    ],
    ids=["+inf", "nan", "too-long", "negative", "CTC-sample-issue", "shape"],
)
@pytest.mark.parametrize("fn", PUBLIC.values(), ids=PUBLIC.keys())
def test_every_function_rejects_bad_log_probs_and_input_lengths(fn, change, message):
    args = {"log_probs": torch.randn(4, 2, 5).log_softmax(-1), "input_lengths": [4, 3],
            "targets": torch.tensor([[1, 2], [3, 0]]), "target_lengths": [2, 1]}
    change(args)
    with pytest.raises(ValueError, match=message):
        fn(args["log_probs"], args["input_lengths"], args["targets"], args["target_lengths"])


def test_posinf_past_the_input_length_is_ignored():
    """Frames past a sequence's input length are not part of it (as for torch's ctc_loss)."""
    log_probs = torch.randn(4, 2, 5, dtype=torch.float64).log_softmax(-1)
    targets, il, tl = torch.tensor([[1, 2], [3, 0]]), torch.tensor([4, 3]), torch.tensor([2, 1])
    ref = torch_ll(log_probs, targets, il, tl)
    log_probs[3, 1] = float("inf")
    for method in METHODS:
        torch.testing.assert_close(ctc_log_likelihood(log_probs, targets, il, tl, method=method), ref, rtol=0, atol=1e-12)
    assert ctc_greedy_decode(log_probs, il)[1] == ctc_greedy_decode(log_probs[:3], il.clamp(max=3))[1]


@pytest.mark.parametrize("zero_infinity", [False, True])
def test_native_and_enum_gradients_agree_on_impossible_targets(zero_infinity):
    """Row 0 is too long for its input, row 1 is blocked by zero probabilities: both methods give
    -inf (or 0 with zero_infinity) and a zero gradient there, and torch's zero_infinity gradient elsewhere."""
    g = torch.Generator().manual_seed(13)
    logits = torch.randn(5, 3, 4, generator=g, dtype=torch.float64)
    logits[:, 1, 2] = float("-inf")  # label 2 impossible in sequence 1
    targets, il, tl = torch.tensor([[1, 1, 1], [2, 1, 0], [3, 1, 2]]), torch.tensor([4, 5, 5]), torch.tensor([3, 2, 3])
    logits.requires_grad_()
    ref = torch_ll(logits.log_softmax(-1), targets, il, tl, zero_infinity=True)
    (ref_grad,) = torch.autograd.grad(ref.sum(), logits)
    assert torch.isfinite(ref_grad).all() and (ref_grad[:, :2] == 0).all()
    for method in METHODS:
        ours = ctc_log_likelihood(logits.log_softmax(-1), targets, il, tl, method=method, zero_infinity=zero_infinity)
        assert ours[:2].tolist() == ([0.0, 0.0] if zero_infinity else [float("-inf")] * 2)
        torch.testing.assert_close(ours[2], ref[2], rtol=0, atol=1e-12)
        (grad,) = torch.autograd.grad(ours.sum(), logits)
        torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-12)
    # with respect to log_probs themselves (no log-softmax to hide an extra exp(log_probs) term)
    log_probs = logits.detach().log_softmax(-1).requires_grad_()
    native, enum = (
        torch.autograd.grad(ctc_log_likelihood(log_probs, targets, il, tl, method=m, zero_infinity=zero_infinity).sum(), log_probs)[0]
        for m in METHODS
    )
    assert (native[:, :2] == 0).all()
    torch.testing.assert_close(native, enum, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name, t", [("width0", 3), ("width1", 3), ("width2", 4), ("mixed", 5)])
def test_short_targets_in_the_enumerated_program(name, t):
    logits, targets, il, tl = short_case(name, t, seed=2)
    log_probs = logits.log_softmax(-1).requires_grad_()
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(ctc_alignment_model, lambda *a, **k: None, log_probs, targets, il, tl)
    torch.testing.assert_close(loss, -torch_ll(log_probs, targets, il, tl).sum(), rtol=0, atol=1e-10)
