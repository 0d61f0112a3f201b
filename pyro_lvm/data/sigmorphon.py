"""CoNLL-SIGMORPHON 2017 task 1 (morphological inflection): files, vocabularies, tensors, metrics.

Each line of a task file is ``lemma<TAB>inflected form<TAB>features``, the UniMorph features
separated by ``;`` (``stodge	stodged	V;PST``). :func:`load_sigmorphon` reads
``ROOT/sigmorphon2017/LANGUAGE-SPLIT``; a :class:`Vocabulary` built on training data turns
the lemma's characters and the feature tags into source symbols and the form's characters
into target symbols (unseen symbols become the unknown symbol); :func:`encode_inflections`
pads them into tensors; :func:`inflection_scores` computes the shared task's official
metrics, exact-match accuracy and mean Levenshtein distance.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from pyro_lvm.data._root import MissingDataError, resolve_root

__all__ = [
    "SIGMORPHON_LANGUAGES",
    "SIGMORPHON_SPLITS",
    "Inflections",
    "Vocabulary",
    "encode_inflections",
    "inflection_scores",
    "levenshtein",
    "load_sigmorphon",
]

SIGMORPHON_LANGUAGES = ("english", "finnish", "german", "spanish", "turkish")
SIGMORPHON_SPLITS = ("train-high", "train-medium", "train-low", "dev", "test")
_HOW = (
    "Get the CoNLL-SIGMORPHON 2017 task 1 files (github.com/sigmorphon/conll2017: all/task1/LANG-train-*, "
    "LANG-dev, and answers/task1/LANG-uncovered-test saved as LANG-test) and put them in <root>/sigmorphon2017."
)


@dataclass(frozen=True)
class Inflections:
    """Triples of one task file: ``lemmas[i]`` inflected with ``tags[i]`` is ``forms[i]``."""

    lemmas: list[str]
    forms: list[str]
    tags: list[tuple[str, ...]]

    def __len__(self) -> int:
        return len(self.lemmas)

    def sources(self) -> list[list[str]]:
        """Source symbols per word: the lemma's characters, then its tags as ``"[TAG]"``."""
        return [list(lemma) + [f"[{t}]" for t in tags] for lemma, tags in zip(self.lemmas, self.tags)]


def load_sigmorphon(language: str, split: str, root: str | os.PathLike | None = None) -> Inflections:
    """Read ``ROOT/sigmorphon2017/LANGUAGE-SPLIT`` (or ``ROOT/LANGUAGE-SPLIT``).

    :param language: a language with files in the folder, e.g. ``"english"``
        (the shared copy holds :data:`SIGMORPHON_LANGUAGES`).
    :param split: one of :data:`SIGMORPHON_SPLITS` (10,000, 1,000 and 100 training pairs, dev, gold test).
    :param root: data folder; default ``$PYRO_LVM_DATA``.
    :raises ValueError: for an unknown split, or naming the file and line of a line without
        three tab-separated fields or with an empty lemma, form or feature list.
    :raises MissingDataError: naming the folder and the files expected when the file is absent
        (and the languages the folder does hold).
    """
    if split not in SIGMORPHON_SPLITS:
        raise ValueError(f"split must be one of {list(SIGMORPHON_SPLITS)}, got {split!r}")
    root = resolve_root(root)
    name = f"{language}-{split}"
    path = next((folder / name for folder in (root / "sigmorphon2017", root) if (folder / name).is_file()), None)
    if path is None:
        folder = root / "sigmorphon2017"
        held = sorted({p.name.rsplit("-", 2 if "-train-" in p.name else 1)[0] for p in folder.glob("*-*")}) if folder.is_dir() else []
        expected = [f"{language}-{s}" for s in SIGMORPHON_SPLITS]
        raise MissingDataError(
            f"{name} not found in {folder} (nor in {root}); expected the files {expected}"
            f"{f'; the folder holds the languages {held}' if held else ''}. {_HOW} "
            "Pass the folder as `root=` (examples: --data-dir) or set $PYRO_LVM_DATA."
        )
    return _parse(path)


