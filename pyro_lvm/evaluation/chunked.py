"""Importance-weighted ``log p(x_n)`` over a whole test set, a chunk of examples at a time.

:func:`~pyro_lvm.infer.importance_log_likelihood` holds ``chunk_size * N`` weights at once;
a test set of 10,000 images with 5,000 samples each is split into chunks of examples, and the
samples into draws of at most ``max_weights`` weights. A per-example guide (a
:class:`~pyro_lvm.guides.LocalGuide` whose rows are the examples in order) is called with
each chunk's example ids.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pyro_lvm.guides import LocalGuide
from pyro_lvm.infer import importance_log_likelihood

__all__ = ["chunked_log_likelihood"]


def chunked_log_likelihood(
    model: Callable, proposal: Callable, x: torch.Tensor, *, num_samples: int = 5000,
    chunk_examples: int = 500, max_weights: int = 20000,
) -> torch.Tensor:
    """Importance-sampled ``log p(x_n)`` for every example of ``x`` (N, D), shape (N,), nats.

    :param model: the generative story, called as ``model(x)`` or ``model(x, ids)``.
    :param proposal: ``q(z | x)`` with a density; a :class:`~pyro_lvm.guides.LocalGuide` must have
        one row per example of ``x``, in order (it is called with the ids of each chunk).
    :param num_samples: importance samples per example.
    :param chunk_examples: examples per :func:`~pyro_lvm.infer.importance_log_likelihood` call.
    :param max_weights: at most this many weights (samples x examples) are drawn at once.
    """
    ids = torch.arange(len(x), device=x.device).split(chunk_examples)
    local = isinstance(proposal, LocalGuide)  # its model and guide calls carry the example ids
    return torch.cat([
        importance_log_likelihood(model, proposal, chunk, *((chunk_ids,) if local else ()), num_samples=num_samples,
                                  chunk_size=max(1, max_weights // len(chunk)))
        for chunk, chunk_ids in zip(x.split(chunk_examples), ids)
    ])
