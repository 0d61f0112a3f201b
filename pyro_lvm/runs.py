"""What every example and benchmark script does around its model: seed, device, output folder, metrics."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import pyro
import torch

__all__ = [
    "set_seed",
    "resolve_device",
    "device_name",
    "output_dir",
    "write_json",
    "positive_int",
    "nonnegative_int",
    "positive_float",
    "nonnegative_float",
]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy, torch (CPU and CUDA) and Pyro."""
    pyro.set_rng_seed(seed)


def resolve_device(name: str | None) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``None``/``"auto"`` (CUDA when available).

    Asking for CUDA on a machine without it is an error, not a silent CPU run.
    """
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for CUDA, but torch {torch.__version__} sees no CUDA device")
    return device


def device_name(device: torch.device) -> str:
    """A readable device name, e.g. ``"NVIDIA H100 80GB HBM3"`` or the CPU's model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"CPU: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"CPU ({os.cpu_count()} cores)"


def output_dir(path: str | os.PathLike) -> Path:
    """Create (if needed) and return the output folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _jsonable(value):
    if torch.is_tensor(value):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def write_json(obj: object, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON (tensors and NumPy scalars converted, NaN/inf as null), atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _number(kind: type, text: str, *, allow_zero: bool) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse ``type=``: an integer > 0 (``--epochs 0`` is an error at parse time, never "the default")."""
    return _number(int, text, allow_zero=False)


def nonnegative_int(text: str) -> int:
    """argparse ``type=``: an integer >= 0 (for counts where 0 means "none", e.g. warm-up steps)."""
    return _number(int, text, allow_zero=True)


def positive_float(text: str) -> float:
    """argparse ``type=``: a finite float > 0 (learning rates, tolerances, scales)."""
    return _number(float, text, allow_zero=False)


def nonnegative_float(text: str) -> float:
    """argparse ``type=``: a finite float >= 0."""
    return _number(float, text, allow_zero=True)
