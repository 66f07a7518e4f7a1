"""Marquee's onnxruntime custom op ``MatMulQ4_1`` against numpy, on real GGUF Q4_1 blocks."""

from __future__ import annotations

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
#: 16-column halves; 37 is odd for the two-column tiles, 50 leaves 18 = 16 + 2) and one
#: that divides evenly.
SHAPES = [(64, 37), (64, 50), (96, 64)]
#: Row counts around the kernel's tiles (1-2 rows: four columns at a time, 3-8: two; 8 rows
#: a tile) and past them, and prompt passes (64 rows on: 32-column panels, 12-row tiles).
ROWS = [1, 2, 3, 8, 9, 16, 17, 40, 64, 65, 72, 100]
Q4_1 = GGMLQuantizationType.Q4_1


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return kernels.build_library(tmp_path_factory.mktemp("kernels"))


def q4_1_weight(k: int, n: int, seed: int = 0):
    """``(BlockWeight, raw GGUF bytes, dequantized [n, k])`` of random weights."""
    w = (np.random.default_rng(seed).standard_normal((n, k)) * 0.2).astype(np.float32)
    stored = quantize(w, Q4_1)
    block = W._MAPPERS["Q4_1"](stored.reshape(n, k // 32, -1))
    return block, stored.reshape(n, k // 32, -1), dequantize(stored, Q4_1).reshape(n, k)


def session(library: Path, block, k: int, n: int, k_attr: int | None = None):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node(
        "MatMulQ4_1", ["x", "q", "d", "m"], ["y"], domain=kernels.DOMAIN, K=k_attr or k, N=n
    )
    inits = [
        numpy_helper.from_array(block.gguf_nibbles(), "q"),
        numpy_helper.from_array(block.scales, "d"),
        numpy_helper.from_array(block.mins, "m"),
    ]
    graph = helper.make_graph([node], "q4_1", [x], [y], inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(kernels.DOMAIN, 1)]
    )
    model.ir_version = 8
    so = ort.SessionOptions()
    so.register_custom_ops_library(str(library))
    so.intra_op_num_threads = 2
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def check_against_numpy(library: Path) -> None:
    """Every shape and row count, 2-D and 3-D: the product of the dequantized matrix in
    float64, to float32 accumulation error."""
    for k, n in SHAPES:
        block, _, w = q4_1_weight(k, n)
        sess = session(library, block, k, n)
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
    assert kernels.kernel_path(library) == ("avx512" if kernels.fast_path_cpu() else "portable")
    check_against_numpy(library)


def test_portable_path_matches_too(library):
    """The path for CPUs without AVX-512, forced on this one (a fresh process: the
    library picks its path when it loads)."""
    env = {**os.environ, "MARQUEE_KERNELS_PORTABLE": "1"}
    code = (
        "import sys; from pathlib import Path; sys.path[:0] = sys.argv[1:3]; "
        "from test_generator_kernels import check_against_numpy, kernels; "
        "assert kernels.kernel_path(Path(sys.argv[3])) == 'portable'; "
        "check_against_numpy(Path(sys.argv[3]))"
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
    with pytest.raises(Exception, match=r"Q must be \[N, K/32, 16\]"):
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
