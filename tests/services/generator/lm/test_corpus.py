"""``marquee lm corpus``: cleaning, deduplication, splits by time or hash, packing, bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from services.generator.errors import CorpusError
from services.generator.lm import corpus, sources
from services.generator.lm.corpus import PackedCorpus, SplitPlan
from services.generator.lm.sources import Document
from tests.services.generator.test_cli import _restore_logging, one_line_error, run  # noqa: F401

BODY = "The committee met on Tuesday and agreed the budget for the coming year. " * 4


def test_clean_normalizes_whitespace_controls_and_newlines():
    assert corpus.clean("  a\u00a0\u00a0b\r\n\r\n\r\n\r\nc\x0c d\t\te  ") == "a b\n\nc d e"


def test_duplicates_ignore_case_and_spacing_and_short_documents_go():
    stats = corpus.CorpusStats()
    docs = [
        Document("a", BODY),
        Document("b", BODY.upper().replace(" ", "  ")),
        Document("c", "short"),
    ]
    kept = corpus.deduplicate(docs, 50, stats)
    assert [d.doc_id for d in kept] == ["a"]
    assert (stats.documents_in, stats.duplicates, stats.too_short) == (3, 1, 1)


def test_dated_documents_split_by_time_with_cut_dates():
    docs = [
        Document(str(y), f"{BODY} {y}", datetime(y, 1, 1, tzinfo=UTC)) for y in range(2000, 2020)
    ]
    plan = SplitPlan(validation_from=sources.parse_date("2010"), test_from=sources.parse_date(2014))
    stats = corpus.CorpusStats()
    parts = corpus.split(docs[::-1], plan, stats)
    assert [d.doc_id for d in parts["validation"]] == ["2010", "2011", "2012", "2013"]
    assert parts["test"][0].doc_id == "2014" and parts["train"][-1].doc_id == "2009"
    assert stats.by == "time" and stats.dates["test"] == ["2014-01-01", "2019-01-01"]


def test_undated_documents_split_by_id_hash_stably():
    docs = [Document(f"doc{i}", f"{BODY} {i}") for i in range(200)]
    first = corpus.split(docs, SplitPlan(), corpus.CorpusStats())
    again = corpus.split(
        docs[::-1] + [Document("new", BODY + "new")], SplitPlan(), corpus.CorpusStats()
    )
    for name in corpus.SPLITS:
        assert {d.doc_id for d in first[name]} <= {d.doc_id for d in again[name]}
    assert 5 < len(first["validation"]) < 40 and 5 < len(first["test"]) < 40


def test_pack_joins_documents_with_the_separator_and_masks_padding():
    ids, mask = corpus.pack([[5, 6, 7], [8]], seq_len=4, sep=2, pad=0)
    np.testing.assert_array_equal(ids, [[5, 6, 7, 2], [8, 2, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1], [1, 1, 0, 0]])


def _folder(tmp_path, files: dict[str, bytes]):
    folder = tmp_path / "texts"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def test_folder_of_txt_and_jsonl_becomes_a_packed_corpus(capsys, tmp_path, tiny):
    gguf, _, _ = tiny
    rows = [
        json.dumps({"id": f"j{i}", "text": f"{BODY} the cat {i}", "date": f"20{10 + i}-03-01"})
        for i in range(6)
    ]
    folder = _folder(
        tmp_path,
        {"a.txt": BODY.encode(), "dupe.txt": BODY.encode(), "b.jsonl": "\n".join(rows).encode()},
    )
    out = tmp_path / "corpus"
    code, stdout, _ = run(
        capsys, "lm", "corpus", "--folder", str(folder), "--output", str(out), "--gguf", str(gguf),
        "--seq-len", "32", "--validation", "0.2", "--test", "0.2",
    )  # fmt: skip
    assert code == 0, stdout
    assert "duplicates dropped 1" in stdout and "split by hash" in stdout
    packed = PackedCorpus.load(out)
    assert packed.seq_len == 32 and packed.stats["documents_in"] == 8
    assert sum(packed.stats["documents"].values()) == 7
    assert packed.ids["train"].dtype == np.int32 and packed.mask["train"].any()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "has no files"),
        ({"notes.md": b"# hi"}, "but no .txt or .jsonl"),
        ({"a.txt": b"text\x00\x01\x02binary"}, "looks binary"),
        ({"a.txt": "Caf\u00e9 cr\u00e8me".encode("latin-1")}, "is not UTF-8"),
        ({"a.jsonl": b'{"body": "no text field"}'}, "with a 'text' field"),
    ],
)
def test_bad_folder_input_is_one_clear_line(capsys, tmp_path, tiny, files, message):
    gguf, _, _ = tiny
    folder = _folder(tmp_path, files)
    code, _, err = run(
        capsys,
        "lm",
        "corpus",
        "--folder",
        str(folder),
        "--output",
        str(tmp_path / "o"),
        "--gguf",
        str(gguf),
    )
    assert code == 2
    assert message in one_line_error(err)


def test_missing_sotu_dataset_says_how_to_fetch_it(capsys, tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("MARQUEE_GENERATOR_DATASETS_CACHE", str(tmp_path))
    code, _, err = run(
        capsys, "lm", "corpus", "--sotu", "--output", str(tmp_path / "o"), "--gguf", str(tiny[0])
    )
    assert code == 2 and "make setup" in one_line_error(err)


def test_no_source_is_a_usage_error(capsys, tmp_path):
    code, _, err = run(capsys, "lm", "corpus", "--output", str(tmp_path / "o"))
    assert code == 2 and "no source given" in one_line_error(err)


def test_only_short_documents_leave_nothing_to_train_on(tmp_path):
    with pytest.raises(CorpusError, match="no usable documents"):
        corpus.build(
            [Document("a", "tiny")],
            lambda t: [[1]] * len(t),
            tmp_path,
            seq_len=8,
            eos_id=2,
            pad_id=0,
        )
