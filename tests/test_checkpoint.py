"""Checkpoints that cannot be read, written or resumed say which file and what is wrong."""

import os
import subprocess
import sys

import pyro
import pyro.distributions as dist
import pyro.optim
import pytest
import torch

from pyro_lvm.infer import checkpoint as checkpoint_module
from pyro_lvm.infer import load_weights, train

X = torch.linspace(-1.0, 3.0, 16)
calls = []


def model(x):
    calls.append(len(x))
    loc = pyro.param("loc", torch.tensor(0.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(loc, 1.0), obs=x)


def guide(x):
    pass


def fit(path, steps=4, resume=False, optimizer=None, **kwargs):
    kwargs = {"batch_size": 8, **kwargs}
    return train(model, guide, X, steps=steps, checkpoint=path, resume=resume, optimizer=optimizer, progress=False, **kwargs)


def written(tmp_path):
    path = tmp_path / "run.pt"
    fit(path)
    return path


def truncated(tmp_path):  # torch.load: OSError [Errno 22] Invalid argument
    path = written(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def truncated_in_the_header(tmp_path):  # torch.load: RuntimeError, failed reading zip archive
    path = written(tmp_path)
    path.write_bytes(path.read_bytes()[:300])
    return path


def empty(tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(b"")
    return path


def random_bytes(tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(torch.randint(0, 256, (1000,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).numpy().tobytes())
    return path


def other_dict(tmp_path):
    path = tmp_path / "run.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (truncated, r"cannot be read .*OSError: \[Errno 22\]"),
        (truncated_in_the_header, "cannot be read .*RuntimeError: PytorchStreamReader"),
        (empty, "cannot be read .*EOFError"),
        (random_bytes, "cannot be read .*UnpicklingError"),
        (other_dict, r"lacks \['modules', 'param_store', 'history'.*it has \['weights'\]"),
    ],
)
@pytest.mark.parametrize("use", ["resume", "load_weights"])
def test_an_unreadable_checkpoint_is_named(tmp_path, make, message, use):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=rf"checkpoint '{path}' {message}"):
        fit(path, resume=True) if use == "resume" else load_weights(path, model, guide)


@pytest.mark.parametrize(
    "first, then, message",
    [
        ("pyro", "torch", "holds the state of a pyro.optim optimizer, but this run has a torch.optim optimizer"),
        ("torch", "pyro", "holds the state of a torch.optim optimizer, but this run has a pyro.optim optimizer"),
    ],
)
def test_resuming_with_another_kind_of_optimizer_is_named(tmp_path, first, then, message):
    def optimizer(kind):
        if kind == "pyro":
            return pyro.optim.Adam({"lr": 0.1})
        return torch.optim.Adam([pyro.param("loc", torch.tensor(0.0)).unconstrained()], lr=0.1)

    path = tmp_path / "run.pt"
    fit(path, optimizer=optimizer(first))
    pyro.clear_param_store()
    with pytest.raises(ValueError, match=f"checkpoint '{path}' {message}"):
        fit(path, steps=8, resume=True, optimizer=optimizer(then))


def test_an_unwritable_checkpoint_fails_before_the_first_step(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    path = tmp_path / "a_file" / "run.pt"
    calls.clear()
    with pytest.raises(ValueError, match=f"checkpoint='{path}' cannot be written"):
        fit(path)
    assert calls == []


def test_resuming_with_another_batch_size_or_shuffle_is_named(tmp_path):
    path = written(tmp_path)
    with pytest.raises(ValueError, match=f"batch_size=4 here, but checkpoint '{path}' was written with batch_size=8"):
        fit(path, steps=8, resume=True, batch_size=4)
    with pytest.raises(ValueError, match="shuffle=False here, but .* was written with shuffle=True"):
        fit(path, steps=8, resume=True, shuffle=False)
    assert len(fit(path, steps=8, resume=True).step_loss) == 8


def test_a_checkpoint_without_the_data_order_still_resumes(tmp_path):
    path = written(tmp_path)
    state = torch.load(path, weights_only=False)
    del state["data_order"]  # as written before the data order was recorded
    torch.save(state, path)
    assert len(fit(path, steps=8, resume=True).step_loss) == 4 + 4


def test_a_save_removes_the_temporary_files_of_killed_saves_only(tmp_path):
    path = tmp_path / "run.pt"
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its PID no longer runs, like a process killed while saving
    stale = tmp_path / f".run.pt.tmp-{finished.pid}"
    live = tmp_path / f".run.pt.tmp-{os.getppid()}"  # a concurrent writer that still runs
    other = tmp_path / f".other.pt.tmp-{finished.pid}"  # another checkpoint's
    for f in (stale, live, other):
        f.write_bytes(b"half a checkpoint")
    checkpoint_module.atomic_save({"a": 1}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run.pt", live.name, other.name])
    assert torch.load(path) == {"a": 1}
