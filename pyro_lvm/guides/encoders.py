"""Encoders: networks from a guide's inputs to features; the default is an MLP over their flattened values.

An encoder is any :class:`torch.nn.Module` called with the inputs a guide site reads (model
arguments and earlier latents) as separate positional arguments, each of shape
``(..., N, *event)``: the leading dims ``...`` are whatever sample (particle) or enumeration dims
the call carries, ``N`` the examples. It returns features ``(..., N, F)``; the guide family adds
the layer from the features to its parameters. A network that only takes ``(N, *event)`` can be
evaluated in a loop over particles instead (see :mod:`pyro_lvm.infer.evaluate`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from pyro_lvm.nets import MLP, check_widths
from pyro_lvm.nets import activation as activation_module

__all__ = ["MLPEncoder", "flatten_event"]


def flatten_event(x: torch.Tensor, size: int, name: str = "input") -> torch.Tensor:
    """``x`` ``(..., N, *event)`` with ``prod(event) == size`` as ``(..., N, size)``.

    The event is the fewest trailing dims holding ``size`` values (none for a scalar per example),
    which reads latents with leading sample or enumeration dims: (S, N, d), or an enumerated one-hot
    label (K, 1, d). An image-like tensor of examples, (N, ...) with ``size`` values per example
    spread over several dims (e.g. (N, 1, 28, 28) for ``size=784``: its last dim alone is not the
    event), is read as N examples.

    :raises ValueError: when no block of trailing dims holds ``size`` values, naming ``name`` and the shape.
    """
    if x.dim() >= 3 and x.shape[-1] != size and math.prod(x.shape[1:]) == size:
        return x.reshape(x.shape[0], size)
    for k in (*range(1, x.dim() + 1), 0):  # k = 0: a scalar per example, (N,) -> (N, 1)
        if math.prod(x.shape[x.dim() - k :]) == size:
            return x.reshape(*x.shape[: x.dim() - k], size)
    raise ValueError(f"{name} must have shape (N, {size}) or (N, ...) with {size} values per example "
                     f"(with any leading sample dims: (..., N, {size})), got {tuple(x.shape)}")


class MLPEncoder(nn.Module):
    """Features of several inputs: each flattened to (..., N, size), broadcast, concatenated, then an MLP.

    ``concat -> [Linear -> activation] per width of hidden_dims``; with ``hidden_dims=()`` the
    features are the concatenated inputs themselves (the family's output layer is then a linear
    encoder). The hidden layers are :class:`pyro_lvm.nets.MLP` followed by the activation
    (``pyro.nn.DenseNN`` needs a hidden layer before its output, so it cannot build one or zero layers).

    :param input_dims: values per example of each input, in call order.
    :param hidden_dims: hidden layer widths (positive ints).
    :param activation: their activation, by name (see :func:`pyro_lvm.nets.activation`).
    :param names: how error messages name the inputs (default ``input 0``, ``input 1``, ...).
    """

    def __init__(self, input_dims: Sequence[int], hidden_dims: Sequence[int] = (200, 200), activation: str = "tanh",
                 names: Sequence[str] | None = None) -> None:
        super().__init__()
        hidden_dims = check_widths(hidden_dims)
        if not input_dims or not all(isinstance(d, int) and d > 0 for d in input_dims):
            raise ValueError(f"input_dims must be positive ints (values per example of each input), got {input_dims!r}")
        self.input_dims = tuple(input_dims)
        self.names = tuple(names) if names is not None else tuple(f"input {i}" for i in range(len(input_dims)))
        total = sum(input_dims)
        #: F, the size of the features.
        self.feature_dim = hidden_dims[-1] if hidden_dims else total
        self.hidden = (nn.Sequential(MLP(total, hidden_dims[:-1], hidden_dims[-1], activation), activation_module(activation))
                       if hidden_dims else nn.Identity())

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Features ``(..., N, F)`` of inputs ``(..., N, *event_i)``, leading dims broadcast."""
        if len(inputs) != len(self.input_dims):
            raise ValueError(f"MLPEncoder was built for {len(self.input_dims)} inputs, got {len(inputs)}")
        flat = [flatten_event(x, d, name) for x, d, name in zip(inputs, self.input_dims, self.names)]
        lead = torch.broadcast_shapes(*(f.shape[:-1] for f in flat))
        h = flat[0] if len(flat) == 1 else torch.cat([f.expand(*lead, f.shape[-1]) for f in flat], dim=-1)
        return self.hidden(h)

