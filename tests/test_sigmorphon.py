"""load_sigmorphon reads every file of the shared CoNLL-SIGMORPHON 2017 copy (line counts from its
SOURCES.md), says clearly what is wrong with a missing or malformed file, maps unseen symbols to the
unknown symbol, and the official metrics agree with textbook edit distances."""

import pytest

from pyro_lvm.data import MissingDataError, Vocabulary, encode_inflections, inflection_scores, load_sigmorphon
from pyro_lvm.data.sigmorphon import SIGMORPHON_LANGUAGES, SIGMORPHON_SPLITS, levenshtein

LINES = {"train-high": 10000, "train-medium": 1000, "train-low": 100, "dev": 1000, "test": 1000}


def test_reads_every_file_of_the_shared_set(shared_data):
    for language in SIGMORPHON_LANGUAGES:
        for split in SIGMORPHON_SPLITS:
            data = load_sigmorphon(language, split, shared_data)
            assert len(data) == len(data.forms) == len(data.tags) == LINES[split]
            assert all(data.lemmas) and all(data.forms) and all(all(t) for t in data.tags)
    english = load_sigmorphon("english", "train-low", shared_data)
    sources, targets = Vocabulary.for_sources(english), Vocabulary.for_targets(english)
    src, src_len, tgt, tgt_len = encode_inflections(english, sources, targets, 64)
    assert targets.decode(tgt[0].tolist(), stop=0) == english.forms[0] and int(tgt_len[0]) == len(english.forms[0]) + 1
    assert int(src_len[0]) == len(english.lemmas[0]) + len(english.tags[0])


def _write(tmp_path, name, text):
    folder = tmp_path / "sigmorphon2017"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_missing_file_and_unknown_language_name_the_folder_and_files(tmp_path):
    root = _write(tmp_path, "klingon-dev", "a\tb\tV\n")
    expected = r"english-dev not found in .*sigmorphon2017.*'english-train-high'.*'english-test'.*languages \['klingon'\]"
    with pytest.raises(MissingDataError, match=expected):
        load_sigmorphon("english", "dev", root)
    with pytest.raises(ValueError, match="split must be one of"):
        load_sigmorphon("klingon", "train", root)


@pytest.mark.parametrize("line, what", [("walk\twalked\n", "2 tab-separated fields, expected 3"), ("\twalked\tV;PST\n", "empty lemma")])
def test_malformed_lines_name_the_file_and_line(tmp_path, line, what):
    root = _write(tmp_path, "x-dev", "go\twent\tV;PST\n" + line)
    with pytest.raises(ValueError, match=f"x-dev, line 2: .*{what}"):
        load_sigmorphon("x", "dev", root)


def test_unseen_symbols_become_unknown_and_long_outputs_are_refused(tmp_path):
    train = load_sigmorphon("x", "dev", _write(tmp_path, "x-dev", "ab\tabc\tV;PST\n"))
    test = load_sigmorphon("x", "test", _write(tmp_path, "x-test", "az\tabz\tN;PL\n"))
    sources, targets = Vocabulary.for_sources(train), Vocabulary.for_targets(train)
    src, _, tgt, _ = encode_inflections(test, sources, targets, 4)
    assert src[0].tolist() == [sources.index["a"], 1, 1, 1] and tgt[0].tolist() == [targets.index["a"], targets.index["b"], 1, 0]
    assert targets.decode(tgt[0].tolist(), stop=0) == "ab\ufffd"
    with pytest.raises(ValueError, match="needs 4 output steps .*max_output_length=3"):
        encode_inflections(test, sources, targets, 3)


def test_official_metrics_match_textbook_edit_distances():
    assert levenshtein("kitten", "sitting") == 3 and levenshtein("flaw", "lawn") == 2 and levenshtein("", "abc") == 3
    assert levenshtein("intention", "execution") == 5  # Jurafsky & Martin with unit substitution cost
    assert inflection_scores(["walked", "ran"], ["walked", "run"]) == {"accuracy": 0.5, "levenshtein": 0.5}
    with pytest.raises(ValueError, match="as many predictions as gold forms"):
        inflection_scores(["a"], [])
