"""Data parallelism on torch.distributed (pyro_lvm.infer.distributed): 2 CPU processes on gloo.

Each test starts its ranks with torch.multiprocessing ("spawn"), joins them with a timeout, kills
any rank still running and fails naming it, so a stuck rank never hangs the suite. References are
one process on the same data (plain ``train``, one-process EM, one-process evaluation).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from _spawn import run_ranks  # tests/ is on sys.path under pytest
from pyro.nn import PyroModule

from pyro_lvm.estimators import GaussianMixture
from pyro_lvm.guides import make_guide
from pyro_lvm.infer import importance_log_likelihood, train
from pyro_lvm.infer.distributed import RankFailed, evaluate_sharded

N, D, LATENT, BATCH = 24, 5, 2, 8


class Story(PyroModule):
    """z ~ N(0, I), x ~ N(W z + b, I): a decoder with a point (Delta) guide, so the loss has no noise."""

    def __init__(self) -> None:
        super().__init__()
        self.decoder = torch.nn.Linear(LATENT, D)

    def forward(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(LATENT), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), 1.0).to_event(1), obs=x)


def _data() -> torch.Tensor:
    return torch.randn(N, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 + 1


def _build(seed: int):
    pyro.clear_param_store()
    torch.manual_seed(seed)
    model = Story()
    return model, make_guide("delta", input_dim=D, latent_dim=LATENT, hidden_dims=(8,))


def _params(model, guide) -> dict:
    return {k: v.detach().clone() for m in (model, guide) for k, v in m.state_dict().items()}


def _train_on_ranks(rank: int, folder: Path) -> dict:
    """Every distributed training check of one launch (a spawn costs seconds)."""
    train_module = sys.modules["pyro_lvm.infer.train"]  # the module (pyro_lvm.infer.train is the function)
    x = _data()
    out = {}
    model, guide = _build(seed=rank)  # other starting values on rank 1: rank 0's are broadcast
    history = train(model, guide, x, steps=20, batch_size=BATCH, shuffle=False, val_data=x[:7], progress=False)
    out["order"], out["val"] = history.step_loss, [r["val_loss"] for r in history.epochs]
    out["order_params"] = _params(model, guide)

    writes = []
    save = train_module.atomic_save
    train_module.atomic_save = lambda obj, path: (writes.append(path), save(obj, path))[1]
    model, guide = _build(seed=rank)
    out["whole"] = train(model, guide, x, steps=20, batch_size=BATCH, progress=False).step_loss
    out["whole_params"] = _params(model, guide)
    model, guide = _build(seed=rank)
    train(model, guide, x, steps=9, batch_size=BATCH, checkpoint=folder / "run.pt", progress=False)  # 3 epochs
    model, guide = _build(seed=7 + rank)  # a new job: other starting values, the checkpoint's win
    out["resumed"] = train(model, guide, x, steps=20, batch_size=BATCH, checkpoint=folder / "run.pt", resume=True,
                           progress=False).step_loss
    out["resumed_params"] = _params(model, guide)
    out["writes"] = len(writes)

    errors = {}
    for name, kwargs in {
        "indivisible": {"data": x, "batch_size": 5},
        "too_few": {"data": x[:1], "batch_size": 2},
        "world_size": {"data": x, "batch_size": BATCH, "checkpoint": folder / "single.pt", "resume": True},
        "loader": {"data": torch.utils.data.DataLoader(x, batch_size=4), "batch_size": 4},
    }.items():
        model, guide = _build(seed=0)
        try:
            train(model, guide, steps=2, progress=False, **kwargs)
        except ValueError as e:
            errors[name] = str(e)
    out["errors"] = errors
    return out


def test_training_on_two_ranks_follows_one_process(tmp_path):
    torch.set_default_dtype(torch.float64)
    try:
        x = _data()
        model, guide = _build(seed=0)
        single = train(model, guide, x, steps=5, batch_size=BATCH, checkpoint=tmp_path / "single.pt", progress=False)
        model, guide = _build(seed=0)
        history = train(model, guide, x, steps=20, batch_size=BATCH, shuffle=False, val_data=x[:7], progress=False)
        reference, reference_val = history.step_loss, [r["val_loss"] for r in history.epochs]
        reference_params = _params(model, guide)
    finally:
        torch.set_default_dtype(torch.float32)
    assert len(single.step_loss) == 5
    results = run_ranks(_train_on_ranks, tmp_path)
    for rank, out in enumerate(results):
        # per-rank batch BATCH / 2 == one process with batch BATCH, in the same order of the data
        torch.testing.assert_close(torch.tensor(out["order"]), torch.tensor(reference), rtol=0, atol=1e-10)
        torch.testing.assert_close(torch.tensor(out["val"]), torch.tensor(reference_val), rtol=0, atol=1e-10)
        for k, v in reference_params.items():
            torch.testing.assert_close(out["order_params"][k], v, rtol=0, atol=1e-10, msg=f"rank {rank}: {k}")
        # a job killed after 9 steps (3 epochs) and resumed on two ranks continues the uninterrupted run
        assert out["resumed"] == out["whole"]
        for k, v in out["whole_params"].items():
            torch.testing.assert_close(out["resumed_params"][k], v, rtol=0, atol=0)
        assert "batch_size=5 is not divisible by the world size 2" in out["errors"]["indivisible"]
        assert "1 examples but the world size is 2" in out["errors"]["too_few"]
        assert "world_size=2 here" in out["errors"]["world_size"] and "world_size=1" in out["errors"]["world_size"]
        assert "DistributedSampler" in out["errors"]["loader"]
    assert results[0]["writes"] > 0 and results[1]["writes"] == 0  # rank 0 alone writes checkpoints
    assert results[0]["whole"] == results[1]["whole"]


def test_sharded_batches_cover_every_example_once_per_epoch():
    from pyro_lvm.infer.distributed import ShardedBatches

    ids = torch.arange(11)
    epochs = []
    for epoch in range(3):
        seen = []
        for rank in range(3):
            shard = ShardedBatches((ids,), batch_size=6, shuffle=True, rank=rank, world_size=3, seed=5)
            shard.set_epoch(epoch)
            seen.append([int(i) for (b,) in shard for i in b if not shard.empty])
        order = ShardedBatches((ids,), 6, True, 0, 3, 5)
        order.set_epoch(epoch)
        steps = order.order().split(6)
        # step k over all ranks: the examples of one process's step k
        for k, step in enumerate(steps):
            got = set()
            for rank in range(3):
                shard = ShardedBatches((ids,), 6, True, rank, 3, 5)
                shard.set_epoch(epoch)
                batch = list(shard)[k][0]
                got |= set() if shard.empty else set(batch.tolist())
            assert got == set(step.tolist())
        assert sorted(sum(seen, [])) == list(range(11))
        epochs.append(order.order().tolist())
    assert epochs[0] != epochs[1] != epochs[2]


def _evaluate_and_fit_on_ranks(rank: int, folder: Path, x: torch.Tensor, blobs: torch.Tensor, state: dict) -> dict:
    model, guide = _build(seed=0)
    guide = make_guide("normal", input_dim=D, latent_dim=LATENT, hidden_dims=(8,))
    guide.load_state_dict(state)
    out = {"ll": evaluate_sharded(importance_log_likelihood, model, guide, x, seed=3, block_size=5, num_samples=20)}
    shard = blobs[: len(blobs) // 2] if rank == 0 else blobs[len(blobs) // 2 :]
    for covariance_type in ("full", "diag"):
        gm = GaussianMixture(3, covariance_type, tol=1e-8, random_state=0, sharded=True).fit(shard)
        out[covariance_type] = (gm.weights_, gm.means_, gm.covariances_, gm.n_iter_, gm.lower_bound_)
    return out


def test_sharded_evaluation_and_em_equal_one_process(tmp_path):
    torch.set_default_dtype(torch.float64)
    try:
        x = _data()
        model, _ = _build(seed=0)
        guide = make_guide("normal", input_dim=D, latent_dim=LATENT, hidden_dims=(8,))
        state = guide.state_dict()
        single_ll = evaluate_sharded(importance_log_likelihood, model, guide, x, seed=3, block_size=5, num_samples=20)
        with torch.random.fork_rng():  # the first block: the evaluator itself under its seed
            torch.manual_seed(3)
            first = importance_log_likelihood(model, guide, x[:5], num_samples=20)
        g = torch.Generator().manual_seed(0)
        centres = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 5.0]], dtype=torch.float64)
        blobs = (centres[torch.arange(301) % 3] + torch.randn(301, 2, generator=g, dtype=torch.float64)).numpy()
        single = {}
        for covariance_type in ("full", "diag"):
            gm = GaussianMixture(3, covariance_type, tol=1e-8, random_state=0).fit(blobs)
            single[covariance_type] = (gm.weights_, gm.means_, gm.covariances_, gm.n_iter_, gm.lower_bound_)
    finally:
        torch.set_default_dtype(torch.float32)
    torch.testing.assert_close(single_ll[:5], first, rtol=0, atol=1e-12)
    results = run_ranks(_evaluate_and_fit_on_ranks, tmp_path, x, torch.as_tensor(blobs), state)
    for out in results:
        torch.testing.assert_close(out["ll"], single_ll, rtol=0, atol=1e-10)
        for covariance_type, (w, m, c, n_iter, bound) in single.items():
            sw, sm, sc, s_iter, s_bound = out[covariance_type]
            assert s_iter == n_iter > 2
            for got, want in ((sw, w), (sm, m), (sc, c)):
                torch.testing.assert_close(torch.as_tensor(got), torch.as_tensor(want), rtol=0, atol=1e-10)
            assert abs(s_bound - bound) < 1e-10


def _one_rank_raises(rank: int, folder: Path) -> None:
    model, guide = _build(seed=0)
    calls = []

    def story(x):
        calls.append(1)
        if rank == 1 and len(calls) > 3:
            raise RuntimeError("rank 1's data is broken")
        return model(x)

    train(story, guide, _data(), steps=20, batch_size=BATCH, progress=False)


def test_a_rank_that_raises_stops_the_others_naming_it(tmp_path):
    started = time.monotonic()
    errors = run_ranks(_one_rank_raises, tmp_path, allow_failure=True, timeout=60)
    assert time.monotonic() - started < 60
    assert "rank 1's data is broken" in errors[1]
    assert RankFailed.__name__ in errors[0] and "rank(s) [1] of 2 raised during a training step" in errors[0]


def _one_rank_grows_a_parameter(rank: int, folder: Path) -> None:
    model, guide = _build(seed=0)
    calls = []

    def story(x):
        calls.append(1)
        shift = pyro.param("shift", torch.zeros((), dtype=x.dtype)) if rank == 1 and len(calls) > 3 else 0.0
        return model(x + shift)

    train(story, guide, _data(), steps=20, batch_size=BATCH, progress=False)


def test_ranks_whose_gradients_differ_in_size_stop_with_an_error_not_a_hang(tmp_path):
    errors = run_ranks(_one_rank_grows_a_parameter, tmp_path, allow_failure=True, timeout=60)
    for rank in (0, 1):
        assert "the ranks hold gradients of different sizes during a training step" in errors[rank], errors[rank]
    assert "elements per rank: [" in errors[0]


def test_distributed_true_without_a_process_group_is_refused():
    model, guide = _build(seed=0)
    with pytest.raises(ValueError, match="no torch.distributed process group is set up"):
        train(model, guide, torch.randn(4, D), steps=1, distributed=True, progress=False)
