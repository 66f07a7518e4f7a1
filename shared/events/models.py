"""Event payloads (``data``) and the envelope class of each versioned event type.

Adding an optional field is a compatible change. Renaming, removing or tightening a
field is a breaking change: add a ``.v2`` type beside the ``.v1`` one instead.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from .envelope import Envelope, Strict

#: Ids are opaque strings: non-empty, bounded, no control characters.
Id = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
]

InteractionAction = Literal["view", "click", "like", "share", "dwell"]
ContentKind = Literal["news", "script", "lyrics", "assistant", "digest"]


#: A short text: no control characters but tab and newline (Postgres cannot store NUL).
Line = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
Tag = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
]


# --- catalog --------------------------------------------------------------------------
class Item(Strict):
    """An article (or video, film, podcast, generated piece...) as the newsroom publishes
    it. An upsert: a later event for the same ``item_id`` replaces the item whole."""

    item_id: Id
    #: Free-form but short: article, video, podcast, news, script, lyrics, film, ...
    kind: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_-]*$")
    title: Annotated[Line, Field(min_length=1, max_length=500)]
    summary: Annotated[Line, Field(max_length=4_000)] = ""
    #: The text itself; the event size limit (MARQUEE_MAX_EVENT_BYTES) bounds it too.
    body: Annotated[Line, Field(max_length=200_000)] = ""
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    #: A BCP 47 tag such as ``en`` or ``pt-BR``.
    language: str | None = Field(default=None, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    published_at: AwareDatetime
    #: From this time on the item is never recommended.
    expires_at: AwareDatetime | None = None
    #: Withdrawn: never recommended, whatever its interactions.
    hidden: bool = False
    url: str | None = Field(default=None, max_length=2_000, pattern=r"^https?://[^\s]+$")


class ItemEvent(Envelope[Item]):
    event_type = "marquee.item.v1"
    type: Literal["marquee.item.v1"] = "marquee.item.v1"


# --- interactions ---------------------------------------------------------------------
class Interaction(Strict):
    """Something a user did with an item."""

    user_id: Id
    item_id: Id
    action: InteractionAction
    #: Seconds spent; required for ``dwell``, optional otherwise.
    dwell_seconds: float | None = Field(default=None, ge=0, le=86_400)
    #: Explicit rating where the app has one (MovieLens replays carry 1-5 stars).
    rating: float | None = Field(default=None, ge=0, le=10)
    #: The recommendation list the item was picked from (``marquee.impression.v1``), so a
    #: click, like or dwell is attributed to that list and position; absent: organic.
    impression_id: Id | None = None

    @model_validator(mode="after")
    def _dwell_needs_seconds(self) -> Interaction:
        if self.action == "dwell" and self.dwell_seconds is None:
            raise ValueError("a dwell interaction needs dwell_seconds")
        return self


class InteractionEvent(Envelope[Interaction]):
    event_type = "marquee.interaction.v1"
    type: Literal["marquee.interaction.v1"] = "marquee.interaction.v1"


# --- impressions -----------------------------------------------------------------------
#: A short lower-case name: a strategy, a surface, an experiment or an arm.
Name = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.:-]*$")
]


class ShownItem(Strict):
    item_id: Id
    #: 1 is the top of the list.
    position: int = Field(ge=1, le=200)
    score: float = Field(allow_inf_nan=False)
    #: In an interleaved list, the arm (ranker) that contributed this slot.
    arm: Name | None = None


class Impression(Strict):
    """A recommendation list as it was shown to a user: what, where, and by which model."""

    impression_id: Id
    user_id: Id
    items: list[ShownItem] = Field(max_length=200)
    #: ``als``, ``popularity``, or what a front end that logs its own lists calls its own.
    strategy: Name
    model_version: int | None = None
    #: Where the list was shown: ``home``, ``article-footer``, ``digest``...
    surface: Name = "default"
    experiment: Name | None = None
    arm: Name | None = None

    @model_validator(mode="after")
    def _positions_unique(self) -> Impression:
        positions = [item.position for item in self.items]
        if len(set(positions)) != len(positions):
            raise ValueError("items: each position may be shown once")
        return self


class ImpressionEvent(Envelope[Impression]):
    event_type = "marquee.impression.v1"
    type: Literal["marquee.impression.v1"] = "marquee.impression.v1"


# --- content generation -----------------------------------------------------------------
class ContentRequest(Strict):
    """An editor's or app's request for generated text."""

    request_id: Id
    kind: ContentKind
    #: The brief or question; a ``digest`` needs none (its text comes from the catalog).
    prompt: str = Field(default="", max_length=8_000)
    max_new_tokens: int = Field(default=256, ge=1, le=4_096)
    temperature: float = Field(default=0.7, ge=0, le=2)
    top_k: int = Field(default=50, ge=0, le=1_000)
    top_p: float = Field(default=0.95, gt=0, le=1)
    repetition_penalty: float = Field(default=1.1, ge=1, le=2)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stop: list[str] = Field(default_factory=list, max_length=8)
    deadline_seconds: float | None = Field(default=None, gt=0, le=3_600)
    #: Whose briefing a ``digest`` is (required for one).
    user_id: Id | None = None
    #: How many recommended items a ``digest`` introduces (unset: the generator's setting).
    max_items: int | None = Field(default=None, ge=1, le=20)
    #: An ``assistant`` answer from retrieved catalog items, citing them; ``false``: the
    #: model answers on its own, as before.
    grounded: bool = True

    @model_validator(mode="after")
    def _kind_has_what_it_needs(self) -> ContentRequest:
        if self.kind == "digest":
            if self.user_id is None:
                raise ValueError("a digest request needs user_id")
        elif not self.prompt:
            raise ValueError(f"a {self.kind} request needs a prompt")
        return self


class ContentRequestEvent(Envelope[ContentRequest]):
    event_type = "marquee.content_request.v1"
    type: Literal["marquee.content_request.v1"] = "marquee.content_request.v1"


class GenerationTimings(Strict):
    queue_seconds: float = Field(ge=0)
    first_token_seconds: float | None = Field(default=None, ge=0)
    total_seconds: float = Field(ge=0)


class GeneratedContent(Strict):
    """Exactly one reply per request: ``ok`` with text, or ``error`` with a reason."""

    request_id: Id
    reply_id: Id
    status: Literal["ok", "error"]
    kind: ContentKind
    text: str | None = Field(default=None, max_length=200_000)
    error: str | None = Field(default=None, max_length=4_000)
    model: str = Field(min_length=1, max_length=256)
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    finish_reason: Literal["stop", "length", "deadline", "error"] | None = None
    timings: GenerationTimings | None = None
    item_id: str | None = None
    #: The catalog items the text was written from (a digest's, a grounded answer's).
    item_ids: list[Id] | None = Field(default=None, max_length=50)
    #: The impression of the recommendations a digest introduces, when the recommender
    #: sent one: clicks on the briefing are attributed to it.
    impression_id: Id | None = None

    @model_validator(mode="after")
    def _status_matches_body(self) -> GeneratedContent:
        if self.status == "ok" and self.text is None:
            raise ValueError("an ok reply needs text")
        if self.status == "error" and not self.error:
            raise ValueError("an error reply needs error")
        return self


class GeneratedContentEvent(Envelope[GeneratedContent]):
    event_type = "marquee.generated_content.v1"
    type: Literal["marquee.generated_content.v1"] = "marquee.generated_content.v1"


class ContentChunk(Strict):
    """Partial output of a request as it is generated (the optional token stream).

    ``index`` counts a request's chunks from 0; the chunks in order add up to the reply's
    text. The reply on ``content-generated`` remains the answer of record."""

    request_id: Id
    index: int = Field(ge=0)
    text: str = Field(max_length=4_000)


class ContentChunkEvent(Envelope[ContentChunk]):
    event_type = "marquee.content_chunk.v1"
    type: Literal["marquee.content_chunk.v1"] = "marquee.content_chunk.v1"


# --- recommendations over Kafka ---------------------------------------------------------
class RecommendationRequest(Strict):
    request_id: Id
    user_id: Id
    k: int = Field(default=10, ge=1, le=200)
    exclude_seen: bool = True
    kind: str | None = Field(default=None, max_length=64)
    #: The most items of one tag in the list (0: no cap); unset: the recommender's setting.
    max_per_tag: int | None = Field(default=None, ge=0, le=200)
    #: Where the list will be shown, recorded on its impression.
    surface: Name | None = None


class RecommendationRequestEvent(Envelope[RecommendationRequest]):
    event_type = "marquee.recommendation_request.v1"
    type: Literal["marquee.recommendation_request.v1"] = "marquee.recommendation_request.v1"


class ScoredItem(Strict):
    item_id: Id
    score: float = Field(allow_inf_nan=False)
    #: From the catalog, when the item is in it.
    title: str | None = Field(default=None, max_length=500)
    kind: str | None = Field(default=None, max_length=32)


class Recommendations(Strict):
    request_id: Id
    user_id: Id
    items: list[ScoredItem] = Field(max_length=200)
    strategy: Literal["als", "popularity"]
    model_version: int | None = None
    #: Why ``items`` is empty when no recommendations could be made (no model yet).
    error: str | None = Field(default=None, max_length=1_000)
    #: Send it back on the interactions this list leads to (``marquee.impression.v1``).
    impression_id: Id | None = None


class RecommendationsEvent(Envelope[Recommendations]):
    event_type = "marquee.recommendations.v1"
    type: Literal["marquee.recommendations.v1"] = "marquee.recommendations.v1"


# --- operations -------------------------------------------------------------------------
class Heartbeat(Strict):
    service: str = Field(min_length=1, max_length=64)
    instance: str = Field(min_length=1, max_length=128)
    status: Literal["starting", "ok", "degraded", "stopping"]
    started_at: AwareDatetime
    version: str = Field(max_length=64)
    counters: dict[str, float] = Field(default_factory=dict, max_length=200)
    detail: str | None = Field(default=None, max_length=1_000)


class HeartbeatEvent(Envelope[Heartbeat]):
    event_type = "marquee.heartbeat.v1"
    type: Literal["marquee.heartbeat.v1"] = "marquee.heartbeat.v1"


class DeadLetter(Strict):
    """What could not be processed, with enough context to replay it by hand."""

    source_topic: str = Field(min_length=1, max_length=249)
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    #: The original key and value, base64 (they need not be UTF-8).
    key_b64: str | None = None
    value_b64: str
    error: str = Field(min_length=1, max_length=4_000)
    error_class: str = Field(max_length=128)
    service: str = Field(max_length=64)
    failed_at: AwareDatetime


class DeadLetterEvent(Envelope[DeadLetter]):
    event_type = "marquee.dead_letter.v1"
    type: Literal["marquee.dead_letter.v1"] = "marquee.dead_letter.v1"


#: Every event type Marquee knows, by its CloudEvents ``type``.
EVENT_TYPES: dict[str, type[Envelope]] = {
    cls.event_type: cls
    for cls in (
        ItemEvent,
        InteractionEvent,
        ImpressionEvent,
        ContentRequestEvent,
        GeneratedContentEvent,
        ContentChunkEvent,
        RecommendationRequestEvent,
        RecommendationsEvent,
        HeartbeatEvent,
        DeadLetterEvent,
    )
}
