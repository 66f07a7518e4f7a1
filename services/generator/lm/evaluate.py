"""Perplexity through the ONNX engine (the model the generator serves) and fixed greedy samples.

Rows are the packed corpus' rows, each scored alone (no carry-over between rows), so the
number is comparable with the JAX training loss on the same rows. Needs no JAX.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

#: Prompts whose greedy continuations are stored for side-by-side reading.
PROMPTS = (
    "Mr. Speaker, Mr. Vice President, Members of Congress, my fellow Americans:",
    "The state of our economy",
    "Tonight I want to talk about the future of",
    "Breaking news: the city council voted",
)


@dataclass(frozen=True)
class Perplexity:
    nll: float
    tokens: int
    seconds: float

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    top = logits.max(-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))


def perplexity(engine, ids: np.ndarray, mask: np.ndarray, batch: int = 4) -> Perplexity:
    """Mean next-token NLL of ``ids`` (right-padded rows, ``mask`` true for tokens)."""
    decoder = engine.decoder
    total, count = 0.0, 0
    started = time.perf_counter()
    for start in range(0, len(ids), batch):
        rows, valid = ids[start : start + batch].astype(np.int64), mask[start : start + batch]
        positions = np.broadcast_to(np.arange(rows.shape[1]), rows.shape)
        logits, _ = decoder.step(
            rows, valid.astype(np.int64), positions, decoder.empty_cache(len(rows)), all_logits=True
        )
        logp = _log_softmax(logits[:, :-1].astype(np.float64))
        picked = np.take_along_axis(logp, rows[:, 1:, None], axis=-1)[..., 0]
        scored = valid[:, 1:] & valid[:, :-1]
        total -= float(picked[scored].sum())
        count += int(scored.sum())
    return Perplexity(total / max(count, 1), count, time.perf_counter() - started)


def greedy_samples(engine, prompts=PROMPTS, max_new_tokens: int = 48) -> list[dict]:
    from ..engine import GenerationRequest, SamplingParams

    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    results = engine.generate_batch([GenerationRequest(p, params) for p in prompts])
    return [{"prompt": p, "output": r.text} for p, r in zip(prompts, results, strict=True)]
