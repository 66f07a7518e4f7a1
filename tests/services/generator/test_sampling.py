"""Token choice from logits: greedy, temperature, top-k, top-p, repetition penalty, seeds."""

from __future__ import annotations

import numpy as np

from services.generator.sampling import (
    Sampler,
    SamplingParams,
    apply_repetition_penalty,
    candidates,
)

LOGITS = np.array([2.0, 1.0, 0.5, 3.0, -1.0, 0.0], dtype=np.float32)


def test_greedy_is_argmax_and_ignores_the_seed():
    for seed in (None, 1, 2):
        assert Sampler(SamplingParams(temperature=0, seed=seed))(LOGITS) == 3


def test_repetition_penalty_as_transformers_applies_it():
    out = apply_repetition_penalty(LOGITS, np.array([3, 4]), 2.0)
    assert out[3] == 1.5 and out[4] == -2.0 and out[0] == 2.0
    assert LOGITS[3] == 3.0  # the input is left alone
    # Greedy with a strong penalty on the favourite picks the runner-up.
    assert Sampler(SamplingParams(temperature=0, repetition_penalty=4.0), [3])(LOGITS) == 0


def test_top_k_and_top_p_keep_the_most_likely_tokens():
    ids, probs = candidates(LOGITS, SamplingParams(temperature=1.0, top_k=2, top_p=1.0))
    assert ids.tolist() == [3, 0] and np.isclose(probs.sum(), 1)
    # Softmax of LOGITS: 3 -> 0.56, 0 -> 0.21, 1 -> 0.08 ... top_p 0.7 keeps the first two.
    ids, _ = candidates(LOGITS, SamplingParams(temperature=1.0, top_k=0, top_p=0.7))
    assert ids.tolist() == [3, 0]
    ids, _ = candidates(LOGITS, SamplingParams(temperature=1.0, top_k=0, top_p=0.01))
    assert ids.tolist() == [3]  # always at least one


def test_temperature_sharpens_and_flattens():
    _, cold = candidates(LOGITS, SamplingParams(temperature=0.1, top_k=0, top_p=1.0))
    _, hot = candidates(LOGITS, SamplingParams(temperature=10.0, top_k=0, top_p=1.0))
    assert cold[0] > 0.99 and hot[0] < 0.3


def test_seeded_draws_repeat_and_follow_the_distribution():
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, seed=42)
    first = [Sampler(params)(LOGITS) for _ in range(3)]
    assert len(set(first)) == 1  # a fresh sampler with the same seed draws the same
    sampler = Sampler(params)
    draws = np.bincount([sampler(LOGITS) for _ in range(4000)], minlength=6) / 4000
    expected = np.exp(LOGITS) / np.exp(LOGITS).sum()
    np.testing.assert_allclose(draws, expected, atol=0.03)


def test_parameters_from_a_content_request():
    from shared.events.models import ContentRequest

    request = ContentRequest(request_id="r", kind="news", prompt="p", stop=["\n\n"], seed=3)
    params = SamplingParams.of(request)
    assert params.stop == ("\n\n",) and params.seed == 3
    assert params.max_new_tokens == request.max_new_tokens and params.top_p == request.top_p
