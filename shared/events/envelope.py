"""The CloudEvents 1.0 structured-mode envelope every Marquee event travels in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic import Strict as PydanticStrict

from ..errors import InvalidEvent

D = TypeVar("D", bound=BaseModel)

#: CloudEvents ``source`` for events made by Marquee's own tools.
DEFAULT_SOURCE = "urn:marquee:cli"


def describe(exc: ValidationError) -> str:
    """One line naming each bad field and what was expected."""
    parts = []
    for err in exc.errors(include_url=False):
        if err["type"] == "union_tag_invalid":
            got = err.get("ctx", {}).get("tag", "?")
            expected = err.get("ctx", {}).get("expected_tags", "")
            return f"unknown event type {got!r}; known types: {expected}"
        if err["type"] == "union_tag_not_found":
            return "missing field 'type' (the CloudEvents type, e.g. 'marquee.interaction.v1')"
        loc = [str(p) for p in err["loc"]]
        if loc and loc[0].startswith("marquee."):  # a union's tag is not part of the path
            loc = loc[1:]
        msg = {"extra_forbidden": "unknown field", "missing": "field required"}.get(
            err["type"], err["msg"]
        )
        parts.append(f"{'.'.join(loc) or 'event'}: {msg}")
    return "; ".join(parts)


class Strict(BaseModel):
    """Base for event payloads: unknown fields and silent coercions are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Envelope(BaseModel, Generic[D]):
    """CloudEvents 1.0, JSON structured mode. ``source`` + ``id`` is the idempotency key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The versioned CloudEvents ``type`` this envelope carries, e.g. ``marquee.interaction.v1``.
    event_type: ClassVar[str]

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")
    source: str = Field(min_length=1, max_length=256)
    type: str
    #: RFC 3339 text on the wire (strict: a bare epoch number is refused).
    time: Annotated[AwareDatetime, PydanticStrict()]
    subject: str | None = Field(default=None, max_length=256)
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = Field(default=None, max_length=512)
    data: D

    @classmethod
    def create(
        cls,
        data: D | dict[str, Any],
        *,
        source: str = DEFAULT_SOURCE,
        id: str | None = None,
        time: datetime | None = None,
        subject: str | None = None,
    ):
        """Wrap ``data`` in a new envelope with a fresh id and the current time.

        Raises :class:`InvalidEvent` naming every field that is wrong.
        """
        try:
            return cls(
                id=id or str(uuid.uuid4()),
                source=source,
                type=cls.event_type,
                time=time or datetime.now(UTC),
                subject=subject,
                data=data,
            )
        except ValidationError as exc:
            raise InvalidEvent(f"invalid {cls.event_type}: {describe(exc)}") from None

    @property
    def idempotency_key(self) -> str:
        return f"{self.source}/{self.id}"
