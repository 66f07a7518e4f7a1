"""Choosing the next token from logits: pure numpy, one row at a time.

The order is Hugging Face ``generate``'s: repetition penalty, then temperature, top-k
and top-p; temperature 0 means greedy (argmax after the penalty). A seed makes a
request's draws reproducible whatever else shares its batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .errors import RequestError


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_k: int = 50
    top_p: float = 0.95
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    #: Keep going past end-of-sequence tokens (benchmarks want fixed lengths).
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be >= 1, not {self.max_new_tokens}")
        if not self.temperature >= 0:
            problems.append(f"temperature must be >= 0, not {self.temperature}")
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0 (0: off), not {self.top_k}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], not {self.top_p}")
        if self.seed is not None and not 0 <= self.seed < 2**64:
            problems.append(f"seed must be in [0, 2**64), not {self.seed}")
        if not self.repetition_penalty > 0:
            problems.append(f"repetition_penalty must be > 0, not {self.repetition_penalty}")
        if problems:
            raise RequestError("; ".join(problems))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @classmethod
    def of(cls, source: object) -> SamplingParams:
        """From anything with these fields as attributes: a ``ContentRequest``, the CLI's
        parsed arguments. Raises :class:`RequestError` when a value is out of range."""
        return cls(
            max_new_tokens=source.max_new_tokens,
            temperature=source.temperature,
            top_k=source.top_k,
            top_p=source.top_p,
            repetition_penalty=source.repetition_penalty,
            seed=source.seed,
            stop=tuple(source.stop),
        )


def apply_repetition_penalty(logits: np.ndarray, seen: np.ndarray, penalty: float) -> np.ndarray:
    """CTRL's penalty as transformers applies it: seen tokens' positive logits are divided
    by ``penalty``, negative ones multiplied. Returns a new array."""
    out = np.array(logits, dtype=np.float32, copy=True)
    if penalty != 1.0 and seen.size:
        picked = out[seen]
        out[seen] = np.where(picked > 0, picked / penalty, picked * penalty)
    return out


def candidates(logits: np.ndarray, params: SamplingParams) -> tuple[np.ndarray, np.ndarray]:
    """Token ids left after top-k and top-p, and their probabilities (summing to 1)."""
    scaled = logits.astype(np.float64) / params.temperature
    if 0 < params.top_k < scaled.size:
        ids = np.argpartition(-scaled, params.top_k - 1)[: params.top_k]
    else:
        ids = np.arange(scaled.size)
    ids = ids[np.argsort(-scaled[ids], kind="stable")]
    probs = np.exp(scaled[ids] - scaled[ids[0]])
    probs /= probs.sum()
    if params.top_p < 1.0:
        # Keep the smallest prefix whose mass reaches top_p (at least one token).
        before = np.cumsum(probs) - probs
        keep = before < params.top_p
        ids, probs = ids[keep], probs[keep] / probs[keep].sum()
    return ids, probs


class Sampler:
    """One request's token chooser: its parameters, random stream and penalty history."""

    def __init__(self, params: SamplingParams, prompt_ids: Iterable[int] = ()) -> None:
        self.params = params
        self.rng = np.random.default_rng(params.seed)
        self._seen = set(prompt_ids)

    def __call__(self, logits: np.ndarray) -> int:
        p = self.params
        if p.repetition_penalty != 1.0:
            seen = np.fromiter(self._seen, dtype=np.int64, count=len(self._seen))
            logits = apply_repetition_penalty(logits, seen, p.repetition_penalty)
        if p.greedy:
            token = int(np.argmax(logits))
        else:
            ids, probs = candidates(logits, p)
            token = int(ids[self.rng.choice(len(ids), p=probs)]) if len(ids) > 1 else int(ids[0])
        self._seen.add(token)
        return token
