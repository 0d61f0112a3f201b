"""Train any pyro_lvm story with PyTorch Lightning's ``Trainer``: its loggers, callbacks,
checkpointing and strategies, ``strategy="ddp"`` over several processes, GPUs or machines included.

An optional extra: ``pip install "pyro_lvm[lightning]"`` (``import pyro_lvm`` does not import it).

.. code-block:: python

    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader, TensorDataset
    from pyro_lvm.lightning import SVILightningModule

    pyro.settings.set(module_local_params=True)  # before building the model and guide
    model, guide = DeepLatentGaussian(784, 50), make_guide("normal", 784, 50)
    module = SVILightningModule(model, guide, example=x[:64], loss=pyro.infer.Trace_ELBO(), lr=1e-3)
    Trainer(strategy="ddp", devices=2, accelerator="cpu", max_epochs=10).fit(
        module, DataLoader(TensorDataset(x), batch_size=64), DataLoader(TensorDataset(x_val), batch_size=256))

Pyro's traps under DistributedDataParallel, and how :class:`SVILightningModule` meets them:

- Guides (Pyro's autoguides, local guides) create some parameters lazily, on their first call,
  but DDP registers the parameters it synchronizes when it wraps the module, and the optimizer
  must hold them all: the constructor traces model and guide once on ``example`` (the warm-up),
  before the ``Trainer`` wraps anything; ``configure_optimizers`` then makes one torch optimizer
  over all parameters.
- Pyro keeps parameters in a global param store, which DDP does not see. Build the model and guide
  after ``pyro.settings.set(module_local_params=True)`` (as Pyro's own Lightning example does; a
  ``PyroModule`` fixes its mode when it is built, and the constructor refuses one built without):
  the parameters a ``PyroModule`` uses are then its own (the module's ``parameters()``, the ones
  DDP broadcasts from rank 0 and averages), never a same-named entry of the store. Every trace runs
  in that mode, and a ``pyro.param`` site outside the modules is refused at the warm-up.
- ``pyro.optim`` makes one optimizer per parameter, found by tracing each step: Lightning steps
  one ``torch.optim`` optimizer instead, after DDP has averaged the gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import torch
from pyro.nn import PyroModule

from pyro_lvm.guides.check import check_trace_sites, guide_and_model_traces

try:
    from lightning.pytorch import LightningModule
except ImportError as e:  # an optional extra
    raise ImportError(
        'pyro_lvm.lightning needs PyTorch Lightning: pip install "pyro_lvm[lightning]" (or pip install lightning)'
    ) from e

__all__ = ["SVILightningModule"]


def _as_batch(batch: torch.Tensor | tuple | list) -> tuple:
    """A DataLoader's batch as the tuple of arguments of the model and guide: a tensor becomes
    ``(tensor,)``, a tuple or list (``TensorDataset``'s rows) the tuple of its items."""
    if torch.is_tensor(batch):
        return (batch,)
    if isinstance(batch, (tuple, list)) and batch and torch.is_tensor(batch[0]):
        return tuple(batch)
    raise TypeError(
        f"a batch must be a tensor or a tuple or list of tensors, the model's arguments (N rows first), "
        f"got {type(batch).__name__}"
    )


class SVILightningModule(LightningModule):
    """A LightningModule around a model (the generative story), a guide and a Pyro objective.

    ``training_step`` returns the batch's loss per example (the objective's loss, e.g. the negative
    ELBO summed over the batch, divided by its number of examples N; :func:`~pyro_lvm.infer.train`
    reports the same number in ``History.step_loss``) and logs it as ``train_loss``;
    ``validation_step`` logs ``val_loss``, the same per example over the validation data. Because
    DDP averages the ranks' gradients, W ranks with B/W examples each take the steps of one
    process with batch B (Lightning's ``DistributedSampler`` hands rank r the examples r, r + W,
    ... of each run of B). The gradient is that of the mean, where ``train`` differentiates the
    sum: Adam's steps hardly depend on that scale, SGD's learning rate does (``lr`` here is
    ``lr * N`` there).

    :param model: the story, an ``nn.Module`` (a ``PyroModule``), called as ``model(*batch, **model_kwargs)``.
    :param guide: an ``nn.Module`` taking the same arguments (a pyro_lvm guide, an autoguide, ...).
    :param example: one batch as the DataLoader yields it (a tensor, or a tuple or list of
        tensors), traced through guide and model once here: the warm-up that creates lazy
        parameters and checks that the guide covers the model's latent sites (as ``train``'s first
        step does). The random number streams are left as they were.
    :param loss: a Pyro objective with ``differentiable_loss`` (``Trace_ELBO`` (default),
        ``TraceMeanField_ELBO``, ``TraceEnum_ELBO``, :class:`~pyro_lvm.infer.HardEM`, ...).
    :param optimizer: a ``torch.optim.Optimizer`` class (or any callable taking the parameters and
        ``lr=``), e.g. ``functools.partial(torch.optim.SGD, momentum=0.9)``.
    :param lr: the learning rate.
    :param model_kwargs: keyword arguments of every model and guide call.
    :raises ValueError: when ``model`` or ``guide`` is not an ``nn.Module`` or holds a ``PyroModule``
        built without ``pyro.settings.set(module_local_params=True)``, ``loss`` has no
        ``differentiable_loss`` (e.g. ``RenyiELBO``), the guide does not cover the model's latent
        sites, or a ``pyro.param`` site lives outside the modules (DDP would not see it).
    :raises TypeError: when ``example`` is not a tensor or a tuple or list of tensors.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        guide: torch.nn.Module,
        example: torch.Tensor | tuple | list,
        loss: pyro.infer.ELBO | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.Adam,
        lr: float = 1e-3,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        for name, module in (("model", model), ("guide", guide)):
            if not isinstance(module, torch.nn.Module):
                raise ValueError(
                    f"{name} must be a torch.nn.Module (e.g. a PyroModule), whose parameters Lightning's optimizer and DDP "
                    f"can find; got {type(module).__name__}"
                )
        global_mode = sorted({type(m).__name__ for root in (model, guide) for m in root.modules()
                              if isinstance(m, PyroModule) and "param_state" not in vars(m._pyro_context)})
        if global_mode:
            raise ValueError(
                f"the PyroModules {global_mode} were built with Pyro's global param store, whose parameters DDP does not see; "
                "expected them built after pyro.settings.set(module_local_params=True)"
            )
        loss = pyro.infer.Trace_ELBO() if loss is None else loss
        if not callable(getattr(loss, "differentiable_loss", None)):
            raise ValueError(
                f"loss ({type(loss).__name__}) has no differentiable_loss, which Lightning's backward needs; expected an "
                "objective such as Trace_ELBO, TraceMeanField_ELBO, TraceEnum_ELBO or pyro_lvm.infer.HardEM"
            )
        self.model, self.guide, self.objective = model, guide, loss
        self.optimizer_factory, self.lr = optimizer, lr
        self.model_kwargs = dict(model_kwargs or {})
        self._warm_up(_as_batch(example))

    def _warm_up(self, batch: tuple) -> None:
        """Trace guide and model once (creating lazy parameters), check the guide's sites, and
        refuse parameters that live outside the modules."""
        with pyro.settings.context(module_local_params=True):
            guide_trace, model_trace = guide_and_model_traces(self.model, self.guide, *batch, **self.model_kwargs)
        check_trace_sites(guide_trace, model_trace)
        own = {id(p) for p in self.parameters()}
        outside = sorted(
            name
            for trace in (guide_trace, model_trace)
            for name, site in trace.nodes.items()
            if site["type"] == "param" and id(_unconstrained(site["value"])) not in own
        )
        if outside:
            raise ValueError(
                f"the parameters {outside} are pyro.param sites outside the model's and guide's modules, so neither the "
                f"optimizer nor DDP would see them; declare them on a PyroModule (PyroParam, nn.Parameter)"
            )

    def loss_per_example(self, batch: torch.Tensor | tuple | list) -> torch.Tensor:
        """The objective's loss on ``batch`` divided by its number of examples: a scalar tensor with gradients."""
        batch = _as_batch(batch)
        with pyro.settings.context(module_local_params=True):
            loss = self.objective.differentiable_loss(self.model, self.guide, *batch, **self.model_kwargs)
        return loss / batch[0].shape[0]

    def training_step(self, batch: torch.Tensor | tuple | list, batch_idx: int) -> torch.Tensor:
        loss = self.loss_per_example(batch)
        self.log("train_loss", loss, prog_bar=True, sync_dist=True, batch_size=_as_batch(batch)[0].shape[0])
        return loss

    def validation_step(self, batch: torch.Tensor | tuple | list, batch_idx: int) -> torch.Tensor:
        loss = self.loss_per_example(batch)
        self.log("val_loss", loss, prog_bar=True, sync_dist=True, batch_size=_as_batch(batch)[0].shape[0])
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """One torch optimizer over every parameter of the model and guide (those the warm-up created included)."""
        return self.optimizer_factory(self.parameters(), lr=self.lr)


def _unconstrained(value: torch.Tensor) -> torch.Tensor:
    """The tensor a param site's value is computed from: its unconstrained parameter, or itself."""
    unconstrained = getattr(value, "unconstrained", None)
    return value if unconstrained is None else unconstrained()

