"""`marquee publish item`: the event it builds from its options, and bad input refused
before anything is sent (no broker: the send is captured)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from shared.cli import publish
from shared.cli.main import main


@pytest.fixture
def sent(monkeypatch) -> list:
    events: list = []
    monkeypatch.setattr(publish, "_send", lambda settings, event: events.append(event) or 0)
    return events


def item(*options: str) -> list[str]:
    return ["--env-file", "", "publish", "item", "--id", "a-1", "--kind", "article", *options]


def test_every_option_lands_in_the_item(sent, tmp_path):
    body = tmp_path / "body.txt"
    body.write_text("First line.\r\nSecond line.\r\n", encoding="utf-8")
    argv = item(
        "--title", "The harbour reopens", "--summary", "Ferries run again.",
        "--body-file", str(body), "--tag", "harbour", "--tag", "weather", "--language", "en",
        "--published-at", "2026-11-30T08:00:00+01:00", "--expires-at", "2026-12-30T08:00:00Z",
        "--hidden", "--url", "https://news.example/harbour",
    )  # fmt: skip
    assert main(argv) == 0
    (event,) = sent
    assert event.type == "marquee.item.v1" and event.source == "urn:marquee:cli"
    assert event.data.model_dump() == {
        "item_id": "a-1",
        "kind": "article",
        "title": "The harbour reopens",
        "summary": "Ferries run again.",
        "body": "First line.\nSecond line.\n",  # CRLF as LF: a text column holds no CR
        "tags": ["harbour", "weather"],
        "language": "en",
        "published_at": datetime(2026, 11, 30, 7, tzinfo=UTC),
        "expires_at": datetime(2026, 12, 30, 8, tzinfo=UTC),
        "hidden": True,
        "url": "https://news.example/harbour",
    }


def test_the_defaults_are_now_visible_and_empty(sent):
    assert main(item("--title", "T")) == 0
    data = sent[0].data
    assert abs(datetime.now(UTC) - data.published_at) < timedelta(seconds=5)
    assert (data.summary, data.body, data.tags, data.hidden) == ("", "", [], False)
    assert data.language is data.expires_at is data.url is None


def test_the_body_can_come_from_stdin(sent, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("piped text"))
    assert main(item("--title", "T", "--body-file", "-")) == 0
    assert sent[0].data.body == "piped text"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--kind", "Article", "--title", "T"], "data.kind"),
        (["--title", ""], "data.title"),
        (["--title", "T", "--published-at", "2025-01-01"], "invalid ISO 8601 time with a timezone"),
        (["--title", "T", "--expires-at", "soon"], "invalid ISO 8601 time"),
        (["--title", "T", "--body", "x", "--body-file", "y"], "not allowed with argument --body"),
        (["--title", "T", "--body-file", "/nonexistent/x"], "cannot read --body-file"),
        (["--title", "T", "--tag", ""], "data.tags.0"),
        (["--title", "T", "--url", "ftp://x"], "data.url"),
        (["--title", "T", "--language", "english"], "data.language"),
        (["--title", "T", "--body", "a\x00b"], "data.body"),
        ([], "required: --title"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_sent(sent, capsys, options, message):
    try:
        code = main(item(*options))
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code)
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert sent == []
