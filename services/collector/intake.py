"""Which events of a request may be published, and the answer for each (pure).

Per event, in this order: the key must allow its ``type`` (403), the event must be valid by
the shared contracts (400: the codec every consumer applies) and its ``source`` must be the
app's (403). The admitted events are then published together; the answer lists a verdict
per event by index and id. A bad event never stops the others of its batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import InvalidEvent
from shared.events import EventCodec
from shared.events.envelope import Envelope
from shared.kafka.publisher import ACCEPTED, FAILED, REJECTED, BatchReport

from .body import Body
from .keys import App

#: A verdict's code, as the HTTP status a one-event request answers with.
CODES = {ACCEPTED: 202, FAILED: 503}


@dataclass(frozen=True)
class Verdict:
    index: int
    id: str | None
    status: str
    code: int
    reason: str | None = None

    def as_json(self) -> dict:
        body = {"index": self.index, "id": self.id, "status": self.status, "code": self.code}
        if self.reason:
            body["reason"] = self.reason
        return body


def admit(
    app: App, body: Body, codec: EventCodec
) -> tuple[list[Verdict | None], list[Envelope], list[int]]:
    """``(verdicts, events, indexes)``: a verdict for each event refused here (``None`` for
    the admitted ones), and the admitted events with their indexes in the body."""
    verdicts: list[Verdict | None] = []
    events: list[Envelope] = []
    indexes: list[int] = []
    for index, parsed in enumerate(body.events):
        if parsed.raw is None and parsed.event is None:
            verdicts.append(Verdict(index, None, REJECTED, 400, parsed.problem))
            continue
        if parsed.type is not None and parsed.type not in app.event_types:
            allowed = ", ".join(sorted(app.event_types))
            reason = f"this key may send {allowed}, not {parsed.type!r}"
            verdicts.append(Verdict(index, parsed.id, REJECTED, 403, reason))
            continue
        try:
            event = parsed.event or codec.decode(parsed.raw)
        except InvalidEvent as exc:
            verdicts.append(Verdict(index, parsed.id, REJECTED, 400, exc.reason))
            continue
        if event.source != app.source:
            reason = f"this key sends events of source {app.source!r}, not {event.source[:100]!r}"
            verdicts.append(Verdict(index, event.id, REJECTED, 403, reason))
            continue
        verdicts.append(None)
        events.append(event)
        indexes.append(index)
    return verdicts, events, indexes


def merge(verdicts: list[Verdict | None], indexes: list[int], report: BatchReport) -> list[Verdict]:
    """The publisher's outcome for each admitted event, in its place among the others."""
    merged = list(verdicts)
    for index, outcome in zip(indexes, report.outcomes, strict=True):
        code = CODES.get(outcome.status, 400)
        merged[index] = Verdict(index, outcome.id, outcome.status, code, outcome.reason)
    return [v for v in merged if v is not None]


def answer(verdicts: list[Verdict], batched: bool) -> tuple[int, dict]:
    """The request's status and JSON body. One event: its own code. A batch: 200 with a
    verdict each, or 503 when any admitted event was not confirmed (resending the whole
    batch is safe: ``source`` + ``id`` makes the copies of the accepted ones harmless)."""
    counts = {s: sum(v.status == s for v in verdicts) for s in (ACCEPTED, REJECTED, FAILED)}
    body = {**counts, "results": [v.as_json() for v in verdicts]}
    if not batched:
        return verdicts[0].code, body
    return (503 if counts[FAILED] else 200), body
