"""pyro_lvm.lightning: Lightning's Trainer trains a story as pyro_lvm.infer.train does, on one
process and with strategy="ddp" on 2 CPU processes (gloo; ranks spawned by tests/_spawn.py).

References are plain ``train`` runs from the same starting values on the same data order, in
float64. The adapter differentiates the loss per example and ``train`` the sum, so both use SGD
with ``lr`` here equal to ``lr * B`` there (B examples per step): the same update up to rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pyro
import pytest
import torch
from _spawn import run_ranks  # tests/ is on sys.path under pytest
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from pyro_lvm.guides import make_guide
from pyro_lvm.infer import train
from pyro_lvm.models import DeepLatentGaussian

pytest.importorskip("lightning", reason='Lightning is an optional extra: pip install -e ".[lightning]"')
from lightning.pytorch import Callback, Trainer  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402

from pyro_lvm.lightning import SVILightningModule  # noqa: E402

N, D, LATENT, BATCH, LR, STEPS = 24, 6, 2, 8, 0.05, 9  # 3 epochs of 3 steps


class StepLosses(Callback):
    """The loss each training step returned (per example, on this rank)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def _data() -> torch.Tensor:
    return torch.randn(N, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 + 1


def _build(guide: str, seed: int, local: bool = True):
    """A small VAE and its guide, built with module-local parameters (for the adapter) or not (for train)."""
    pyro.clear_param_store()
    torch.manual_seed(seed)
    with pyro.settings.context(module_local_params=local):
        model = DeepLatentGaussian(D, LATENT, hidden_dims=(8,), likelihood="gaussian")
        return model, make_guide(guide, input_dim=D, latent_dim=LATENT, hidden_dims=(8,))


def _params(model, guide) -> dict:
    return {k: v.detach().clone() for m in (model, guide) for k, v in m.state_dict().items()}


def _reference(guide: str, **kwargs) -> tuple:
    """Plain ``train`` from seed 0: per-step losses per example, final parameters, and kwargs' history."""
    model, guide = _build(guide, seed=0, local=False)
    sgd = torch.optim.SGD([*model.parameters(), *guide.parameters()], lr=LR / BATCH)
    history = train(model, guide, _data(), steps=STEPS, batch_size=BATCH, shuffle=False, loss=pyro.infer.Trace_ELBO(), optimizer=sgd,
                    progress=False, **kwargs)
    return history, _params(model, guide)


def _trainer(**kwargs) -> Trainer:
    options = {"accelerator": "cpu", "max_steps": STEPS, "logger": False, "enable_checkpointing": False,
               "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0}
    return Trainer(**{**options, **kwargs})


def _loader(x: torch.Tensor, batch_size: int, sampler: Callable | None = None) -> DataLoader:
    # its own generator: iterating a DataLoader otherwise draws a seed from the global stream
    dataset = TensorDataset(x)
    return DataLoader(dataset, batch_size=batch_size, generator=torch.Generator(), sampler=sampler and sampler(dataset))


def test_one_process_follows_train_step_by_step(tmp_path):
    """A normal (sampling) guide: the same random draws too, since the warm-up leaves the streams alone."""
    torch.set_default_dtype(torch.float64)
    try:
        x = _data()
        history, reference = _reference("normal", val_data=x[:7])
        model, guide = _build("normal", seed=0)
        module = SVILightningModule(model, guide, example=x[:BATCH], optimizer=torch.optim.SGD, lr=LR)
        steps = StepLosses()
        trainer = _trainer(callbacks=[steps], logger=CSVLogger(tmp_path), log_every_n_steps=1,
                           enable_checkpointing=True, default_root_dir=tmp_path)
        trainer.fit(module, _loader(x, BATCH), _loader(x[:7], BATCH))
        # a fresh module (other starting values; the warm-up makes the same parameters) from Lightning's checkpoint
        (checkpoint,) = Path(trainer.checkpoint_callback.best_model_path or tmp_path).parent.glob("*.ckpt")
        restored = SVILightningModule(*_build("normal", seed=5), example=x[:BATCH])
        restored.load_state_dict(torch.load(checkpoint, weights_only=False)["state_dict"])
        logged = (Path(trainer.logger.log_dir) / "metrics.csv").read_text()
    finally:
        torch.set_default_dtype(torch.float32)
    torch.testing.assert_close(torch.tensor(steps.losses, dtype=torch.float64), torch.tensor(history.step_loss, dtype=torch.float64),
                               rtol=0, atol=1e-10)
    torch.testing.assert_close(float(trainer.callback_metrics["val_loss"]), history.epochs[-1]["val_loss"], rtol=0, atol=1e-10)
    for k, v in reference.items():
        torch.testing.assert_close(_params(model, guide)[k], v, rtol=0, atol=1e-10, msg=k)
        torch.testing.assert_close(_params(restored.model, restored.guide)[k], v, rtol=0, atol=0, msg=k)
    assert "train_loss" in logged and "val_loss" in logged


def _fit_on_ranks(rank: int, folder: Path, x: torch.Tensor) -> dict:
    os.environ["LOCAL_RANK"] = str(rank)  # Lightning joins the process group set up here, as under torchrun
    model, guide = _build("delta", seed=rank)  # other starting values on rank 1: DDP broadcasts rank 0's
    module = SVILightningModule(model, guide, example=x[: BATCH // 2], optimizer=torch.optim.SGD, lr=LR)
    steps = StepLosses()
    # in train's order (shuffle=False); Lightning's own DistributedSampler would shuffle, seeded with PL_GLOBAL_SEED
    ordered = partial(DistributedSampler, shuffle=False)
    _trainer(strategy="ddp", devices=2, callbacks=[steps]).fit(module, _loader(x, BATCH // 2, ordered))
    return {"losses": steps.losses, "params": _params(model, guide)}


def test_ddp_on_two_processes_follows_one_process(tmp_path):
    """A point (delta) guide, so the loss has no noise: 2 ranks with B/2 examples each (a
    DistributedSampler gives rank r the examples r, r + 2, ...) take the steps of one process with B."""
    torch.set_default_dtype(torch.float64)
    try:
        history, reference = _reference("delta")
    finally:
        torch.set_default_dtype(torch.float32)
    ranks = run_ranks(_fit_on_ranks, tmp_path, _data(), timeout=120)
    # each rank's loss is the mean over its half of the step's examples; their mean, one process's
    both = torch.tensor([out["losses"] for out in ranks], dtype=torch.float64).mean(0)
    torch.testing.assert_close(both, torch.tensor(history.step_loss, dtype=torch.float64), rtol=0, atol=1e-10)
    for rank, out in enumerate(ranks):
        for k, v in reference.items():
            torch.testing.assert_close(out["params"][k], v, rtol=0, atol=1e-10, msg=f"rank {rank}: {k}")


def test_bad_input_is_named():
    model, guide = _build("normal", seed=0)
    x = _data().float()
    with pytest.raises(ValueError, match="guide must be a torch.nn.Module"):
        SVILightningModule(model, lambda x: None, example=x)
    with pytest.raises(ValueError, match=r"PyroModules \['DeepLatentGaussian'\] were built with Pyro's global param store"):
        SVILightningModule(_build("normal", seed=0, local=False)[0], guide, example=x)
    with pytest.raises(ValueError, match="RenyiELBO.*has no differentiable_loss"):
        SVILightningModule(model, guide, example=x, loss=pyro.infer.RenyiELBO())
    with pytest.raises(TypeError, match="a batch must be a tensor or a tuple or list of tensors"):
        SVILightningModule(model, guide, example={"x": x})
    with pyro.settings.context(module_local_params=True):
        other_site = make_guide("normal", input_dim=D, latent_dim=LATENT, site="w")
    with pytest.raises(ValueError, match="the guide samples 'w'"):
        SVILightningModule(model, other_site, example=x)

    class GlobalParamGuide(torch.nn.Module):
        def forward(self, x):
            loc = pyro.param("loc", torch.zeros(LATENT))
            with pyro.plate("data", x.shape[0], dim=-1):
                pyro.sample("z", pyro.distributions.Normal(loc, 1.0).to_event(1))

    with pytest.raises(ValueError, match=r"\['loc'\] are pyro.param sites outside"):
        SVILightningModule(model, GlobalParamGuide(), example=x)


def test_importing_pyro_lvm_leaves_lightning_out():
    code = "import sys, pyro_lvm; assert not {'lightning', 'pyro_lvm.lightning'} & set(sys.modules), 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
