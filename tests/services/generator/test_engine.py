"""The engine on a tiny random-weight model: KV cache, batching, sampling, stopping."""

from __future__ import annotations

import time

import numpy as np
import pytest

from services.generator.engine import GenerationRequest, SamplingParams, TokenEvent

GREEDY = SamplingParams(max_new_tokens=24, temperature=0)
PROMPTS = [
    "<|im_start|>user\nthe cat<|im_end|>\n<|im_start|>assistant\n",
    "in the beginning there was the heat, and then the rain came in",
    "a",
    "<|im_start|>user\nwrite about the sea at night in the harbour<|im_end|>\n",
]
#: Cached decoding against recomputing the whole sequence: float32 summation order
#: differs (attention over a concatenated cache vs one pass), on logits of magnitude ~30.
#: Observed ~1e-5.
CACHE_ATOL = 1e-4


def test_cached_decoding_matches_recomputing_the_sequence(tiny_engine):
    d = tiny_engine.decoder
    ids = tiny_engine.tokenizer.encode(PROMPTS[1])
    prompt, rest = ids[:6], ids[6:]
    batch = np.array([prompt])
    logits, cache = d.step(batch, np.ones_like(batch), np.arange(6)[None], d.empty_cache(1))
    stepwise = [logits[0]]
    for i, token in enumerate(rest):
        total = 6 + i + 1
        logits, cache = d.step(
            np.array([[token]]), np.ones((1, total), np.int64), np.array([[total - 1]]), cache
        )
        stepwise.append(logits[0])
    assert cache.length == len(ids)
    full, _ = d.step(
        np.array([ids]),
        np.ones((1, len(ids)), np.int64),
        np.arange(len(ids))[None],
        d.empty_cache(1),
        all_logits=True,
    )
    np.testing.assert_allclose(np.array(stepwise), full[0, 5:], rtol=0, atol=CACHE_ATOL)


def test_all_logits_on_a_cache_from_earlier_steps(tiny_engine):
    """A shared-buffer cache keeps its binding (last-position logits only) for the next
    step; a step that asks for every position's logits still gets them."""
    d = tiny_engine.decoder
    ids = tiny_engine.tokenizer.encode(PROMPTS[1])[:8]
    first = np.array([ids[:4]])
    _, cache = d.step(first, np.ones_like(first), np.arange(4)[None], d.empty_cache(1))
    _, cache = d.step(np.array([[ids[4]]]), np.ones((1, 5), np.int64), np.array([[4]]), cache)
    assert cache.binding is not None
    rest = np.array([ids[5:]])
    logits, _ = d.step(
        rest, np.ones((1, 8), np.int64), np.arange(5, 8)[None], cache, all_logits=True
    )
    whole = np.array([ids])
    full, _ = d.step(
        whole, np.ones_like(whole), np.arange(8)[None], d.empty_cache(1), all_logits=True
    )
    assert logits.shape == (1, 3, full.shape[-1])
    np.testing.assert_allclose(logits[0], full[0, 5:], rtol=0, atol=CACHE_ATOL)


def test_left_padded_row_matches_the_row_alone(tiny_engine):
    d = tiny_engine.decoder
    short, long = (tiny_engine.tokenizer.encode(p) for p in PROMPTS[:2])
    width = len(long)
    ids = np.zeros((2, width), np.int64)
    mask = np.zeros((2, width), np.int64)
    ids[0, width - len(short) :], mask[0, width - len(short) :] = short, 1
    ids[1], mask[1] = long, 1
    positions = np.clip(np.cumsum(mask, 1) - 1, 0, None)
    padded, _ = d.step(ids, mask, positions, d.empty_cache(2))
    alone, _ = d.step(
        np.array([short]),
        np.ones((1, len(short)), np.int64),
        np.arange(len(short))[None],
        d.empty_cache(1),
    )
    np.testing.assert_allclose(padded[0], alone[0], rtol=0, atol=CACHE_ATOL)


def test_batch_of_different_lengths_equals_each_prompt_alone(tiny_engine):
    # Different max_new_tokens too, so rows leave the batch at different steps.
    requests = [
        GenerationRequest(p, SamplingParams(max_new_tokens=8 + 5 * i, temperature=0), f"r{i}")
        for i, p in enumerate(PROMPTS)
    ]
    batched = tiny_engine.generate_batch(requests)
    for request, result in zip(requests, batched, strict=True):
        alone = tiny_engine.generate(request)
        assert result.token_ids == alone.token_ids, request.request_id
        assert result.text == alone.text and result.request_id == request.request_id
        assert result.completion_tokens == request.params.max_new_tokens
        assert result.finish_reason == "length"


