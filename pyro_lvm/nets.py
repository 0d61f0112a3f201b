"""Small network building blocks shared by models and guides."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["MLP", "activation", "flatten_examples"]

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "softplus": nn.Softplus, "gelu": nn.GELU, "silu": nn.SiLU}


def activation(name: str) -> nn.Module:
    """An activation module by name (``tanh``, ``relu``, ``elu``, ``softplus``, ``gelu``, ``silu``)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}") from None


class MLP(nn.Sequential):
    """``in_dim -> hidden_dims... -> out_dim`` with an activation after every hidden layer.

    Works on any leading batch shape: input (..., in_dim), output (..., out_dim).
    """

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], out_dim: int, act: str = "tanh") -> None:
        dims = [in_dim, *hidden_dims]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), activation(act)]
        layers.append(nn.Linear(dims[-1], out_dim))
        super().__init__(*layers)

    @property
    def output_layer(self) -> nn.Linear:
        return self[-1]


def flatten_examples(x: torch.Tensor, dim: int, name: str = "x") -> torch.Tensor:
    """Reshape (N, ...) to (N, dim), with an error naming ``name`` when the sizes disagree."""
    if x.dim() < 1 or x[0].numel() != dim:
        raise ValueError(f"{name} must have shape (N, {dim}) or (N, ...) with {dim} values per example, got {tuple(x.shape)}")
    return x.reshape(x.shape[0], dim)
