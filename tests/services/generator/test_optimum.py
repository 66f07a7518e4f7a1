"""A real Optimum ``text-generation-with-past`` export runs unchanged.

``reference/tiny-optimum`` is the tests' tiny GGUF (seed 0) loaded by transformers and
exported by ``optimum-cli`` (``reference/make_optimum_tiny.py``): a graph that we did not
write, with Optimum's input names, shapes and tokenizer files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.generator.engine import Engine, GenerationRequest, RuntimeOptions, SamplingParams
from tests.services.generator.generator_helpers import reference_logits

EXPORT = Path(__file__).with_name("reference") / "tiny-optimum"
#: PyTorch's export against float64 numpy on the same weights: float32 rounding through
#: two layers on logits of magnitude ~30 (observed ~4e-5, as optimum-cli's own check).
ATOL = 2e-4


@pytest.fixture(scope="module")
def optimum_engine():
    return Engine(EXPORT, RuntimeOptions(provider="cpu", threads=1))


def test_the_export_is_read_from_what_it_declares(optimum_engine):
    d = optimum_engine.decoder
    assert d.has_position_ids and not d.can_keep_last and d.layers == 2
    assert (d.kv_heads, d.head_dim) == (2, 16)
    assert optimum_engine.eos_ids == {2} and optimum_engine.context_length == 96
    # Its tokenizer_config asks for a BOS token; the engine honours it.
    assert optimum_engine.tokenizer.encode("the") == [1, 119, 260]  # BOS, t, he


def test_export_logits_match_the_numpy_reference(optimum_engine, tiny):
    _, cfg, ref = tiny
    ids = optimum_engine.tokenizer.encode("the cat in the hat sat on the mat")
    d = optimum_engine.decoder
    batch = np.array([ids])
    logits, _ = d.step(
        batch, np.ones_like(batch), np.arange(len(ids))[None], d.empty_cache(1), all_logits=True
    )
    np.testing.assert_allclose(logits[0], reference_logits(ref, cfg, ids), rtol=0, atol=ATOL)


def test_export_batches_like_it_runs_alone(optimum_engine):
    prompts = ["the heat", "in the beginning there was the rain and then the sun came", "a"]
    params = SamplingParams(max_new_tokens=12, temperature=0, ignore_eos=True)
    batched = optimum_engine.generate_batch([GenerationRequest(p, params) for p in prompts])
    for prompt, result in zip(prompts, batched, strict=True):
        alone = optimum_engine.generate(GenerationRequest(prompt, params))
        assert result.token_ids == alone.token_ids and result.completion_tokens == 12
