"""Documents -> a cleaned, deduplicated train/validation/test split, packed into sequences.

Splits are by document, never inside one, so no text of a validation document is ever
trained on. Dated documents split by time (the newest are held out: validation before
test, as a model is judged on text written after what it learnt from); undated ones by
a hash of their id, so a document keeps its split when the corpus grows.
Each split's documents are tokenised, joined with the end-of-text token and cut into
rows of ``seq_len`` tokens; the last row is padded, and ``mask`` says which tokens count.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import CorpusError
from .sources import Document

SPLITS = ("train", "validation", "test")
#: Control characters other than tab and newline (form feeds, NULs from bad exports).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")
CORPUS_FILE = "corpus.npz"
STATS_FILE = "corpus.json"


def clean(text: str) -> str:
    """NFC, Unix newlines, no control characters, single spaces, at most one blank line."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub(" ", text)
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _key(text: str) -> str:
    return hashlib.sha256(" ".join(text.lower().split()).encode()).hexdigest()


@dataclass(frozen=True)
class SplitPlan:
    validation: float = 0.1
    test: float = 0.1
    #: Dated documents: the first date of the validation / test split (else by fraction).
    validation_from: datetime | None = None
    test_from: datetime | None = None
    min_chars: int = 200


@dataclass
class CorpusStats:
    documents_in: int = 0
    duplicates: int = 0
    too_short: int = 0
    documents: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)
    dates: dict[str, list[str | None]] = field(default_factory=dict)
    fingerprint: str = ""
    seq_len: int = 0
    by: str = "hash"


def deduplicate(docs: Iterable[Document], min_chars: int, stats: CorpusStats) -> list[Document]:
    """Cleaned documents, the first of each text kept (case and spacing ignored)."""
    seen: set[str] = set()
    kept = []
    for doc in docs:
        stats.documents_in += 1
        text = clean(doc.text)
        if len(text) < min_chars:
            stats.too_short += 1
            continue
        key = _key(text)
        if key in seen:
            stats.duplicates += 1
            continue
        seen.add(key)
        kept.append(Document(doc.doc_id, text, doc.date))
    return kept


def split(docs: list[Document], plan: SplitPlan, stats: CorpusStats) -> dict[str, list[Document]]:
    if not docs:
        raise CorpusError(
            f"no usable documents ({stats.documents_in} read, {stats.duplicates} duplicates, "
            f"{stats.too_short} shorter than {plan.min_chars} characters)"
        )
    out: dict[str, list[Document]] = {s: [] for s in SPLITS}
    if all(d.date is not None for d in docs):
        stats.by = "time"
        ordered = sorted(docs, key=lambda d: (d.date, d.doc_id))
        n = len(ordered)
        for i, doc in enumerate(ordered):
            if plan.test_from is not None or plan.validation_from is not None:
                if plan.test_from is not None and doc.date >= plan.test_from:
                    out["test"].append(doc)
                elif plan.validation_from is not None and doc.date >= plan.validation_from:
                    out["validation"].append(doc)
                else:
                    out["train"].append(doc)
            elif i >= n * (1 - plan.test):
                out["test"].append(doc)
            elif i >= n * (1 - plan.test - plan.validation):
                out["validation"].append(doc)
            else:
                out["train"].append(doc)
    else:
        for doc in docs:
            u = int(_key(doc.doc_id)[:8], 16) / 16**8
            name = (
                "test"
                if u < plan.test
                else "validation"
                if u < plan.test + plan.validation
                else "train"
            )
            out[name].append(doc)
    if not out["train"]:
        raise CorpusError(
            f"the split left no training documents (of {len(docs)}); lower --validation/--test"
        )
    for name, part in out.items():
        stats.documents[name] = len(part)
        dates = [d.date for d in part if d.date is not None]
        stats.dates[name] = (
            [min(dates).date().isoformat(), max(dates).date().isoformat()]
            if dates
            else [None, None]
        )
    return out


def pack(
    token_lists: Iterable[list[int]], seq_len: int, sep: int, pad: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, mask)``, int32 and bool ``[rows, seq_len]``: documents joined by ``sep``."""
    stream: list[int] = []
    for ids in token_lists:
        stream.extend(ids)
        stream.append(sep)
    rows = max(1, -(-len(stream) // seq_len)) if stream else 0
    ids = np.full((rows, seq_len), pad, np.int32)
    mask = np.zeros((rows, seq_len), bool)
    flat = np.asarray(stream, np.int32)
    ids.reshape(-1)[: flat.size] = flat
    mask.reshape(-1)[: flat.size] = True
    return ids, mask


@dataclass(frozen=True)
class PackedCorpus:
    ids: dict[str, np.ndarray]
    mask: dict[str, np.ndarray]
    stats: dict

    @property
    def seq_len(self) -> int:
        return int(self.ids["train"].shape[1])

    @classmethod
    def load(cls, directory: Path) -> PackedCorpus:
        try:
            with np.load(directory / CORPUS_FILE) as data:
                ids = {s: data[f"{s}_ids"] for s in SPLITS}
                mask = {s: data[f"{s}_mask"] for s in SPLITS}
            stats = json.loads((directory / STATS_FILE).read_text(encoding="utf-8"))
        except (OSError, KeyError, ValueError) as exc:
            raise CorpusError(
                f"{directory} holds no corpus ({exc}): run `marquee lm corpus` first"
            ) from None
        return cls(ids, mask, stats)


def build(
    docs: Iterable[Document],
    encode: Callable[[list[str]], list[list[int]]],
    out_dir: Path,
    *,
    seq_len: int,
    eos_id: int,
    pad_id: int,
    plan: SplitPlan = SplitPlan(),
) -> CorpusStats:
    """Clean, deduplicate, split, tokenise and pack ``docs`` into ``out_dir``."""
    stats = CorpusStats(seq_len=seq_len)
    kept = deduplicate(docs, plan.min_chars, stats)
    parts = split(kept, plan, stats)
    arrays: dict[str, np.ndarray] = {}
    digest = hashlib.sha256()
    for name in SPLITS:
        tokens = encode([d.text for d in parts[name]]) if parts[name] else []
        for d in parts[name]:
            digest.update(f"{name}:{_key(d.text)}\n".encode())
        stats.tokens[name] = sum(len(t) + 1 for t in tokens)
        ids, mask = pack(tokens, seq_len, eos_id, pad_id)
        stats.sequences[name] = int(ids.shape[0])
        arrays[f"{name}_ids"], arrays[f"{name}_mask"] = ids, mask
    digest.update(f"seq_len={seq_len}".encode())
    stats.fingerprint = digest.hexdigest()[:16]
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_dir / CORPUS_FILE, **arrays)
    (out_dir / STATS_FILE).write_text(json.dumps(asdict(stats), indent=2) + "\n", encoding="utf-8")
    return stats


def describe(stats: CorpusStats) -> list[str]:
    lines = [
        f"documents read {stats.documents_in}, duplicates dropped {stats.duplicates}, "
        f"too short {stats.too_short}; split by {stats.by}; fingerprint {stats.fingerprint}"
    ]
    for name in SPLITS:
        first, last = stats.dates.get(name, [None, None])
        span = f", {first} .. {last}" if first else ""
        lines.append(
            f"{name:<10} {stats.documents[name]:>6} documents {stats.tokens[name]:>10,} tokens "
            f"{stats.sequences[name]:>7} x {stats.seq_len}{span}"
        )
    return lines
