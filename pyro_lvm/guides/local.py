"""Non-amortized guides: variational parameters per example, rows indexed by example id.

:class:`LocalSite` holds a table of a family's parameters, one row per example, instead of
computing them with an encoder: plain stochastic variational inference, updated on minibatches.
The rows of a call are picked by the example ids the model call carries, in the keyword
``index`` by default (``model(x, index=ids)``; with ``model=`` given to the guide, also by its
position in the model's signature). :class:`LocalGuide` is a guide of one such site.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from pyro_lvm.guides.guide import GuideCall, LatentGuide, SingleSiteGuide
from pyro_lvm.guides.heads import Head

__all__ = ["LocalGuide", "LocalSite"]


class LocalSite(nn.Module):
    """The latent site ``site`` with ``q(z_n) = head(table[n])``.

    :param site: the model's latent sample site; ``head`` the family.
    :param table: initial rows, name -> (num_examples, size) in the head's order (default
        :meth:`~pyro_lvm.guides.heads.Head.initial_params` with ``num_examples`` and ``init_scale``).
    :param index: the model argument holding the example ids, a name (default ``"index"``) or a
        position, shape (N,) with values in ``[0, num_examples)``. When the call lacks it, the batch
        must be all examples in order (N == num_examples).
    :param shared_head: the head belongs to another guide (a trained family's flows): kept outside
        this site's parameters, so it is neither renamed nor trained here.
    """

    def __init__(self, site: str, head: Head, num_examples: int | None = None, *, table: dict | Sequence | None = None,
                 index: str | int = "index", init_scale: float = 0.1, shared_head: bool = False) -> None:
        super().__init__()
        if table is None:
            if not isinstance(num_examples, int) or num_examples < 1:
                raise ValueError(f"num_examples must be a positive integer, got {num_examples!r}")
            if not init_scale > 0:
                raise ValueError(f"init_scale must be > 0, got {init_scale!r}")
            table = head.initial_params(num_examples, init_scale)
        rows = list(table.values()) if isinstance(table, dict) else list(table)
        if not rows or len(rows) != len(head.param_sizes()) or any(r.dim() < 1 or r.shape[0] != rows[0].shape[0] for r in rows):
            raise ValueError(f"params must be tensors with equally many rows, one per parameter {list(head.param_sizes())}, "
                             f"got shapes {[tuple(r.shape) for r in rows]}")
        self.name, self.inputs, self.index = site, (), index
        self.num_examples = rows[0].shape[0]
        self.table = nn.ParameterList(nn.Parameter(r.detach().clone()) for r in rows)
        if shared_head:
            self._head = (head,)
        else:
            self.own_head = head

    @property
    def head(self) -> Head:
        return self._head[0] if hasattr(self, "_head") else self.own_head

    def ids(self, call: GuideCall, num: int) -> torch.Tensor | None:
        """The example ids of this call, shape (N,), or None for 'all examples in order'."""
        index = call.argument(self.index, None)
        if index is None:
            if num != self.num_examples:
                raise ValueError(f"site {self.name!r} has {self.num_examples} rows; a batch of {num} examples needs "
                                 f"their ids in argument {self.index!r} (e.g. model(x, index=ids))")
            return None
        index = torch.as_tensor(index)
        if index.shape != (num,) or index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
            raise ValueError(f"argument {self.index!r} must be integer example ids of shape ({num},), got "
                             f"{index.dtype} of shape {tuple(index.shape)}")
        if num and (int(index.min()) < 0 or int(index.max()) >= self.num_examples):
            raise ValueError(f"example ids must lie in [0, {self.num_examples}), got range "
                             f"[{int(index.min())}, {int(index.max())}]")
        return index

    def params(self, inputs: tuple[torch.Tensor, ...], call: GuideCall) -> dict[str, torch.Tensor]:
        """This call's rows, name -> (N, size)."""
        index = self.ids(call, call.guide.plate_size(call.args, call.kwargs))
        rows = list(self.table) if index is None else [p[index.to(p.device)] for p in self.table]
        return dict(zip(self.head.param_sizes(), rows))


class LocalGuide(SingleSiteGuide):
    """Per-example parameters of the family of ``family``, one row per example id.

    :param family: a one-site guide (e.g. an :class:`~pyro_lvm.guides.AmortizedNormal`, or another
        :class:`LocalGuide`) whose head turns rows into ``q(z_n)``; it also names the latent site,
        the plate and the argument that counts the examples. Its head stays outside this guide's
        parameters, so a trained family's flows keep their names and are not trained here.
    :param params: the tables, each with ``num_examples`` rows, in the head's order.
    :param index_arg: the model argument holding the example ids (see :class:`LocalSite`);
        default position 1, as in ``model(x, ids)``.
    :param model: see :class:`~pyro_lvm.guides.guide.LatentGuide`.
    """

    def __init__(self, family: SingleSiteGuide, params: Sequence[torch.Tensor], index_arg: int | str = 1,
                 model: Callable | None = None) -> None:
        site = LocalSite(family.site, family.head, table=params, index=index_arg, shared_head=True)
        super().__init__([site], model=model, plate=family.plate, plate_dim=family.plate_dim, examples=family.examples)
        self._family = (getattr(family, "family", family),)

    @classmethod
    def initial(cls, family: SingleSiteGuide, num_examples: int, init_scale: float = 0.1, **kwargs: Any) -> LocalGuide:
        """Rows at the head's :meth:`~pyro_lvm.guides.heads.Head.initial_params` (``N(0, init_scale^2 I)``)."""
        if not isinstance(num_examples, int) or num_examples < 1:
            raise ValueError(f"num_examples must be a positive integer, got {num_examples!r}")
        if not init_scale > 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale!r}")
        return cls(family, tuple(family.head.initial_params(num_examples, init_scale).values()), **kwargs)

    @classmethod
    def of_head(cls, head: Head, num_examples: int, *, site: str = "z", index: str | int = "index",
                init_scale: float = 0.1, model: Callable | None = None, plate: str | None = "data",
                plate_dim: int = -1, examples: str | int = 0) -> LocalGuide:
        """A new table of ``head``'s parameters for ``num_examples`` examples (the ``local`` family); the head is this guide's own."""
        guide = LatentGuide.__new__(cls)
        LatentGuide.__init__(guide, [LocalSite(site, head, num_examples, index=index, init_scale=init_scale)],
                             model=model, plate=plate, plate_dim=plate_dim, examples=examples)
        guide._family = (guide,)
        return guide

    @property
    def family(self) -> SingleSiteGuide:
        """The one-site guide whose head the rows parameterize (this guide itself for a ``local`` family)."""
        return self._family[0]

    @property
    def params(self) -> nn.ParameterList:
        """The tables, each (num_examples, size), in the head's order."""
        return self.sites[0].table

    @property
    def num_examples(self) -> int:
        return self.sites[0].num_examples

    @property
    def index_arg(self) -> str | int:
        return self.sites[0].index