def test_same_seed_same_output_and_seeds_matter(tiny_engine):
    def sample(seed: int):
        params = SamplingParams(max_new_tokens=20, temperature=1.0, top_k=0, top_p=1.0, seed=seed)
        return tiny_engine.generate(GenerationRequest(PROMPTS[0], params)).token_ids

    assert sample(7) == sample(7)
    assert len({sample(s) for s in (1, 2, 3, 4)}) > 1


def test_stop_sequence_cuts_the_text_and_the_stream(tiny_engine):
    free = tiny_engine.generate(GenerationRequest(PROMPTS[1], GREEDY))
    stop = free.text[6:9]
    assert len(stop) == 3
    expected = free.text[: free.text.index(stop)]
    pieces: list[str] = []
    params = SamplingParams(max_new_tokens=24, temperature=0, stop=("never there", stop))
    result = tiny_engine.generate(
        GenerationRequest(PROMPTS[1], params), on_token=lambda e: pieces.append(e.text)
    )
    assert result.finish_reason == "stop"
    assert result.text == expected == "".join(pieces)
    assert result.completion_tokens < free.completion_tokens


def test_streamed_pieces_add_up_to_each_text(tiny_engine):
    events: list[TokenEvent] = []
    requests = [
        GenerationRequest(p, SamplingParams(max_new_tokens=10, temperature=0.8, seed=i), f"r{i}")
        for i, p in enumerate(PROMPTS[:3])
    ]
    results = tiny_engine.generate_batch(requests, on_token=events.append)
    for i, result in enumerate(results):
        mine = [e for e in events if e.index == i]
        assert all(e.request_id == f"r{i}" for e in mine)
        assert [e.token_id for e in mine] == list(result.token_ids)
        assert "".join(e.text for e in mine) == result.text
        assert 0 < result.first_token_seconds <= result.total_seconds


def test_bad_requests_get_error_results_and_do_not_spoil_the_batch(tiny_engine):
    too_long = "the " * tiny_engine.context_length
    results = tiny_engine.generate_batch(
        [
            GenerationRequest(too_long, GREEDY, "long"),
            GenerationRequest(PROMPTS[0], GREEDY, "fine"),
            GenerationRequest("", GREEDY, "empty"),
        ]
    )
    long, fine, empty = results
    assert long.finish_reason == "error" and "context" in long.error and not long.ok
    assert empty.finish_reason == "error" and "empty" in empty.error
    assert fine.ok and fine.completion_tokens == GREEDY.max_new_tokens


def test_generation_stops_at_the_context_length(tiny_engine):
    prompt = "a" * (tiny_engine.context_length - 10)  # no merges: one token per letter
    room = tiny_engine.context_length - len(tiny_engine.tokenizer.encode(prompt))
    assert room == 10
    params = SamplingParams(max_new_tokens=100, temperature=0)
    result = tiny_engine.generate(GenerationRequest(prompt, params))
    assert result.finish_reason == "length" and result.completion_tokens == room


def test_deadlines(tiny_engine):
    past = GenerationRequest(PROMPTS[0], GREEDY, "late", deadline=time.monotonic() - 1)
    soon = GenerationRequest(
        PROMPTS[0],
        SamplingParams(max_new_tokens=90, temperature=0),
        "soon",
        deadline=time.monotonic() + 0.02,
    )
    late, cut = tiny_engine.generate_batch([past, soon])
    assert late.finish_reason == "deadline" and late.completion_tokens == 0
    assert cut.finish_reason in ("deadline", "length")


