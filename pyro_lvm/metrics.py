"""Image-colorization metrics that scikit-learn lacks: ab-accuracy AuC and PSNR.

For the adjusted Rand index of a segmentation use :func:`sklearn.metrics.adjusted_rand_score`
on the flattened label maps.
"""

from __future__ import annotations

import torch

__all__ = ["ab_accuracy_auc", "psnr"]


def _check_pair(pred: torch.Tensor, target: torch.Tensor, names: tuple[str, str]) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.dim() < 2 or pred.numel() == 0:
        raise ValueError(f"{names[0]} must have a batch dim and at least one value per example, got shape {tuple(pred.shape)}")


def ab_accuracy_auc(pred_ab: torch.Tensor, true_ab: torch.Tensor, max_threshold: float = 150.0, channel_dim: int = -3) -> float:
    """Area under the per-pixel accuracy curve over ab-distance thresholds (Zhang et al., 2016).

    A pixel counts as correct at threshold ``t`` when the Euclidean distance ``d`` between
    its predicted and true (a, b) is at most ``t``. The accuracy curve, swept over
    ``t`` in [0, ``max_threshold``], is integrated and normalized by ``max_threshold``.
    The integral is computed exactly: the area under the empirical CDF of ``d`` on
    [0, T] is ``mean(T - min(d, T))``, so the AuC is ``1 - mean(min(d, T)) / T``.

    :param pred_ab: predicted ab channels, e.g. (N, 2, H, W).
    :param true_ab: true ab channels of the same shape.
    :param max_threshold: T, the largest threshold (150 in Zhang et al.).
    :param channel_dim: the dim holding (a, b).
    :returns: the AuC in [0, 1] over all pixels of all images.
    """
    _check_pair(pred_ab, true_ab, ("pred_ab", "true_ab"))
    if pred_ab.shape[channel_dim] != 2:
        raise ValueError(f"pred_ab must have 2 channels (a, b) along dim {channel_dim}, got shape {tuple(pred_ab.shape)}")
    if not max_threshold > 0:
        raise ValueError(f"max_threshold must be positive, got {max_threshold}")
    d = torch.linalg.vector_norm(pred_ab.double() - true_ab.double(), dim=channel_dim)
    return float(1.0 - d.clamp(max=max_threshold).mean() / max_threshold)


def psnr(pred: torch.Tensor, target: torch.Tensor, max_value: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, computed per image and averaged over images.

    :param pred: predicted images (N, ...), e.g. RGB (N, 3, H, W) in [0, ``max_value``].
    :param target: true images of the same shape.
    :param max_value: the peak value (1.0 for images in [0, 1]).
    :returns: mean over the N images of ``10 log10(max_value**2 / MSE_n)``
        (infinite if an image is reproduced exactly).
    """
    _check_pair(pred, target, ("pred", "target"))
    mse = (pred.double() - target.double()).pow(2).flatten(1).mean(1)
    return float((10.0 * torch.log10(max_value**2 / mse)).mean())
