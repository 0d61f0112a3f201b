"""Offline data loaders and generators.

Loaders take a root folder, defaulting to ``$PYRO_LVM_DATA``; a folder without the
files raises :class:`MissingDataError` naming the folder, the files and how to get them.
"""

from pyro_lvm.data._root import DATA_ENV_VAR, MissingDataError, resolve_root
from pyro_lvm.data.binarize import dynamic_binarize
from pyro_lvm.data.cifar import CIFAR10_CLASSES, load_cifar10_subset
from pyro_lvm.data.digits import load_digits
from pyro_lvm.data.mnist import load_binarized_mnist, load_mnist, read_idx, write_idx
from pyro_lvm.data.quadrants import MISSING, mask_quadrants, observed_quadrant_mask
from pyro_lvm.data.semisupervised import SemiSupervisedBatches, labelled_split
from pyro_lvm.data.shapes import make_shapes
from pyro_lvm.data.sigmorphon import Inflections, Vocabulary, encode_inflections, inflection_scores, load_sigmorphon

__all__ = [
    "CIFAR10_CLASSES",
    "DATA_ENV_VAR",
    "MISSING",
    "Inflections",
    "MissingDataError",
    "SemiSupervisedBatches",
    "Vocabulary",
    "dynamic_binarize",
    "encode_inflections",
    "inflection_scores",
    "labelled_split",
    "load_binarized_mnist",
    "load_cifar10_subset",
    "load_digits",
    "load_mnist",
    "load_sigmorphon",
    "make_shapes",
    "mask_quadrants",
    "observed_quadrant_mask",
    "read_idx",
    "resolve_root",
    "write_idx",
]
