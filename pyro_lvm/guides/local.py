"""Non-amortized guides: variational parameters per example, rows indexed by example id.

:class:`LocalGuide` holds a table of per-example parameters of any guide family
(rows indexed by example id) instead of computing them with an encoder: plain
stochastic variational inference, updated on minibatches. The model and guide are
then called with the example ids as an extra argument, e.g. ``model(x, index)``.
"""

from __future__ import annotations

from typing import Any

import torch
from pyro.nn import PyroModule

from pyro_lvm.guides.amortized import AmortizedGuide

__all__ = ["LocalGuide"]


class LocalGuide(PyroModule):
    """Per-example parameters of the family ``family``, one row per example id.

    :param family: the guide family whose :meth:`~pyro_lvm.guides.AmortizedGuide.distribution_from`
        turns parameter rows into ``q(z_n)``; it also names the latent site, observation
        argument and plate. It is kept outside this module's parameters, so a trained
        family's global parameters (flows) keep their names and are not trained here.
    :param params: initial parameter tables, each with ``num_examples`` rows (e.g. the
        family's :meth:`~pyro_lvm.guides.AmortizedGuide.local_params` of the data).
    :param index_arg: the model argument holding the example ids, a position (int) or a keyword
        (str), shape (N,) with values in ``[0, num_examples)``. When the call lacks it, the
        batch must be all examples in order (N == num_examples).
    """

    def __init__(self, family: AmortizedGuide, params: tuple[torch.Tensor, ...], index_arg: int | str = 1) -> None:
        super().__init__()
        if not params or any(p.dim() < 1 or p.shape[0] != params[0].shape[0] for p in params):
            raise ValueError(f"params must be tensors with equally many rows, got shapes {[tuple(p.shape) for p in params]}")
        self._family = (family,)
        self.num_examples = params[0].shape[0]
        self.index_arg = index_arg
        self.params = torch.nn.ParameterList(torch.nn.Parameter(p.detach().clone()) for p in params)

    @classmethod
    def initial(cls, family: AmortizedGuide, num_examples: int, init_scale: float = 0.1, **kwargs: Any) -> LocalGuide:
        """Rows at ``q(z_n) = N(0, init_scale^2 I)`` for a diagonal-Gaussian family (``loc``, ``raw_scale``)."""
        if not isinstance(num_examples, int) or num_examples < 1:
            raise ValueError(f"num_examples must be a positive integer, got {num_examples!r}")
        if not init_scale > 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale!r}")
        loc = torch.zeros(num_examples, family.latent_dim)
        raw_scale = torch.full_like(loc, init_scale).expm1().log()  # softplus^-1
        return cls(family, (loc, raw_scale), **kwargs)

    @property
    def family(self) -> AmortizedGuide:
        return self._family[0]

    @property
    def site(self) -> str:
        return self.family.site

    def index(self, args: tuple, kwargs: dict, num: int) -> torch.Tensor | None:
        """The example ids of this call, shape (N,), or None for 'all examples in order'."""
        if isinstance(self.index_arg, str):
            index = kwargs.get(self.index_arg)
        else:
            index = args[self.index_arg] if len(args) > self.index_arg else None
        if index is None:
            if num != self.num_examples:
                raise ValueError(
                    f"LocalGuide has {self.num_examples} rows; a batch of {num} examples needs their ids in "
                    f"argument {self.index_arg!r} (e.g. model(x, index))"
                )
            return None
        index = torch.as_tensor(index)
        if index.shape != (num,) or index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
            raise ValueError(f"argument {self.index_arg!r} must be integer example ids of shape ({num},), got "
                             f"{index.dtype} of shape {tuple(index.shape)}")
        if num and (int(index.min()) < 0 or int(index.max()) >= self.num_examples):
            raise ValueError(f"example ids must lie in [0, {self.num_examples}), got range "
                             f"[{int(index.min())}, {int(index.max())}]")
        return index

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        x = self.family.observed(args, kwargs)
        index = self.index(args, kwargs, x.shape[0])
        rows = tuple(self.params) if index is None else tuple(p[index.to(p.device)] for p in self.params)
        return self.family.sample_from(self.family.distribution_from(rows), x.shape[0])
