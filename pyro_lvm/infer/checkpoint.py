"""Atomic checkpoints of a training run: modules, param store, optimizer and RNG states.

A checkpoint is written to a temporary file beside the target (``.NAME.tmp-PID``), flushed
to disk and then renamed over the target, so a crash never leaves a half-written file. A
process killed while saving leaves its temporary file behind; the next save of the same
checkpoint deletes the temporary files of processes that no longer run. Those of live
processes are left alone: two runs that write the same checkpoint at once each keep their
own file until it is renamed (the last rename wins, as with any two writers of one file).
A PID is only meaningful on this machine, and a stale file whose PID was reused by an
unrelated live process stays until that process ends.
"""

from __future__ import annotations

import glob
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pyro
import torch

__all__ = [
    "atomic_save",
    "check_writable",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
    "param_store_state",
    "restore_param_store",
]


def _temporary(path: Path, pid: int | str) -> Path:
    """The temporary file a process ``pid`` writes ``path`` through."""
    return path.with_name(f".{path.name}.tmp-{pid}")


def _process_runs(pid: int) -> bool:
    """Whether a process with this PID runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Delete ``path``'s temporary files left by processes that no longer run (killed mid-save)."""
    prefix = _temporary(path, "").name
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*"):
        pid = tmp.name[len(prefix) :]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_runs(int(pid)):
            tmp.unlink(missing_ok=True)


def check_writable(path: str | os.PathLike) -> None:
    """Make sure a checkpoint can be saved at ``path`` (its folder exists or can be made, and a
    temporary file can be created in it) before any training step runs.

    :raises ValueError: naming ``path`` and the operating system's reason.
    """
    path = Path(path)
    tmp = _temporary(path, os.getpid())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb"):
            pass
        tmp.unlink()
    except OSError as e:
        raise ValueError(f"checkpoint={os.fspath(path)!r} cannot be written: {e}") from e


def atomic_save(obj: object, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through a temporary file and ``os.replace``; first deletes the
    temporary files of ``path`` that killed processes left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = _temporary(path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | os.PathLike, keys: tuple[str, ...], map_location: str | torch.device | None = None) -> dict:
    """Read a :func:`~pyro_lvm.infer.train` checkpoint.

    :param keys: the entries the caller needs.
    :raises FileNotFoundError: when ``path`` does not exist.
    :raises ValueError: naming ``path`` when it is not a readable checkpoint (truncated, empty,
        not written by ``torch.save``) or lacks one of ``keys``.
    """
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as e:
        raise ValueError(
            f"checkpoint {os.fspath(path)!r} cannot be read (truncated, empty or not written by torch.save): "
            f"{type(e).__name__}: {e}"
        ) from e
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {os.fspath(path)!r} holds a {type(state).__name__}, not a training checkpoint (a dict)")
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(
            f"checkpoint {os.fspath(path)!r} lacks {missing} (it has {sorted(map(str, state))}): "
            "it was not written by pyro_lvm.infer.train"
        )
    return state


def capture_rng_state() -> dict:
    """Every random number generator a training step may touch."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def param_store_state(modules: list[torch.nn.Module]) -> dict:
    """The param store's entries that are not parameters of ``modules`` (those go in state_dicts)."""
    owned = {id(p) for m in modules for p in m.parameters()}
    state = pyro.get_param_store().get_state()
    keep = {name for name, value in state["params"].items() if id(value) not in owned}
    return {
        "params": {n: state["params"][n].detach().clone() for n in keep},
        "constraints": {n: state["constraints"][n] for n in keep if n in state["constraints"]},
    }


def restore_param_store(state: dict) -> None:
    """Clear the param store and put back the saved non-module entries.

    Module parameters are re-registered from the modules themselves on first use, so
    the param store and the modules share tensors again (as the optimizer needs).
    """
    store = pyro.get_param_store()
    store.clear()
    params = {n: v.detach().clone().requires_grad_(v.requires_grad or v.is_floating_point()) for n, v in state["params"].items()}
    store.set_state({"params": params, "constraints": state["constraints"]})
