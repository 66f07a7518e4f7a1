"""Prompts read in chunks through the KV cache: the same logits and tokens as one pass
(against the numpy reference too), deadlines and a stop seen between chunks, the prompt
budget checked before any pass."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from services.generator.engine import Engine, GenerationRequest, RuntimeOptions, SamplingParams
from services.generator.engine import engine as engine_module
from services.generator.errors import RequestError, Stopping
from services.generator.sampling import Sampler
from tests.services.generator.generator_helpers import reference_logits
from tests.services.generator.test_engine import CACHE_ATOL, PROMPTS
from tests.services.generator.test_optimum import EXPORT

GREEDY = SamplingParams(max_new_tokens=12, temperature=0, ignore_eos=True)
#: Chunks of one position, of a few (uneven against the prompts), and one pass.
CHUNKS = [1, 7, 10_000]
#: The numpy reference against fp32 graphs, as in test_convert.
FP32_ATOL = 2e-4


@pytest.fixture
def logits_seen(monkeypatch):
    """Every logits vector each request's sampler is given, by request (in order)."""
    samplers: list[list[np.ndarray]] = []

    class Recording(Sampler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.seen: list[np.ndarray] = []
            samplers.append(self.seen)

        def __call__(self, logits):
            self.seen.append(np.array(logits, dtype=np.float64))
            return super().__call__(logits)

    monkeypatch.setattr(engine_module, "Sampler", Recording)
    return samplers


def run_chunked(engine, requests, chunk, logits_seen, monkeypatch):
    monkeypatch.setattr(engine, "prefill_chunk_tokens", chunk)
    logits_seen.clear()
    results = engine.generate_batch(requests)
    return results, [np.array(seen) for seen in logits_seen]


@pytest.fixture(scope="module")
def optimum_engine():
    return Engine(EXPORT, RuntimeOptions(provider="cpu", threads=1))


@pytest.mark.parametrize("graph", ["gqa", "optimum"])
def test_chunked_prefill_gives_the_logits_and_tokens_of_one_pass(
    graph, tiny_engine, optimum_engine, logits_seen, monkeypatch
):
    """A batch of prompts of different lengths, left-padded: short rows are all padding
    for the first chunks. Shared buffers (fused attention) and a concatenated cache with
    every position's logits (an Optimum export) alike."""
    engine = tiny_engine if graph == "gqa" else optimum_engine
    requests = [GenerationRequest(p, GREEDY, f"r{i}") for i, p in enumerate(PROMPTS)]
    runs = {c: run_chunked(engine, requests, c, logits_seen, monkeypatch) for c in CHUNKS}
    whole, whole_logits = runs[CHUNKS[-1]]
    for chunk in CHUNKS[:-1]:
        results, logits = runs[chunk]
        assert [r.token_ids for r in results] == [r.token_ids for r in whole], chunk
        assert [r.text for r in results] == [r.text for r in whole]
        for got, expected in zip(logits, whole_logits, strict=True):
            np.testing.assert_allclose(got, expected, rtol=0, atol=CACHE_ATOL)


@pytest.mark.parametrize("variant", ["fp32", "q4-ops"])  # shared buffers, concatenated cache
def test_chunked_prefill_matches_the_numpy_reference(
    variant, tiny, tiny_dirs, logits_seen, monkeypatch
):
    _, cfg, ref = tiny
    engine = Engine(tiny_dirs[variant], RuntimeOptions(provider="cpu", threads=1))
    for prompt in PROMPTS[1:3]:
        ids = engine.tokenizer.encode(prompt)
        one = SamplingParams(max_new_tokens=1, temperature=0)
        run_chunked(engine, [GenerationRequest(prompt, one)], 3, logits_seen, monkeypatch)
        (first,) = logits_seen[0]
        np.testing.assert_allclose(first, reference_logits(ref, cfg, ids)[-1], atol=FP32_ATOL)


def slow_steps(engine, monkeypatch, seconds: float, after=None) -> list[int]:
    """Make every pass take ``seconds`` (as a long prompt's chunks do); ``after(n)`` runs
    after the n-th pass. Returns the widths of the passes made."""
    widths: list[int] = []
    step = engine.decoder.step

    def slow(input_ids, *args, **kwargs):
        time.sleep(seconds)
        out = step(input_ids, *args, **kwargs)
        widths.append(input_ids.shape[1])
        if after is not None:
            after(len(widths))
        return out

    monkeypatch.setattr(engine.decoder, "step", slow)
    return widths


def test_a_deadline_that_passes_while_the_prompt_is_read_ends_that_request_there(
    tiny_engine, monkeypatch
):
    long = "a" * 90  # one token a letter: 90 positions, 15 chunks of 6
    params = SamplingParams(max_new_tokens=4, temperature=0)
    alone = tiny_engine.generate(GenerationRequest(PROMPTS[0], params, "kept"))
    monkeypatch.setattr(tiny_engine, "prefill_chunk_tokens", 6)  # each row alone
    widths = slow_steps(tiny_engine, monkeypatch, 0.01)
    finished = []
    started = time.monotonic()
    late, kept = tiny_engine.generate_batch(
        [
            GenerationRequest(long, params, "late", deadline=started + 0.08),
            GenerationRequest(PROMPTS[0], params, "kept"),
        ],
        on_result=lambda index, result: finished.append((index, time.monotonic() - started)),
    )
    assert late.finish_reason == "deadline" and late.ok and late.text == ""
    assert late.completion_tokens == 0 and late.prompt_tokens == 90
    assert late.total_seconds < 0.5  # seen within a chunk, not after the whole prompt
    # The other (read first, the shorter) decodes as it does alone.
    assert kept.token_ids == alone.token_ids and kept.finish_reason == "length"
    assert [index for index, _ in finished] == [0, 1]  # each reported as it finished
    assert max(widths) == 6 and sum(widths) < 90  # the long prompt was never read whole


def test_a_stop_is_seen_between_chunks_and_refuses_later_batches(tiny_dirs, monkeypatch):
    engine = Engine(str(tiny_dirs["q4"]), RuntimeOptions(provider="cpu", threads=1))
    monkeypatch.setattr(engine, "prefill_chunk_tokens", 4)
    stopper = threading.Timer(0.05, engine.stop)
    widths = slow_steps(engine, monkeypatch, 0.01)
    stopper.start()
    started = time.monotonic()
    with pytest.raises(Stopping):
        engine.generate(GenerationRequest("a" * 90, GREEDY))
    assert time.monotonic() - started < 0.5 and 0 < len(widths) < 90 // 4
    with pytest.raises(Stopping):
        engine.generate(GenerationRequest(PROMPTS[0], GREEDY))


def test_the_prompt_budget_is_checked_before_any_pass(tiny_dirs, tiny_engine):
    room = tiny_engine.context_length - 1
    assert tiny_engine.check_prompt("a" * room) == room
    with pytest.raises(RequestError) as exc:
        tiny_engine.check_prompt("a" * (room + 1))
    assert str(exc.value) == (
        f"the prompt is {room + 1} tokens; this model's context is "
        f"{tiny_engine.context_length} tokens (at most {room} for the prompt)"
    )
    with pytest.raises(RequestError, match="empty"):
        tiny_engine.check_prompt("")
    budget = Engine(tiny_dirs["q4"], RuntimeOptions(provider="cpu"), max_prompt_tokens=10)
    assert budget.max_prompt_tokens == 10
    (result,) = budget.generate_batch([GenerationRequest("a" * 11, GREEDY)])
    assert result.finish_reason == "error" and result.error == (
        "the prompt is 11 tokens; this model's context is 96 tokens "
        "(this generator takes at most 10 prompt tokens)"
    )
    # A budget over the context is the context's.
    huge = Engine(tiny_dirs["q4"], RuntimeOptions(provider="cpu"), max_prompt_tokens=10**6)
    assert huge.max_prompt_tokens == room
