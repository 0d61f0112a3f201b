"""Attention as a latent alignment: exact sums against brute-force enumeration of every alignment,
HardEM against the exact posterior's argmax, the ELBO at the exact posterior, beam search against
greedy decoding and exhaustive search, hard EM warm-started by exact epochs, bad input, and
examples/attention.py --quick."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from pyro_lvm.evaluation.inflection import prepare_inflection, run_inflection, trim_words
from pyro_lvm.infer import HardEM
from pyro_lvm.models import HardAttentionInflector, MonotonicAttentionInflector, SoftAttentionInflector, VariationalAttentionGuide
from pyro_lvm.ops.beam import beam_search

REPO = Path(__file__).resolve().parents[1]


def _words():
    """Three words: sources of 3, 2 and 3 symbols, outputs of 3, 1 and 2 steps (<eos> = 0 last)."""
    src, src_len = torch.tensor([[2, 3, 4], [3, 2, 0], [4, 4, 2]]), torch.tensor([3, 2, 3])
    tgt, tgt_len = torch.tensor([[2, 1, 0], [0, 0, 0], [3, 0, 0]]), torch.tensor([3, 1, 2])
    return src, src_len, tgt, tgt_len


def _model(cls, seed=0, **kwargs):
    torch.manual_seed(seed)
    return cls(5, 4, embed=3, hidden=4, **{"max_output_length": 4, **kwargs}).double()


def _brute_force(model, words, monotonic: bool):
    """log p(y | x) per word as a logsumexp over every (monotone) alignment, and each step's posterior marginals."""
    src, src_len, tgt, tgt_len = words
    enc, mask = model.nets.encode(src, src_len)
    h = model.nets.teacher_forced(tgt)
    scores = torch.einsum("nth,nsh->nts", h, model.nets.score(enc))
    emit = model.nets.emissions(h, enc)
    totals, marginals = [], []
    for n in range(len(src)):
        s_n, t_n = int(src_len[n]), int(tgt_len[n])
        terms, paths = [], []
        for path in itertools.product(range(s_n), repeat=t_n):
            if monotonic and any(b < a for a, b in zip(path, path[1:])):
                continue
            weight, before = 0.0, 0
            for t, j in enumerate(path):
                allowed = scores[n, t, before if monotonic else 0 : s_n]
                weight = weight + scores[n, t, j] - allowed.logsumexp(0) + emit[n, t, j, tgt[n, t]]
                before = j
            terms.append(weight)
            paths.append(path)
        terms = torch.stack(terms)
        post = (terms - terms.logsumexp(0)).exp()
        marginal = torch.zeros(t_n, s_n, dtype=post.dtype)
        for p, path in zip(post, paths):
            marginal[range(t_n), list(path)] += p.detach()
        totals.append(terms.logsumexp(0))
        marginals.append((marginal, paths[int(terms.argmax())]))
    return torch.stack(totals), marginals


def test_enumerated_marginal_equals_a_logsumexp_over_every_alignment():
    model, words = _model(HardAttentionInflector), _words()
    loss = TraceEnum_ELBO(max_plate_nesting=2).differentiable_loss(model.model, model.guide, *words)
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params)
    expected, marginals = _brute_force(model, words, monotonic=False)
    expected_grads = torch.autograd.grad(-expected.sum(), params)
    torch.testing.assert_close(loss, -expected.sum(), rtol=1e-10, atol=1e-10)
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(model.log_likelihood(*words), expected, rtol=1e-10, atol=1e-10)
    posterior = model.posterior(*words).probs
    for n, (marginal, _) in enumerate(marginals):
        torch.testing.assert_close(posterior[n, : marginal.size(0), : marginal.size(1)], marginal, rtol=1e-8, atol=1e-10)


def test_monotonic_chain_equals_brute_force_over_monotone_alignments():
    model, words = _model(MonotonicAttentionInflector, seed=1), _words()
    expected, marginals = _brute_force(model, words, monotonic=True)
    got = model.log_likelihood(*words)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    params = list(model.parameters())
    for g, e in zip(torch.autograd.grad(got.sum(), params), torch.autograd.grad(expected.sum(), params)):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-10)
    posterior, best = model.posterior(*words).probs, model.map_latents(*words)
    for n, (marginal, path) in enumerate(marginals):
        t, s = marginal.shape
        torch.testing.assert_close(posterior[n, :t, :s], marginal, rtol=1e-8, atol=1e-10)
        assert best[n, :t].tolist() == list(path)


