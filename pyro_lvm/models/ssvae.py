"""The semi-supervised VAE, M2 of Kingma et al. (2014): a label ``y`` observed for a few examples, summed out for the rest.

Story, per example::

    y_n ~ Categorical(1/C, ..., 1/C)                  (one-hot, C classes)
    z_n ~ N(0, I)
    x_n | y_n, z_n ~ Bernoulli(logits = f(y_n, z_n))

The family's own guide is ``q(y | x) q(z | x, y)``: a classifier ``q(y | x)`` and, for ``z``, an
:class:`~pyro_lvm.guides.AmortizedSite` whose encoder reads ``x`` and the one-hot ``y``. Where
``y`` is given (labelled batches, ``model(x, y)``) the guide only samples ``z``; where it is not
(``model(x)``) the guide's ``y`` is marked for parallel enumeration, so ``TraceEnum_ELBO`` sums it
exactly: ``-U(x) = sum_y q(y | x) [-L(x, y)] - H(q(y | x))`` (Kingma et al.'s equation 7).
Under enumeration ``y`` arrives at the ``z`` encoder and the decoder with a leading enumeration
dim, (C, 1, C); both broadcast over leading dims.

The classifier only enters the unlabelled bound; Kingma et al. add ``alpha * log q(y | x)`` on the
labelled examples so that it learns from the labels too: :meth:`SemiSupervisedVAE.objective` is
the story plus that term, the model to train with (``model_kwargs={"alpha": alpha}``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule
from torch import nn
from torch.nn import functional as F

from pyro_lvm.data._checks import check_labels
from pyro_lvm.distributions.bernoulli import IndependentBernoulli
from pyro_lvm.guides import AmortizedSite, LatentGuide
from pyro_lvm.guides.heads import NormalHead
from pyro_lvm.infer import importance_log_likelihood
from pyro_lvm.models.base import LatentVariableModel
from pyro_lvm.nets import MLP, check_widths
from pyro_lvm.nets import activation as activation_module

__all__ = ["LabelClassifier", "LabelledEncoder", "SemiSupervisedVAE", "check_semisupervised_labels"]


def check_semisupervised_labels(y: torch.Tensor, num_examples: int, num_classes: int) -> torch.Tensor:
    """``y`` (N,) as int64 labels after checking them.

    :raises ValueError: naming ``y``, when it is not (num_examples,) or holds a label outside ``[0, num_classes)``.
    """
    if not torch.is_tensor(y) or y.shape != (num_examples,):
        raise ValueError(f"y must be a tensor of {num_examples} labels (shape ({num_examples},)), "
                         f"got {tuple(y.shape) if torch.is_tensor(y) else type(y).__name__}")
    check_labels(y.detach().cpu().numpy(), "y (the semi-supervised labels)", num_classes)
    return y.long()


class LabelledEncoder(nn.Module):
    """Features of an image and a one-hot label: ``x`` (..., N, D) and ``y`` (..., N, C) concatenated, then an MLP.

    The leading dims of the two are broadcast (``y`` enumerated is (C, 1, C)); only the last dim of
    each is the event, so an enumerated label is never read as a batch of examples.

    :param data_dim: D; ``num_classes``: C.
    :param hidden_dims: hidden widths (the features are the last layer's, ``feature_dim``).
    :param activation: their activation, by name.
    """

    def __init__(self, data_dim: int, num_classes: int, hidden_dims: Sequence[int] = (500,), activation: str = "softplus") -> None:
        super().__init__()
        hidden_dims = check_widths(hidden_dims)
        if not hidden_dims:
            raise ValueError("hidden_dims must hold at least one width (the features)")
        self.data_dim, self.num_classes = data_dim, num_classes
        self.feature_dim = hidden_dims[-1]
        self.hidden = nn.Sequential(MLP(data_dim + num_classes, hidden_dims[:-1], hidden_dims[-1], activation),
                                    activation_module(activation))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Features (..., N, F) of ``x`` (..., N, D) and ``y`` (..., N, C)."""
        if x.shape[-1] != self.data_dim or y.shape[-1] != self.num_classes:
            raise ValueError(f"LabelledEncoder reads x (..., N, {self.data_dim}) and one-hot y (..., N, {self.num_classes}), "
                             f"got {tuple(x.shape)} and {tuple(y.shape)}")
        lead = torch.broadcast_shapes(x.shape[:-1], y.shape[:-1])
        return self.hidden(torch.cat([x.expand(*lead, -1), y.to(x.dtype).expand(*lead, -1)], dim=-1))


class LabelClassifier(PyroModule):
    """The classifier ``q(y | x)``: an MLP's logits as a one-hot categorical (a module, so Pyro trains it
    wherever it is called: in the guide and in the classification term).

    :param data_dim: D; ``num_classes``: C; ``hidden_dims``, ``activation``: the MLP.
    """

    def __init__(self, data_dim: int, num_classes: int, hidden_dims: Sequence[int] = (500,), activation: str = "softplus") -> None:
        super().__init__()
        self.network = MLP(data_dim, hidden_dims, num_classes, activation)

    def forward(self, x: torch.Tensor) -> dist.OneHotCategorical:
        """``q(y | x)`` for ``x`` (N, D): batch shape (N,), event shape (C,)."""
        return dist.OneHotCategorical(logits=self.network(x))


class SemiSupervisedVAE(LatentVariableModel):
    """M2 with the face of :class:`~pyro_lvm.models.base.LatentVariableModel`.

    :param data_dim: D, pixels per image (784 for MNIST).
    :param num_classes: C, the number of labels.
    :param z_dim: the dimension of ``z`` (``latent_size``).
    :param hidden_dims: hidden widths of the decoder, the classifier and the ``z`` encoder
        (Kingma et al.: one layer of 500).
    :param activation: their activation, by name (Kingma et al.: softplus).

    Sites: ``y`` (one-hot, event shape (C,); observed where labels are given), ``z`` (event shape
    (z_dim,)) and ``x`` (observed, event shape (D,)), all in the plate ``"data"`` at dim -1.
    """

    max_plate_nesting = 1
    latent_sites = ("y", "z")

    def __init__(self, data_dim: int = 784, num_classes: int = 10, z_dim: int = 50,
                 hidden_dims: Sequence[int] = (500,), activation: str = "softplus") -> None:
        super().__init__()
        if data_dim < 1 or num_classes < 2 or z_dim < 1:
            raise ValueError(f"data_dim >= 1, num_classes >= 2 and z_dim >= 1 expected, got {data_dim}, {num_classes}, {z_dim}")
        self.data_dim, self.num_classes, self.z_dim = data_dim, num_classes, z_dim
        self.decoder = MLP(z_dim + num_classes, hidden_dims, data_dim, activation)
        self.classifier = LabelClassifier(data_dim, num_classes, hidden_dims, activation)
        encoder = LabelledEncoder(data_dim, num_classes, hidden_dims, activation)
        self.z_guide = LatentGuide([AmortizedSite("z", NormalHead(z_dim), encoder, inputs=("x", "y"))],
                                   model=self.forward, plate=None)

    @property
    def latent_size(self) -> int:
        """The dimension of ``z`` (``y`` takes ``num_classes`` values)."""
        return self.z_dim

    def _one_hot(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor | None:
        """Check ``x`` (N, D) and the labels ``y`` (N,) or None; the one-hot labels (N, C) in x's dtype."""
        if not torch.is_tensor(x) or x.dim() != 2 or x.shape[1] != self.data_dim:
            raise ValueError(f"x must be a tensor (N, {self.data_dim}), got {tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
        if y is None:
            return None
        return F.one_hot(check_semisupervised_labels(y, x.shape[0], self.num_classes), self.num_classes).to(x.dtype)

    def prior(self, x: torch.Tensor) -> tuple[dist.Distribution, dist.Distribution]:
        """``p(y)`` (uniform one-hot, batch shape ()) and ``p(z) = N(0, I)`` (event shape (z_dim,)), in x's dtype and device."""
        logits = x.new_zeros(self.num_classes)
        zeros = x.new_zeros(self.z_dim)
        return dist.OneHotCategorical(logits=logits), dist.Normal(zeros, 1.0).to_event(1)

    def likelihood_dist(self, y: torch.Tensor, z: torch.Tensor) -> dist.Distribution:
        """``p(x | y, z)`` for one-hot ``y`` (..., N, C) and ``z`` (..., N, z_dim): batch shape (..., N), event (D,)."""
        lead = torch.broadcast_shapes(y.shape[:-1], z.shape[:-1])
        h = torch.cat([z.expand(*lead, -1), y.to(z.dtype).expand(*lead, -1)], dim=-1)
        return IndependentBernoulli(self.decoder(h))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The story for images ``x`` (N, D) in {0, 1} and labels ``y`` (N,) (None: unlabelled).

        :returns: the one-hot labels (N, C), drawn (or enumerated) where not given.
        :raises ValueError: ``x`` not (N, D); ``y`` not (N,) or a label outside ``[0, C)``, naming ``y``.
        """
        y_onehot = self._one_hot(x, y)
        p_y, p_z = self.prior(x)
        with pyro.plate("data", x.shape[0], dim=-1):
            y_onehot = pyro.sample("y", p_y, obs=y_onehot)
            z = pyro.sample("z", p_z)
            pyro.sample("x", self.likelihood_dist(y_onehot, z), obs=x)
        return y_onehot

    def classify_dist(self, x: torch.Tensor) -> dist.OneHotCategorical:
        """The classifier ``q(y | x)`` for ``x`` (N, D): batch shape (N,), event shape (C,)."""
        return self.classifier(x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None, alpha: float = 0.0) -> torch.Tensor:
        """``q(y | x) q(z | x, y)``: ``y`` enumerated in parallel where not given, then ``z`` from ``z_guide``.

        ``alpha``, the weight of :meth:`objective`'s classification term, is taken (a guide takes its
        model's arguments) and not used.
        """
        y_onehot = self._one_hot(x, y)
        with pyro.plate("data", x.shape[0], dim=-1):
            if y_onehot is None:
                y_onehot = pyro.sample("y", self.classify_dist(x), infer={"enumerate": "parallel"})
            return self.z_guide(x, y_onehot)

    def objective(self, x: torch.Tensor, y: torch.Tensor | None = None, alpha: float = 0.0) -> torch.Tensor:
        """The model to train with: the story, plus on labelled batches the classification term
        ``alpha * log q(y_n | x_n)`` (an observed site ``"y_classified"`` in the plate ``"classified"``, scaled by
        ``alpha``), so that the
        loss is Kingma et al.'s ``-J^alpha`` (their equation 9).

        :param alpha: the weight of the classification term (Kingma et al.: 0.1 N); 0 leaves the story alone.
        """
        y_onehot = self(x, y)
        if y is not None and alpha > 0:
            with pyro.plate("classified", x.shape[0], dim=-1), poutine.scale(scale=alpha):
                pyro.sample("y_classified", self.classify_dist(x), obs=y_onehot)
        return y_onehot

    @torch.no_grad()
    def posterior(self, x: torch.Tensor, y: None = None, **kwargs: Any) -> dist.Distribution:
        """The classifier's ``q(y | x)``, the approximate posterior over the label: batch shape (N,), event (C,)."""
        self._one_hot(x, None)
        return self.classify_dist(x)

    @torch.no_grad()
    def map_latents(self, x: torch.Tensor, y: None = None, **kwargs: Any) -> torch.Tensor:
        """The most probable label under ``q(y | x)``, (N,) int64 (the classifier's prediction)."""
        return self.posterior(x).probs.argmax(-1)

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor | None = None, *, guide: Callable | None = None,
                       num_samples: int = 1000, chunk_size: int = 100) -> torch.Tensor:
        """``log p(x_n)`` (``y`` None) or ``log p(x_n, y_n)`` per example, (N,) nats, importance-sampled.

        :param guide: the proposal (default the family's own ``q(y | x) q(z | x, y)``).
        """
        guide = self.guide if guide is None else guide
        data = (x,) if y is None else (x, y)
        return importance_log_likelihood(self.model, guide, *data, num_samples=num_samples, chunk_size=chunk_size)

    @torch.no_grad()
    def sample(self, num_samples: int, return_latents: bool = False, *, y: torch.Tensor | None = None,
               z: torch.Tensor | None = None, mean: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Images from the story: (num_samples, D), and ``z`` (num_samples, z_dim) with ``return_latents``.

        :param y: the labels (num_samples,) to draw for (default drawn from ``p(y)``): the same ``z``
            with every label gives Kingma et al.'s analogies.
        :param z: the codes (num_samples, z_dim) (default drawn from ``N(0, I)``).
        :param mean: the pixels' probabilities instead of draws.
        """
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        ref = self.decoder.output_layer.weight.new_zeros(num_samples, self.data_dim)
        p_y, p_z = self.prior(ref)
        y_onehot = p_y.sample((num_samples,)) if y is None else self._one_hot(ref, y)
        if z is None:
            z = p_z.sample((num_samples,))
        elif z.shape != (num_samples, self.z_dim):
            raise ValueError(f"z must have shape ({num_samples}, {self.z_dim}), got {tuple(z.shape)}")
        px = self.likelihood_dist(y_onehot, z)
        x = px.mean if mean else px.sample()
        return (x, z) if return_latents else x
