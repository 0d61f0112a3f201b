"""Small network building blocks shared by models and guides."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP", "activation", "check_widths", "flatten_examples"]

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "softplus": nn.Softplus, "gelu": nn.GELU, "silu": nn.SiLU}


def activation(name: str) -> nn.Module:
    """An activation module by name (``tanh``, ``relu``, ``elu``, ``softplus``, ``gelu``, ``silu``)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}") from None


def check_widths(widths: Sequence[int], name: str = "hidden_dims") -> tuple[int, ...]:
    """``widths`` as a tuple, with an error naming ``name`` unless every width is a positive int.

    An empty sequence is fine (no hidden layer). A zero width is not: a layer of width 0 cuts the
    input off, so the network's output is its last bias whatever the input.
    """
    if not isinstance(widths, Sequence) or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise ValueError(f"{name} must be positive ints (layer widths, e.g. (200, 200); () for none), got {widths!r}")
    return tuple(widths)


class MLP(nn.Sequential):
    """``in_dim -> hidden_dims... -> out_dim`` with an activation after every hidden layer.

    Works on any leading batch shape: input (..., in_dim), output (..., out_dim).

    :raises ValueError: when a hidden width is not a positive int (see :func:`check_widths`).
    """

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], out_dim: int, act: str = "tanh") -> None:
        dims = [in_dim, *check_widths(hidden_dims)]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), activation(act)]
        layers.append(nn.Linear(dims[-1], out_dim))
        super().__init__(*layers)

    @property
    def output_layer(self) -> nn.Linear:
        return self[-1]


def flatten_examples(x: torch.Tensor, dim: int, name: str = "x") -> torch.Tensor:
    """Reshape (N, ...) to (N, dim), with an error naming ``name`` when the sizes disagree or N is 0."""
    if x.dim() >= 1 and x.shape[0] == 0:
        raise ValueError(f"{name} has no examples (shape {tuple(x.shape)}); expected at least one example")
    if x.dim() < 1 or x[0].numel() != dim:
        raise ValueError(f"{name} must have shape (N, {dim}) or (N, ...) with {dim} values per example, got {tuple(x.shape)}")
    return x.reshape(x.shape[0], dim)
