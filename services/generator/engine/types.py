"""What the engine takes and gives back; plain data, safe to pass between threads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ..sampling import SamplingParams

FinishReason = Literal["stop", "length", "deadline", "error"]


@dataclass(frozen=True)
class GenerationRequest:
    #: The full text the model continues (render a kind's prompt with ``Engine.render``).
    prompt: str
    params: SamplingParams = field(default_factory=SamplingParams)
    #: Opaque to the engine; echoed in token events and results.
    request_id: str = ""
    #: ``time.monotonic()`` value after which the request stops with finish "deadline".
    deadline: float | None = None


@dataclass(frozen=True)
class TokenEvent:
    """One generated token of one request, as it is produced."""

    index: int  # position of the request in the batch
    request_id: str
    token_id: int
    #: New text this token completes; "" while held back (part of a character or of a
    #: possible stop sequence). All of a request's pieces add up to its result's text.
    text: str


OnToken = Callable[[TokenEvent], None]


@dataclass(frozen=True)
class GenerationResult:
    request_id: str
    text: str
    #: Generated ids, the end-of-sequence token included when one ended the text.
    token_ids: tuple[int, ...]
    prompt_tokens: int
    finish_reason: FinishReason
    #: Seconds from the start of ``generate_batch`` to this request's first token.
    first_token_seconds: float | None
    #: Seconds from the start of ``generate_batch`` to this request's end.
    total_seconds: float
    error: str | None = None

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def ok(self) -> bool:
        return self.error is None


#: Called with a request's position in the batch and its result as soon as it finishes.
OnResult = Callable[[int, GenerationResult], None]