def _parse(path: Path) -> Inflections:
    lemmas, forms, tags = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{path}, line {number}: {len(fields)} tab-separated fields, expected 3 (lemma, form, features): {line!r}")
        lemma, form, features = fields
        for what, value in (("lemma (source string)", lemma), ("inflected form", form), ("feature list", features)):
            if not value:
                raise ValueError(f"{path}, line {number}: empty {what}; expected lemma<TAB>form<TAB>features")
        lemmas.append(lemma)
        forms.append(form)
        tags.append(tuple(features.split(";")))
    if not lemmas:
        raise ValueError(f"{path} holds no lines; expected lines lemma<TAB>form<TAB>features")
    return Inflections(lemmas, forms, tags)


class Vocabulary:
    """Symbols and their indices, with reserved symbols first and an unknown symbol.

    :param symbols: the symbols seen in training (duplicates are dropped, order kept sorted).
    :param reserved: names of the reserved indices ``0..len(reserved) - 1``; must include ``unknown``.
    :param unknown: the reserved symbol unseen symbols map to.
    """

    def __init__(self, symbols: Iterable[str], reserved: Sequence[str], unknown: str) -> None:
        if unknown not in reserved:
            raise ValueError(f"the unknown symbol {unknown!r} must be one of the reserved symbols {list(reserved)}")
        self.symbols = list(reserved) + sorted(set(symbols) - set(reserved))
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.unknown = self.index[unknown]

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, symbols: Iterable[str]) -> list[int]:
        """Indices of ``symbols``; unseen ones map to the unknown symbol."""
        return [self.index.get(s, self.unknown) for s in symbols]

    def decode(self, indices: Iterable[int], stop: int | None = None) -> str:
        """The string of ``indices`` up to (not including) the first ``stop``; the unknown symbol as U+FFFD."""
        chars = []
        for i in indices:
            if i == stop:
                break
            chars.append("\ufffd" if i == self.unknown else self.symbols[i])
        return "".join(chars)

    @classmethod
    def for_sources(cls, data: Inflections) -> Vocabulary:
        """Source vocabulary: ``<pad>`` = 0, ``<unk>`` = 1, then the lemma characters and ``[TAG]`` symbols of ``data``."""
        return cls((s for word in data.sources() for s in word), ("<pad>", "<unk>"), "<unk>")

    @classmethod
    def for_targets(cls, data: Inflections) -> Vocabulary:
        """Target vocabulary: ``<eos>`` = 0 (also the padding), ``<unk>`` = 1, then the form characters of ``data``."""
        return cls((c for form in data.forms for c in form), ("<eos>", "<unk>"), "<unk>")


def encode_inflections(
    data: Inflections, sources: Vocabulary, targets: Vocabulary, max_output_length: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded tensors of a data set.

    :returns: ``src`` int64 (N, S) source symbols padded with 0, ``src_len`` (N,), ``tgt`` int64
        (N, T) form characters followed by ``<eos>`` (0) and padded with 0, ``tgt_len`` (N,)
        counting the ``<eos>``.
    :raises ValueError: when a form with its ``<eos>`` is longer than ``max_output_length``
        (the decoder's limit), naming the word.
    """
    src = [sources.encode(word) for word in data.sources()]
    tgt = [targets.encode(form) + [0] for form in data.forms]
    for i, t in enumerate(tgt):
        if len(t) > max_output_length:
            raise ValueError(
                f"the form {data.forms[i]!r} of word {i} needs {len(t)} output steps (with <eos>), "
                f"more than the decoder's limit max_output_length={max_output_length}"
            )
    return (*_pad(src), *_pad(tgt))


def _pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(r) for r in rows])
    out = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out, lengths


def levenshtein(a: str, b: str) -> int:
    """Edit distance between ``a`` and ``b``: insertions, deletions and substitutions, each costing 1."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def inflection_scores(predicted: Sequence[str], gold: Sequence[str]) -> dict[str, float]:
    """The shared task's metrics: ``accuracy`` (exact match) and mean ``levenshtein`` distance."""
    if len(predicted) != len(gold) or not gold:
        raise ValueError(f"need as many predictions as gold forms (at least one), got {len(predicted)} and {len(gold)}")
    return {
        "accuracy": sum(p == g for p, g in zip(predicted, gold)) / len(gold),
        "levenshtein": sum(levenshtein(p, g) for p, g in zip(predicted, gold)) / len(gold),
    }
