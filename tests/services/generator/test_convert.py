"""The GGUF converter on a tiny random-weight Llama: weights, graph, tokenizer, cache."""

from __future__ import annotations

import json
import time

import numpy as np
import onnx
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize

from services.generator.convert import GraphOptions, convert
from services.generator.convert import weights as W
from services.generator.convert.gguf_file import GGUFModel
from services.generator.engine import Engine, RuntimeOptions
from services.generator.errors import ConversionError, ModelError
from services.generator.modeldir import load_model_config
from tests.services.generator.generator_helpers import TinyConfig, reference_logits, write_tiny_gguf

PROMPT = "<|im_start|>user\nthe cat in the hat sat on the mat<|im_end|>\n"

#: fp32 graphs against float64 numpy: float32 rounding through two layers, on logits of
#: magnitude ~30. Observed ~3e-5.
FP32_ATOL = 2e-4
#: int8 activations (MatMulNBits accuracy_level 4) move logits by up to ~1 here: in the
#: vocabulary projection alone (q4, the default), or in every block matmul of the layers
#: (q4-int8).
INT8_ATOL = {"q4": 1.5, "q4-int8": 3.0}


def forward_all(engine: Engine, ids: list[int]) -> np.ndarray:
    d = engine.decoder
    batch = np.array([ids])
    logits, _ = d.step(
        batch, np.ones_like(batch), np.arange(len(ids))[None], d.empty_cache(1), all_logits=True
    )
    return logits[0]


@pytest.mark.parametrize(
    "qtype", [GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q8_0]
)
def test_block_weights_dequantize_exactly_as_gguf_does(qtype):
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((48, 96)) * 0.3).astype(np.float32)
    stored = quantize(w, qtype)
    blocks = stored.reshape(48, 96 // 32, -1)
    mapped = W._MAPPERS[qtype.name](blocks)
    expected = dequantize(stored, qtype).reshape(48, 96)
    # d*q + m versus d*(q - 8) + (m + 8d): equal up to one float32 rounding.
    np.testing.assert_allclose(mapped.dequantize(), expected, rtol=0, atol=1e-6)
    assert mapped.packed.dtype == np.uint8 and mapped.packed.shape == (48, 3, 32 * mapped.bits // 8)


def test_reverse_permute_undoes_llama_cpp_permutation():
    from tests.services.generator.generator_helpers import _llama_cpp_permute

    w = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
    permuted = W.DenseWeight(_llama_cpp_permute(w, 2))
    np.testing.assert_array_equal(W.reverse_permute(permuted, 2).w, w)


@pytest.mark.parametrize("variant", ["fp32", "q4-fp32-head", "q4-ops"])
def test_converted_graph_matches_numpy_reference(tiny, tiny_dirs, variant):
    _, cfg, ref = tiny
    engine = Engine(tiny_dirs[variant], RuntimeOptions(provider="cpu", threads=1))
    ids = engine.tokenizer.encode(PROMPT)
    expected = reference_logits(ref, cfg, ids)
    got = forward_all(engine, ids)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=FP32_ATOL)


@pytest.mark.parametrize("variant", ["q4", "q4-int8"])
def test_int8_compute_stays_close(tiny, tiny_dirs, variant):
    _, cfg, ref = tiny
    engine = Engine(tiny_dirs[variant], RuntimeOptions(provider="cpu", threads=1))
    ids = engine.tokenizer.encode(PROMPT)
    np.testing.assert_allclose(
        forward_all(engine, ids), reference_logits(ref, cfg, ids), rtol=0, atol=INT8_ATOL[variant]
    )


def test_untied_output_and_plain_q4_0_weights(tmp_path):
    cfg = TinyConfig(quant=GGMLQuantizationType.Q4_0, tied=False, layers=1)
    ref = write_tiny_gguf(tmp_path / "m.gguf", cfg, seed=3)
    convert(tmp_path / "m.gguf", tmp_path / "out", GraphOptions(head_compute="fp32"))
    engine = Engine(tmp_path / "out", RuntimeOptions(provider="cpu", threads=1))
    ids = engine.tokenizer.encode("in the heat")
    np.testing.assert_allclose(
        forward_all(engine, ids), reference_logits(ref, cfg, ids), rtol=0, atol=FP32_ATOL
    )


def test_graph_follows_the_optimum_contract(tiny_dirs):
    graph = onnx.load(tiny_dirs["q4"] / "model.onnx", load_external_data=False).graph
    inputs = [i.name for i in graph.input]
    outputs = [o.name for o in graph.output]
    assert inputs[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert "past_key_values.1.value" in inputs and "present.1.value" in outputs
    assert outputs[0] == "logits"
    ops = {n.op_type for n in graph.node}
    assert {"GatherBlockQuantized", "MatMulNBits", "GroupQueryAttention", "RotaryEmbedding"} <= ops
    # Only onnxruntime's own operators: standard ONNX and its contrib domain.
    assert {n.domain for n in graph.node} <= {"", "com.microsoft"}
    fp32_ops = {n.op_type for n in onnx.load(tiny_dirs["fp32"] / "model.onnx").graph.node}
    assert not {"MatMulNBits", "GatherBlockQuantized"} & fp32_ops


def test_model_directory_has_tokenizer_and_configs(tiny_dirs):
    config = load_model_config(tiny_dirs["q4"])
    assert config.eos_token_ids == (2,)
    assert config.context_length == TinyConfig().context
    assert "<|im_start|>" in config.chat_template
    assert config.build["weights"] == "q4" and config.name == "tiny"
    hf = json.loads((tiny_dirs["q4"] / "config.json").read_text())
    assert hf["num_key_value_heads"] == 2 and hf["model_type"] == "llama"


def test_tokenizer_from_gguf_round_trips(tiny_engine):
    tok = tiny_engine.tokenizer
    text = "the heat in Zürich: 21°C"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.encode("<|im_end|>") == [2]  # special tokens stay whole
    assert tok.encode(" the") == [261]  # merges: Ġ+t -> Ġt, Ġt+he -> Ġthe


def test_conversion_is_cached_and_rebuilt_when_options_change(tiny, tmp_path):
    path, _, _ = tiny
    out = tmp_path / "model"
    assert convert(path, out, GraphOptions(weights="fp32")) is True
    started = time.monotonic()
    assert convert(path, out, GraphOptions(weights="fp32")) is False
    assert time.monotonic() - started < 0.5
    assert convert(path, out, GraphOptions(weights="q4")) is True
    assert load_model_config(out).build["weights"] == "q4"
    assert not list(tmp_path.glob(".model.partial-*"))


def test_unsupported_and_missing_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ConversionError, match="no GGUF file"):
        convert(tmp_path / "absent.gguf", tmp_path / "out")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(ConversionError, match="not a readable GGUF"):
        GGUFModel(bad)
    with pytest.raises(ModelError, match="build-default"):
        load_model_config(tmp_path / "nowhere")
    # A ModelError is a configuration problem: the CLI exits with code 2.
    assert issubclass(ConversionError, ModelError)
