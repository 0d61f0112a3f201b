"""Where offline data lives: one folder, from an argument or ``$PYRO_LVM_DATA``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV_VAR", "MissingDataError", "resolve_root", "find_file"]

#: Environment variable naming the default data folder.
DATA_ENV_VAR = "PYRO_LVM_DATA"


class MissingDataError(FileNotFoundError):
    """A data set's files are not in the data folder (and could not be downloaded)."""


def resolve_root(root: str | os.PathLike | None) -> Path:
    """Return the data folder: ``root`` if given, else ``$PYRO_LVM_DATA``, else ``~/.pyro_lvm/data``."""
    if root is None:
        root = os.environ.get(DATA_ENV_VAR) or Path.home() / ".pyro_lvm" / "data"
    return Path(root).expanduser()


def find_file(root: Path, subdir: str, candidates: list[str], how_to_get: str) -> Path:
    """Return the first of ``candidates`` found in ``root/subdir`` or ``root``.

    Raises :class:`MissingDataError` naming the folder, the files expected and
    ``how_to_get`` them when none is there.
    """
    for folder in (root / subdir, root):
        for name in candidates:
            path = folder / name
            if path.is_file():
                return path
    raise MissingDataError(
        f"none of {candidates} found in {root / subdir} (nor in {root}). {how_to_get} "
        f"Pass the folder as `root=` (examples: --data-dir) or set ${DATA_ENV_VAR}."
    )
