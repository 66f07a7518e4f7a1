"""Marquee's onnxruntime custom ops against numpy: ``MatMulQ4_1`` and ``MatMulQ8_0`` on real
GGUF Q4_1 and Q8_0 blocks,
``CachedAttention`` on caches with left padding, ``SwiGLU``; how the library is built and
chosen."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize
from onnx import TensorProto, helper, numpy_helper

from services.generator import default_model, kernels
from services.generator.convert import weights as W
from services.generator.errors import ConversionError, ModelError
from services.generator.modeldir import load_model_config

#: Shapes: column counts that leave remainders (tasks of 32 columns, prompt panels of two
#: 16-column halves; 37 is odd for the two-column tiles, 50 leaves 18 = 16 + 2; with AMX,
#: tasks of four 16-column groups: 37 is three, the last of 5, and 130 three tasks, the
#: last of 2 columns), one that divides evenly, and one block (32) or an odd number (96).
SHAPES = [(64, 37), (64, 50), (96, 64), (32, 130)]
#: Row counts around the kernel's tiles (1-2 rows: four columns at a time, 3-8: two; 8 rows
#: a tile) and past them, and prompt passes (64 rows on: 32-column panels, 12-row tiles).
#: With AMX, 8 rows on run in 16-row tiles: one partly filled (8, 9), full (16), several.
ROWS = [1, 2, 3, 8, 9, 16, 17, 40, 64, 65, 72, 100]
Q4_1 = GGMLQuantizationType.Q4_1
Q8_0 = GGMLQuantizationType.Q8_0


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return kernels.build_library(tmp_path_factory.mktemp("kernels"))


def q4_1_weight(k: int, n: int, seed: int = 0):
    """``(BlockWeight, raw GGUF bytes, dequantized [n, k])`` of random weights."""
    w = (np.random.default_rng(seed).standard_normal((n, k)) * 0.2).astype(np.float32)
    stored = quantize(w, Q4_1)
    block = W._MAPPERS["Q4_1"](stored.reshape(n, k // 32, -1))
    return block, stored.reshape(n, k // 32, -1), dequantize(stored, Q4_1).reshape(n, k)


def op_session(library: Path, node, types: dict[str, int] | None = None, inits=()):
    """A session of one of our ops: graph inputs are the node's inputs that are not
    initializers (float unless ``types`` says otherwise), outputs all float."""
    types = types or {}
    given = {init.name for init in inits}
    inputs = [
        helper.make_tensor_value_info(n, types.get(n, TensorProto.FLOAT), None)
        for n in node.input
        if n not in given
    ]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in node.output]
    graph = helper.make_graph([node], node.op_type, inputs, outputs, list(inits))
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(kernels.DOMAIN, 1)]
    )
    model.ir_version = 8
    so = ort.SessionOptions()
    so.register_custom_ops_library(str(library))
    so.intra_op_num_threads = 2
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def session(library: Path, block, k: int, n: int, k_attr: int | None = None):
    node = helper.make_node(
        "MatMulQ4_1", ["x", "q", "d", "m"], ["y"], domain=kernels.DOMAIN, K=k_attr or k, N=n
    )
    inits = [
        numpy_helper.from_array(block.gguf_nibbles(), "q"),
        numpy_helper.from_array(block.scales, "d"),
        numpy_helper.from_array(block.mins, "m"),
    ]
    return op_session(library, node, inits=inits)


def q8_0_session(library: Path, k: int, n: int, k_attr: int | None = None):
    """``(MatMulQ8_0 session, dequantized [n, k])`` of random weights in GGUF Q8_0 blocks."""
    w = (np.random.default_rng(n).standard_normal((n, k)) * 0.2).astype(np.float32)
    stored = quantize(w, Q8_0)
    block = W._MAPPERS["Q8_0"](stored.reshape(n, k // 32, -1))
    node = helper.make_node(
        "MatMulQ8_0", ["x", "q", "d"], ["y"], domain=kernels.DOMAIN, K=k_attr or k, N=n
    )
    inits = [
        numpy_helper.from_array(block.signed_codes(), "q"),
        numpy_helper.from_array(block.scales, "d"),
    ]
    return op_session(library, node, inits=inits), dequantize(stored, Q8_0).reshape(n, k)


def check_against_numpy(library: Path) -> None:
    """Both block formats, every shape and row count, 2-D and 3-D: the product of the
    dequantized matrix in float64, to float32 accumulation error."""
    for (k, n), qtype in itertools.product(SHAPES, (Q4_1, Q8_0)):
        if qtype == Q4_1:
            block, _, w = q4_1_weight(k, n)
            sess = session(library, block, k, n)
        else:
            sess, w = q8_0_session(library, k, n)
        rng = np.random.default_rng(k + n)
        for rows in ROWS:
            x = rng.standard_normal((rows, k)).astype(np.float32)
            expected = x.astype(np.float64) @ w.T.astype(np.float64)
            (got,) = sess.run(None, {"x": x})
            assert got.shape == (rows, n)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
        for shape in [(2, 5, k), (2, 40, k)]:  # a decode step's rows, a prompt pass's
            x3 = rng.standard_normal(shape).astype(np.float32)
            (got,) = sess.run(None, {"x": x3})
            np.testing.assert_allclose(got, x3 @ w.T, rtol=0, atol=1e-4)


def test_nibbles_are_gguf_bytes_as_stored():
    block, raw, _ = q4_1_weight(96, 8)
    np.testing.assert_array_equal(block.gguf_nibbles(), raw[..., 4:20])
    np.testing.assert_array_equal(block.mins, raw[..., 2:4].copy().view(np.float16)[..., 0])


def test_kernel_matches_the_dequantized_matmul(library):
    expected = "avx512+amx" if kernels.amx_cpu() else "avx512"
    assert kernels.kernel_path(library) == (expected if kernels.fast_path_cpu() else "portable")
    check_against_numpy(library)


def test_weights_fed_as_inputs_are_read_every_run(library):
    """The AMX path multiplies a copy of the weights made on first use; weights that are
    graph inputs, not initializers, may change between runs and are read as they come."""
    k, n = 64, 50
    node = helper.make_node(
        "MatMulQ4_1", ["x", "q", "d", "m"], ["y"], domain=kernels.DOMAIN, K=k, N=n
    )
    sess = op_session(library, node, types={"q": TensorProto.UINT8})
    x = np.random.default_rng(3).standard_normal((16, k)).astype(np.float32)
    for seed in (1, 2):
        block, _, w = q4_1_weight(k, n, seed)
        feeds = {"x": x, "q": block.gguf_nibbles(), "d": block.scales, "m": block.mins}
        (got,) = sess.run(None, feeds)
        expected = x.astype(np.float64) @ w.T.astype(np.float64)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


#: (heads, KV heads, head size): SmolLM2's, the tiny test model's, and sizes that end in a
#: part vector (24) or take three (40).
HEADS = [(9, 3, 64), (4, 2, 16), (6, 2, 24), (2, 2, 40)]
#: (batch, new positions, cached positions): first tokens, decode steps with and without
#: much cache, prompt passes with and without cache, over and under 16 queries per task.
STEPS = [(1, 1, 0), (1, 1, 7), (3, 1, 20), (16, 1, 100), (2, 5, 0), (4, 17, 3), (2, 40, 33)]


def attention_session(library: Path, heads: int, kv_heads: int, **attributes):
    node = helper.make_node(
        "CachedAttention",
        ["qkv", "past_k", "past_v", "bias", "position_ids", "cos", "sin"],
        ["out", "present_k", "present_v"],
        domain=kernels.DOMAIN,
        num_heads=heads,
        kv_num_heads=kv_heads,
        **attributes,
    )
    return op_session(library, node, {"position_ids": TensorProto.INT64})


def attention_inputs(batch, new, cached, heads, kv_heads, dim, rng) -> dict[str, np.ndarray]:
    """Random projections and cache; rows left-padded by up to a third of the length (row 0
    by none), with the bias and positions the engine and the converter's graph give them."""
    total = cached + new
    valid = np.ones((batch, total), bool)
    for b, pad in enumerate(rng.integers(0, max(1, total // 3), batch)):
        valid[b, : pad if b else 0] = False
    causal = np.arange(total)[None, :] <= np.arange(cached, total)[:, None]
    allowed = causal[None] & valid[:, None, :]
    bias = np.where(allowed, 0, np.finfo(np.float32).min).astype(np.float32)[:, None]
    positions = np.clip(np.cumsum(valid, axis=1) - 1, 0, None)[:, cached:]
    angles = np.arange(total + 3)[:, None] / 10_000 ** (np.arange(0, dim, 2) / dim)

    def normal(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    return {
        "qkv": normal(batch, new, (heads + 2 * kv_heads) * dim),
        "past_k": normal(batch, kv_heads, cached, dim),
        "past_v": normal(batch, kv_heads, cached, dim),
        "bias": bias,
        "position_ids": positions.astype(np.int64),
        "cos": np.cos(angles).astype(np.float32),
        "sin": np.sin(angles).astype(np.float32),
    }


def rope(x, positions, cos, sin):
    """Rotate-half rotary embedding of ``x`` [batch, new, heads, dim], as transformers has it."""
    half = x.shape[-1] // 2
    c, s = cos[positions][:, :, None], sin[positions][:, :, None]  # [batch, new, 1, half]
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def attention_reference(f, heads, kv_heads, dim, scale=None):
    """``(context, present K, present V)`` in float64, KV heads repeated per query head."""
    batch, new, _ = f["qkv"].shape
    qkv = f["qkv"].reshape(batch, new, heads + 2 * kv_heads, dim)
    q = rope(qkv[:, :, :heads], f["position_ids"], f["cos"], f["sin"])
    k = rope(qkv[:, :, heads : heads + kv_heads], f["position_ids"], f["cos"], f["sin"])
    v = qkv[:, :, heads + kv_heads :]
    keys = np.concatenate([f["past_k"], k.transpose(0, 2, 1, 3)], axis=2)
    values = np.concatenate([f["past_v"], v.transpose(0, 2, 1, 3)], axis=2)
    group = heads // kv_heads
    q = q.transpose(0, 2, 1, 3).astype(np.float64)
    k64 = np.repeat(keys.astype(np.float64), group, axis=1)
    v64 = np.repeat(values.astype(np.float64), group, axis=1)
    scores = q @ k64.transpose(0, 1, 3, 2) * (scale or 1 / np.sqrt(dim)) + f["bias"]
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ v64).transpose(0, 2, 1, 3).reshape(batch, new, heads * dim)
    return context, keys, values


def assert_cache(present, expected, cached):
    """The cached positions exactly, the new ones (rotated keys) to float32 rounding."""
    np.testing.assert_array_equal(present[:, :, :cached], expected[:, :, :cached])
    np.testing.assert_allclose(present[:, :, cached:], expected[:, :, cached:], rtol=0, atol=1e-6)


def attending(f) -> np.ndarray:
    """[batch, new]: queries that may attend something (a padding position's query is
    masked everywhere; its context only has to be finite)."""
    return (f["bias"][:, 0] > np.finfo(np.float32).min).any(-1)


def check_attention_against_numpy(library: Path) -> None:
    """Every head layout and step: the cache concatenated (keys rotated), the context to
    float32 rounding for every query that may attend something."""
    rng = np.random.default_rng(7)
    for heads, kv_heads, dim in HEADS:
        sess = attention_session(library, heads, kv_heads)
        for batch, new, cached in STEPS:
            f = attention_inputs(batch, new, cached, heads, kv_heads, dim, rng)
            out, present_k, present_v = sess.run(None, f)
            context, keys, values = attention_reference(f, heads, kv_heads, dim)
            assert_cache(present_k, keys, cached)
            assert_cache(present_v, values, cached)
            assert np.isfinite(out).all()
            attends = attending(f)
            np.testing.assert_allclose(out[attends], context[attends], rtol=0, atol=2e-6)


def test_attention_matches_numpy(library):
    check_attention_against_numpy(library)


def test_attention_scale_and_refusals(library):
    rng = np.random.default_rng(1)
    f = attention_inputs(2, 3, 4, 4, 2, 16, rng)
    (out, _, _) = attention_session(library, 4, 2, scale=0.5).run(None, f)
    np.testing.assert_allclose(out, attention_reference(f, 4, 2, 16, 0.5)[0], rtol=0, atol=2e-6)
    sess = attention_session(library, 4, 2)
    refused = {
        r"past K and V must hold T - S positions": {"bias": f["bias"][..., 1:]},
        r"the bias must be \[B, 1, S, T\]": {"bias": f["bias"][:, :, :2]},
        r"QKV must be \[B, S, \(num_heads \+ 2 kv_num_heads\) \* head_size\]": {
            "qkv": f["qkv"][..., 1:]
        },
        "past K and V must be": {"past_v": f["past_v"][:, :, 1:]},
        r"position_ids must be \[B, S\]": {"position_ids": f["position_ids"][:, 1:]},
        "cos and sin must be": {"sin": f["sin"][:, 1:]},
        "outside the rotary tables": {"position_ids": f["position_ids"] + len(f["cos"])},
    }
    for message, change in refused.items():
        with pytest.raises(Exception, match=message):
            sess.run(None, {**f, **change})
    with pytest.raises(Exception, match="positive multiple of kv_num_heads"):
        attention_session(library, 4, 3)


def check_preallocated_cache(library: Path) -> None:
    """A cache in buffers with room to spare: the new positions land at T - S, and bound as
    both past and present (as the engine binds them) they are written in place."""
    from onnxruntime import OrtValue

    rng = np.random.default_rng(3)
    heads, kv_heads, dim, capacity = 4, 2, 16, 32
    sess = attention_session(library, heads, kv_heads)
    for batch, new, cached in [(2, 1, 9), (3, 5, 0), (1, 4, 28)]:
        f = attention_inputs(batch, new, cached, heads, kv_heads, dim, rng)
        context, keys, values = attention_reference(f, heads, kv_heads, dim)
        attends = attending(f)
        buffers = {}
        for name, valid in (("past_k", f["past_k"]), ("past_v", f["past_v"])):
            buffers[name] = rng.standard_normal((batch, kv_heads, capacity, dim)).astype("f")
            buffers[name][:, :, :cached] = valid
        # Not shared: present is the past buffer with the new positions written in.
        copies = {name: buffer.copy() for name, buffer in buffers.items()}
        out, present_k, present_v = sess.run(None, {**f, **copies})
        np.testing.assert_allclose(out[attends], context[attends], rtol=0, atol=2e-6)
        for present, name, full in ((present_k, "past_k", keys), (present_v, "past_v", values)):
            assert present.shape == (batch, kv_heads, capacity, dim)
            assert_cache(present[:, :, : cached + new], full, cached)
            np.testing.assert_array_equal(
                present[:, :, cached + new :], buffers[name][:, :, cached + new :]
            )
        # Shared: the same OrtValue bound as past and present.
        binding = sess.io_binding()
        for name in ("qkv", "bias", "position_ids", "cos", "sin"):
            binding.bind_cpu_input(name, f[name])
        values_ = {n: OrtValue.ortvalue_from_numpy(b) for n, b in buffers.items()}
        for name, value in values_.items():
            binding.bind_ortvalue_input(name, value)
        binding.bind_output("out", "cpu")
        binding.bind_ortvalue_output("present_k", values_["past_k"])
        binding.bind_ortvalue_output("present_v", values_["past_v"])
        sess.run_with_iobinding(binding)
        shared_out = binding.get_outputs()[0].numpy()
        np.testing.assert_allclose(shared_out[attends], context[attends], rtol=0, atol=2e-6)
        assert_cache(buffers["past_k"][:, :, : cached + new], keys, cached)
        assert_cache(buffers["past_v"][:, :, : cached + new], values, cached)


def test_attention_appends_in_place_to_a_preallocated_cache(library):
    check_preallocated_cache(library)


def check_swiglu_against_numpy(library: Path) -> None:
    """silu(gate) * up to float32 rounding, for widths with and without a part vector,
    2-D and 3-D, gates far out in both tails, and no rows."""
    node = helper.make_node("SwiGLU", ["x"], ["y"], domain=kernels.DOMAIN)
    sess = op_session(library, node)
    rng = np.random.default_rng(5)
    for shape in [(1, 2 * 1536), (9, 2 * 16), (3, 5, 2 * 37), (2, 0, 8)]:
        x = (rng.standard_normal(shape) * 4).astype(np.float32)
        x.reshape(-1)[: min(x.size, 4)] = [-200, 200, -88.5, 90][: min(x.size, 4)]
        (y,) = sess.run(None, {"x": x})
        width = shape[-1] // 2
        gate, up = x[..., :width].astype(np.float64), x[..., width:].astype(np.float64)
        expected = gate / (1 + np.exp(-gate)) * up
        assert y.shape == expected.shape
        np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-30)
    with pytest.raises(Exception, match="last dimension must be even"):
        sess.run(None, {"x": np.zeros((2, 5), np.float32)})


def test_swiglu_matches_numpy(library):
    check_swiglu_against_numpy(library)


@pytest.mark.parametrize(
    ("variable", "path"),
    [("MARQUEE_KERNELS_PORTABLE", "portable"), ("MARQUEE_KERNELS_NO_AMX", "avx512")],
)
def test_the_other_paths_match_too(library, variable, path):
    """The path for CPUs without AVX-512, and the AVX-512 one for CPUs without AMX, forced
    on this one (a fresh process: the library picks its path once, on first use)."""
    if path == "avx512" and not kernels.fast_path_cpu():
        pytest.skip("this CPU has no AVX-512: only the portable path runs here")
    env = {**os.environ, variable: "1"}
    code = (
        "import sys; from pathlib import Path; sys.path[:0] = sys.argv[1:3]; "
        "from test_generator_kernels import check_against_numpy, "
        "check_attention_against_numpy, check_preallocated_cache, "
        "check_swiglu_against_numpy, kernels; "
        f"assert kernels.kernel_path(Path(sys.argv[3])) == {path!r}; "
        "check_against_numpy(Path(sys.argv[3])); "
        "check_attention_against_numpy(Path(sys.argv[3])); "
        "check_preallocated_cache(Path(sys.argv[3])); "
        "check_swiglu_against_numpy(Path(sys.argv[3]))"
    )
    here = Path(__file__).parent
    root = here.parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code, str(here), str(root), str(library)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_inputs_that_do_not_fit_are_refused_with_a_reason(library):
    block, _, _ = q4_1_weight(64, 37)
    sess = session(library, block, 64, 37)
    with pytest.raises(Exception, match="X's last dimension is not K"):
        sess.run(None, {"x": np.zeros((2, 32), np.float32)})
    wrong = session(library, block, 64, 37, k_attr=96)
    with pytest.raises(Exception, match=r"MatMulQ4_1: Q must be \[N, K/32, 16\]"):
        wrong.run(None, {"x": np.zeros((2, 96), np.float32)})
    wrong, _ = q8_0_session(library, 64, 37, k_attr=96)
    with pytest.raises(Exception, match=r"MatMulQ8_0: Q must be \[N, K/32, 32\]"):
        wrong.run(None, {"x": np.zeros((2, 96), np.float32)})


def test_no_compiler_is_a_clear_error_and_the_default_build_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(kernels, "fast_path_cpu", lambda: True)
    assert default_model.kernel_for("gqa") == "marquee"
    assert default_model.kernel_for("ops") == "onnxruntime"  # GPU builds: stock kernels
    with monkeypatch.context() as m:
        m.setattr(kernels, "compiler", lambda: None)
        with pytest.raises(ConversionError, match="needs a C\\+\\+ compiler"):
            kernels.build_library(tmp_path)
        assert default_model.kernel_for("gqa") == "onnxruntime"
    with monkeypatch.context() as m:  # offline, header not fetched yet
        m.setenv("GOPROXY", "off")
        with pytest.raises(ConversionError, match="GOPROXY=off"):
            kernels.header_dir(tmp_path / "headers")
        m.setattr(kernels, "HEADER_CACHE", tmp_path / "headers")
        assert default_model.kernel_for("gqa") == "onnxruntime"
    monkeypatch.setattr(kernels, "fast_path_cpu", lambda: False)  # no AVX-512
    assert default_model.kernel_for("gqa") == "onnxruntime"


def test_a_changed_kernel_or_a_lost_library_rebuilds_the_directory(tiny, tmp_path, monkeypatch):
    from services.generator.convert import GraphOptions, convert

    path, _, _ = tiny
    out = tmp_path / "q4"
    assert convert(path, out, GraphOptions()) is True
    assert convert(path, out, GraphOptions()) is False
    (out / kernels.LIBRARY).unlink()
    assert convert(path, out, GraphOptions()) is True
    monkeypatch.setattr(kernels, "source_digest", lambda: "another kernel")
    assert convert(path, out, GraphOptions()) is True


def test_a_directory_missing_its_library_says_how_to_fix_it(tiny_dirs, tmp_path):
    import shutil

    copy = tmp_path / "q4"
    shutil.copytree(tiny_dirs["q4"], copy)
    build = json.loads((copy / "marquee.json").read_text())
    assert build["custom_ops"] == kernels.LIBRARY
    assert load_model_config(copy).custom_ops == copy / kernels.LIBRARY
    (copy / kernels.LIBRARY).unlink()
    with pytest.raises(ModelError, match="build-default --force"):
        load_model_config(copy)
    assert load_model_config(tiny_dirs["q4-nbits"]).custom_ops is None