def test_hard_em_alignment_is_the_argmax_of_the_exact_posterior():
    model, words = _model(HardAttentionInflector, seed=2), _words()
    trace = HardEM(max_plate_nesting=2).map_trace(model.model, model.guide, *words)
    steps = torch.arange(3) < words[3].unsqueeze(-1)
    argmax = model.posterior(*words).probs.argmax(-1)
    assert torch.equal(trace.nodes["a"]["value"][steps], argmax[steps])
    assert torch.equal(model.map_latents(*words), argmax)


def test_variational_elbo_equals_log_likelihood_at_the_exact_posterior():
    model, words = _model(HardAttentionInflector, seed=3), _words()
    guide = VariationalAttentionGuide(5, 4, embed=3, hidden=4).double()
    elbo = TraceEnum_ELBO(max_plate_nesting=2)
    nll = -float(model.log_likelihood(*words).sum().detach())
    assert elbo.loss(model.model, guide, *words) > nll + 1e-6  # a random q is worse
    guide.logits = lambda *w: model.posterior(*w).logits  # q(a_t | x, y) = p(a_t | x, y)
    assert elbo.loss(model.model, guide, *words) == pytest.approx(nll, rel=1e-10, abs=1e-10)


def _greedy(model, src, src_len):
    """Greedy decoding by hand: the most probable next symbol until <eos>."""
    state, tokens, outputs = model.start(src, src_len), torch.full((len(src),), model.target_size), []
    for _ in range(model.max_output_length):
        log_probs, state = model.step(state, tokens)
        if len(outputs) == model.max_output_length - 1:
            log_probs = torch.where(torch.arange(log_probs.size(-1)) == 0, log_probs, -torch.inf)
        tokens = torch.where(torch.tensor([0 in o for o in zip(*outputs)] if outputs else [False] * len(src)), 0, log_probs.argmax(-1))
        outputs.append(tokens)
    return torch.stack(outputs, -1)


@pytest.mark.parametrize("cls", [HardAttentionInflector, MonotonicAttentionInflector, SoftAttentionInflector])
def test_beam_search_is_greedy_at_width_one_and_exhaustive_when_wide(cls):
    model = _model(cls, seed=4, max_output_length=3).eval()
    src, src_len = _words()[:2]
    greedy, _ = model.predict(src, src_len, beam_width=1)
    assert torch.equal(greedy, _greedy(model, src, src_len))
    # every output: up to 2 symbols from {1, 2, 3} then <eos> (1 + 3 + 9 = 13 outputs)
    outputs = [list(p) + [0] * (3 - len(p)) for k in range(3) for p in itertools.product((1, 2, 3), repeat=k)]
    lengths = torch.tensor([sum(1 for _ in itertools.takewhile(lambda v: v != 0, o)) + 1 for o in outputs])
    for n in range(len(src)):
        rows = len(outputs)
        scores = model.log_likelihood(src[n].repeat(rows, 1), src_len[n].repeat(rows), torch.tensor(outputs), lengths).detach()
        best, score = model.predict(src[n : n + 1], src_len[n : n + 1], beam_width=16)
        assert best[0].tolist() == outputs[int(scores.argmax())]
        torch.testing.assert_close(score[0], scores.max(), rtol=1e-10, atol=1e-10)
        all_outputs, all_scores = beam_search(model.step, model.start(src[n : n + 1], src_len[n : n + 1]), 4, 0, 16, 3)
        torch.testing.assert_close(all_scores[0, :rows], scores.sort(descending=True).values, rtol=1e-10, atol=1e-10)


def test_samples_follow_the_story_shapes_and_end_in_eos():
    model = _model(MonotonicAttentionInflector, seed=5)
    src, src_len = _words()[:2]
    y, a = model.sample(4, src, src_len, return_latents=True)
    assert y.shape == a.shape == (4, 3, 4) and bool((y[..., -1] == 0).all())
    assert bool((a.diff(dim=-1)[y[..., 1:] != 0] >= 0).all())  # monotone while the output goes on


