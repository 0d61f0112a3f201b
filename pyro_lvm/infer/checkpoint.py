"""Atomic checkpoints of a training run: modules, param store, optimizer and RNG states.

A checkpoint is written to a temporary file beside the target, flushed to disk and
then renamed over the target, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pyro
import torch

__all__ = ["atomic_save", "capture_rng_state", "restore_rng_state", "param_store_state", "restore_param_store"]


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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
