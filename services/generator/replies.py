"""The generator's replies: one per request, ``ok`` with text or ``error`` with a reason,
always small enough to store and to send. Pure logic: no Kafka, no database."""

from __future__ import annotations

import uuid
from datetime import datetime

from shared.events.models import ContentRequest, GeneratedContent, GeneratedContentEvent

from .engine.types import GenerationResult

SOURCE = "urn:marquee:generator"

#: The most text a reply may carry: ``GeneratedContent.text``'s bound.
MAX_TEXT = next(
    bound.max_length
    for bound in GeneratedContent.model_fields["text"].metadata
    if hasattr(bound, "max_length")
)


def storable(value: str | None) -> str | None:
    """``value`` as Postgres can store it: a text column cannot hold NUL (a prompt may carry
    one, and a model may emit one), so each becomes U+FFFD."""
    return value.replace("\x00", "\ufffd") if value else value


def cut_short(finish: str | None) -> str:
    """The finish reason of a text cut short: ``length``, unless a deadline ended it."""
    return "deadline" if finish == "deadline" else "length"


def error_reply(request: ContentRequest, error: str, model: str, queued: float) -> GeneratedContent:
    """The reply to a request that gets no text: ``error`` says why."""
    return GeneratedContent(
        request_id=request.request_id,
        reply_id=str(uuid.uuid4()),
        status="error",
        kind=request.kind,
        error=error[:4000],
        model=model,
        finish_reason="error",
        timings={"queue_seconds": queued, "total_seconds": queued},
    )


#: A grounded answer's text when no catalog item is relevant to the question.
NOTHING_RELEVANT = "I found nothing in the catalog about this, so I cannot answer it from there."


def nothing_relevant_reply(request: ContentRequest, model: str) -> GeneratedContent:
    """A grounded answer that says the catalog has nothing on the question (nothing is
    generated: a model asked anyway would invent)."""
    return GeneratedContent(
        request_id=request.request_id,
        reply_id=str(uuid.uuid4()),
        status="ok",
        kind=request.kind,
        text=NOTHING_RELEVANT,
        model=model,
        finish_reason="stop",
        timings={"queue_seconds": 0.0, "total_seconds": 0.0},
        item_ids=[],
    )


def generated_reply(
    request: ContentRequest, result: GenerationResult, model: str, queued: float
) -> GeneratedContent:
    """The reply to ``request`` from the engine's ``result``, after ``queued`` seconds in
    the queue; text over the schema's bound is cut as a smaller token budget would have
    cut it."""
    if not result.ok:
        return error_reply(request, result.error or "generation failed", model, queued)
    text, finish = result.text, result.finish_reason
    if len(text) > MAX_TEXT:
        text, finish = text[:MAX_TEXT], cut_short(finish)
    return GeneratedContent(
        request_id=request.request_id,
        reply_id=str(uuid.uuid4()),
        status="ok",
        kind=request.kind,
        text=text,
        model=model,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        finish_reason=finish,
        timings={
            "queue_seconds": queued,
            "first_token_seconds": result.first_token_seconds,
            "total_seconds": queued + result.total_seconds,
        },
    )


def reply_event(reply: GeneratedContent, made_at: datetime) -> GeneratedContentEvent:
    """The event of a stored reply: its id and time are the reply's, so a replayed request
    gets the very same event."""
    return GeneratedContentEvent.create(reply, source=SOURCE, id=reply.reply_id, time=made_at)


def fit_reply(reply: GeneratedContent, max_bytes: int) -> GeneratedContent:
    """``reply`` as it is stored and sent: NUL as U+FFFD (see ``storable``), and its text
    cut, as a smaller token budget would have cut it (finish reason ``length`` unless a
    deadline ended it), so that its event stays within ``max_bytes``."""
    reply = reply.model_copy(update={"text": storable(reply.text), "error": storable(reply.error)})
    limit = max_bytes - 512  # the stored event's time and id may encode a little longer
    finish = cut_short(reply.finish_reason)

    def size(r: GeneratedContent) -> int:
        event = GeneratedContentEvent.create(r, source=SOURCE)
        return len(event.model_dump_json(exclude_none=True).encode())

    now = size(reply)
    while now > limit and reply.text:
        keep = max(0, int(len(reply.text) * limit / now) - 64)
        reply = reply.model_copy(update={"text": reply.text[:keep], "finish_reason": finish})
        now = size(reply)
    return reply
