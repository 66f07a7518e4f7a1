"""The CloudEvents 1.0 structured-mode envelope every Marquee event travels in."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic import Strict as PydanticStrict
from pydantic_core import PydanticCustomError

from ..errors import InvalidEvent

D = TypeVar("D", bound=BaseModel)

#: CloudEvents ``source`` for events made by Marquee's own tools.
DEFAULT_SOURCE = "urn:marquee:cli"

#: Attribute text that names or routes things: no control characters (NUL included, which
#: no Postgres text column can hold).
NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]+$"
#: RFC 3339 ``date-time`` (CloudEvents ``time``): "1735689600" is not one.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
#: CloudEvents extension attribute names: lower-case ASCII letters and digits; the spec
#: asks producers for at most 20 characters.
EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
#: Where Marquee's own messages name the field themselves.
_OWN_MESSAGE = "marquee_event"


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
        if err["type"] == _OWN_MESSAGE:
            parts.append(err["msg"])
            continue
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


ExtensionValue = Annotated[str, Field(max_length=1024)] | int | bool


class Envelope(BaseModel, Generic[D]):
    """CloudEvents 1.0, JSON structured mode. ``source`` + ``id`` is the idempotency key.

    Extension attributes (any other lower-case top-level attribute, as the spec allows)
    are accepted and kept: they travel on with the event and into its dead letter, and
    Marquee reads none of them. ``data`` stays strict: an unknown field there is refused.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, ExtensionValue]  # type: ignore[assignment]

    #: The versioned CloudEvents ``type`` this envelope carries, e.g. ``marquee.interaction.v1``.
    event_type: ClassVar[str]

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")
    source: str = Field(min_length=1, max_length=256, pattern=NO_CONTROL)
    type: str
    #: RFC 3339 text on the wire (strict: a bare epoch number is refused, in a string too).
    time: Annotated[AwareDatetime, PydanticStrict()]
    subject: str | None = Field(default=None, max_length=256, pattern=NO_CONTROL)
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = Field(default=None, max_length=512, pattern=NO_CONTROL)
    data: D

    @field_validator("time", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not _RFC3339.match(value):
                raise PydanticCustomError(
                    _OWN_MESSAGE,
                    "time: must be an RFC 3339 date-time with a timezone, such as "
                    "2025-01-02T03:04:05Z",
                )
            return datetime.fromisoformat(value.upper())  # strict mode then takes it as is
        return value

    @model_validator(mode="after")
    def _extension_names(self) -> Envelope:
        for name in self.__pydantic_extra__ or {}:
            if not EXTENSION_NAME.match(name):
                raise PydanticCustomError(
                    _OWN_MESSAGE,
                    f"{name[:40]}: unknown field (extension attribute names are lower-case "
                    "letters and digits, at most 20)",
                )
        return self

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
                specversion="1.0",
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
