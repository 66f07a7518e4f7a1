"""The inference engine (no Kafka, no database): see :class:`Engine`."""

from ..sampling import SamplingParams
from .engine import Engine
from .runtime import RuntimeOptions
from .types import (
    FinishReason,
    GenerationRequest,
    GenerationResult,
    OnResult,
    OnToken,
    TokenEvent,
)

__all__ = [
    "Engine",
    "FinishReason",
    "GenerationRequest",
    "GenerationResult",
    "OnResult",
    "OnToken",
    "RuntimeOptions",
    "SamplingParams",
    "TokenEvent",
]