def test_invalid_sampling_parameters_are_request_errors():
    from services.generator.errors import RequestError

    with pytest.raises(RequestError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(RequestError, match="max_new_tokens"):
        SamplingParams(max_new_tokens=0)
    with pytest.raises(RequestError, match="seed"):
        SamplingParams(seed=-1)


def test_threads_follow_a_cpu_quota(tmp_path):
    from services.generator.engine.runtime import cpu_quota, default_threads

    root, me = tmp_path / "cgroup", tmp_path / "self"
    (root / "system.slice" / "marquee.service").mkdir(parents=True)
    me.write_text("0::/system.slice/marquee.service\n")
    assert cpu_quota(root, me) is None  # no cgroup files: no quota
    (root / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(root, me) is None
    (root / "system.slice" / "cpu.max").write_text("300000 100000\n")  # a parent's quota
    (root / "system.slice" / "marquee.service" / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(root, me) == 3
    (root / "cpu.max").write_text("150000 100000\n")  # the tightest wins: 1.5 CPUs -> 1
    assert cpu_quota(root, me) == 1 and default_threads(root, me) == 1
    assert cpu_quota(root, tmp_path / "none") == 1  # no /proc/self/cgroup: the root's
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(v1, me) == 2


def test_end_of_sequence_stops_unless_ignored(tiny_engine):
    eos = next(iter(tiny_engine.eos_ids))
    # A repetition penalty below 1 makes every seen token likelier: the prompt's <|im_end|>
    # (the tiny model's eos) soon wins under greedy decoding.
    prompt = "<|im_end|>" * 8
    params = SamplingParams(max_new_tokens=30, temperature=0, repetition_penalty=0.01)
    stopped = tiny_engine.generate(GenerationRequest(prompt, params))
    assert stopped.finish_reason == "stop" and stopped.token_ids[-1] == eos
    ignoring = SamplingParams(
        max_new_tokens=30, temperature=0, repetition_penalty=0.01, ignore_eos=True
    )
    kept = tiny_engine.generate(GenerationRequest(prompt, ignoring))
    assert kept.finish_reason == "length" and kept.completion_tokens == 30


def test_prefill_in_row_groups_gives_the_same_tokens(tiny_engine, monkeypatch):
    from services.generator.engine import decoder

    requests = [GenerationRequest(p, GREEDY) for p in PROMPTS]
    whole = tiny_engine.generate_batch(requests)
    # As for a model that returns logits at every prompt position: one row per pass.
    monkeypatch.setattr(tiny_engine.decoder, "can_keep_last", False)
    monkeypatch.setattr(decoder, "MAX_PREFILL_LOGITS_BYTES", 1)
    split = tiny_engine.generate_batch(requests)
    assert [r.token_ids for r in split] == [r.token_ids for r in whole]


def test_fp32_gqa_graphs_warn_under_cuda(tiny_dirs, caplog):
    from services.generator.engine.engine import (
        _warn_about_cpu_only_nodes,
        fused_attention_kv_type,
    )

    ops, gqa = (tiny_dirs[name] / "model.onnx" for name in ("q4-ops", "q4"))
    assert fused_attention_kv_type(ops) is None
    _warn_about_cpu_only_nodes(ops, fused_attention_kv_type(ops))
    assert not caplog.records
    _warn_about_cpu_only_nodes(gqa, fused_attention_kv_type(gqa))
    assert "--attention ops" in caplog.text


def test_shared_buffer_cache_decodes_exactly_like_a_concatenated_one(tiny_engine):
    """The fused-attention graph appends in place to preallocated buffers; the Optimum
    way (a fresh ``present`` each step) must give the same logits, through buffer growth
    and a row leaving the batch."""
    from services.generator.engine.decoder import Decoder

    shared = tiny_engine.decoder
    assert shared.share_buffers
    concat = Decoder(shared.session, "cpu")
    assert not concat.share_buffers
    encoded = [tiny_engine.tokenizer.encode(p) for p in PROMPTS[:3]]
    width = max(map(len, encoded))
    ids = np.zeros((3, width), np.int64)
    mask = np.zeros((3, width), np.int64)
    for row, prompt in enumerate(encoded):
        ids[row, width - len(prompt) :], mask[row, width - len(prompt) :] = prompt, 1
    positions = np.clip(np.cumsum(mask, 1) - 1, 0, None)

    runs = {}
    for name, decoder in (("shared", shared), ("concat", concat)):
        logits, cache = decoder.prefill(ids, mask, positions, reserve=2)
        m, seen = mask, [logits]
        for step in range(40):  # room was made for 2: the buffers grow twice
            if step == 5:  # the short row leaves; its left padding goes with it
                m = m[[1, 2]]
                unused = int(np.argmax(m.any(axis=0)))
                m = m[:, unused:]
                cache = decoder.select(cache, np.array([1, 2]), unused)
            tokens = seen[-1][-m.shape[0] :].argmax(-1)[:, None]
            m = np.concatenate([m, np.ones((m.shape[0], 1), np.int64)], axis=1)
            logits, cache = decoder.step(tokens, m, m.sum(1, keepdims=True) - 1, cache)
            seen.append(logits)
        runs[name] = (seen, cache)
    (shared_logits, shared_cache), (concat_logits, concat_cache) = runs["shared"], runs["concat"]
    assert shared_cache.capacity >= shared_cache.length > width + 2
    assert shared_cache.length == concat_cache.length
    for a, b in zip(shared_logits, concat_logits, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=CACHE_ATOL)