def test_bad_input_is_refused_clearly():
    model, (src, src_len, tgt, tgt_len) = _model(HardAttentionInflector), _words()
    with pytest.raises(ValueError, match="word 1 has an empty source string"):
        model.log_likelihood(src, torch.tensor([3, 0, 3]), tgt, tgt_len)
    with pytest.raises(ValueError, match="longer than the decoder's limit max_output_length=4"):
        model.log_likelihood(src, src_len, torch.zeros(3, 5, dtype=torch.long), torch.tensor([5, 1, 1]))
    with pytest.raises(ValueError, match="src must be an int64 tensor"):
        model.log_likelihood(src.float(), src_len, tgt, tgt_len)
    with pytest.raises(ValueError, match="target symbols in \\[0, 4\\)"):
        model.log_likelihood(src, src_len, tgt + 4, tgt_len)


TINY = dict(batch_size=24, embed=8, hidden=16, beam_width=2, train_limit=24, eval_limit=10, curve_words=5, progress=False)


def _run(data, kind, **kwargs):
    pyro.set_rng_seed(0)
    return run_inflection(data, kind, **{**TINY, **kwargs})


def test_hard_em_default_trains_as_before(shared_data):
    """hardem_warmup=0 (the default) is hard EM from the first step: the numbers of the code before the option."""
    data = prepare_inflection("english", "medium", shared_data)
    pyro.set_rng_seed(0)
    run = run_inflection(data, "hardem", epochs=2, batch_size=16, embed=8, hidden=16, beam_width=2, train_limit=48, eval_limit=20,
                         curve_words=10, progress=False)
    before = [55.80640411376953, 56.708412170410156, 65.89385986328125, 58.39286804199219, 61.7263298034668, 57.48255157470703]
    assert run["history"].step_loss == pytest.approx(before, rel=1e-5)
    assert run["metrics"]["nll"] == pytest.approx(43.6050537109375, rel=1e-5)
    assert [r["objective"] for r in run["history"].epochs] == ["HardEM", "HardEM"] and run["hardem_warmup"] == 0


def test_hard_em_warm_start_trains_exact_epochs_then_hard_em(shared_data):
    """k exact epochs (the exact run's losses, same seed) then HardEM, whose loss is -log p(y, a* | x) by hand:
    log p(y | x) + sum_t max_j log p(a_t = j | x, y), the a_t being independent given x and y."""
    data, k = prepare_inflection("english", "medium", shared_data), 2
    exact = _run(data, "exact", epochs=k)
    warm = _run(data, "hardem", epochs=k + 1, hardem_warmup=k)  # one batch per epoch: one step each
    history = warm["history"]
    assert history.step_loss[:k] == exact["history"].step_loss
    assert [r["objective"] for r in history.epochs] == ["TraceEnum_ELBO"] * k + ["HardEM"]
    assert [(r["epoch"], r["step"]) for r in history.epochs] == [(0, 1), (1, 2), (2, 3)]
    assert len(warm["curve"]) == k + 1 and warm["hardem_warmup"] == k
    model, batch = exact["model"], trim_words(tuple(t[:24] for t in data["tensors"]["train"]))
    with torch.no_grad():
        steps = torch.arange(batch[2].size(1)) < batch[3].unsqueeze(-1)
        best = model.posterior(*batch).probs.max(-1).values.log()
        by_hand = -(model.log_likelihood(*batch) + (best * steps).sum(-1)).mean()
    assert history.step_loss[k] == pytest.approx(float(by_hand), rel=1e-5)
    assert _run(data, "hardem", epochs=k, hardem_warmup=5)["history"].step_loss == exact["history"].step_loss  # all exact
    with pytest.raises(ValueError, match="hardem_warmup must be a non-negative integer"):
        run_inflection(data, "hardem", hardem_warmup=-1)


def test_quick_example_runs(tmp_path, shared_data):
    cmd = [sys.executable, str(REPO / "examples" / "attention.py"), "--quick", "--data-dir", str(shared_data), "--out", str(tmp_path),
           "--no-progress", "--model", "exact", "--language", "finnish"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    rows = json.loads((tmp_path / "metrics.json").read_text())["results"]
    assert [r["model"] for r in rows] == ["exact"]
    columns = {"language", "setting", "model", "accuracy", "levenshtein", "nll", "perplexity", "alignment_entropy", "train_seconds"}
    assert set(rows[0]) == columns
    assert (tmp_path / "alignments_exact.png").is_file() and (tmp_path / "accuracy_vs_time.png").is_file()
