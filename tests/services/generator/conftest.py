"""Tiny random-weight models built by the real converter, and the default SmolLM2 builds."""

from __future__ import annotations

from pathlib import Path

import pytest
from generator_helpers import TinyConfig, write_tiny_gguf

from services.generator.convert import GraphOptions, convert


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """``(gguf path, config, dequantized HF-layout weights)``."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    cfg = TinyConfig()
    return path, cfg, write_tiny_gguf(path, cfg)


@pytest.fixture(scope="session")
def tiny_dirs(tiny, tmp_path_factory) -> dict[str, Path]:
    """The tiny model converted several ways. Exact ones (fp32 arithmetic throughout):
    ``fp32``, ``q4`` (the default), ``q4-nbits`` and ``q4-ops``. Marquee's kernels run
    attention (``CachedAttention``), Q4_1 blocks (``MatMulQ4_1``) and the Q8_0 vocabulary
    projection (``MatMulQ8_0``) except in ``q4-nbits`` (onnxruntime's GroupQueryAttention,
    and MatMulNBits plus the offset term) and ``q4-ops`` (attention in standard ops, and
    MatMulNBits, as GPU builds have them). ``q4-int8-head`` has onnxruntime's int8
    vocabulary projection (what machines without our kernels get) and ``q4-int8``
    computes the layers' block matmuls with int8 activations."""
    path, _, _ = tiny
    root = tmp_path_factory.mktemp("tiny-models")
    options = {
        "fp32": GraphOptions(weights="fp32"),
        "q4": GraphOptions(weights="q4"),
        "q4-int8-head": GraphOptions(weights="q4", head_compute="int8"),
        "q4-nbits": GraphOptions(weights="q4", head_compute="fp32", kernel="onnxruntime"),
        "q4-ops": GraphOptions(
            weights="q4", head_compute="fp32", attention="ops", kernel="onnxruntime"
        ),
        "q4-int8": GraphOptions(weights="q4", compute="int8"),
    }
    for name, opts in options.items():
        convert(path, root / name, opts)
    return {name: root / name for name in options}


@pytest.fixture(scope="session")
def tiny_engine(tiny_dirs):
    from services.generator.engine import Engine, RuntimeOptions

    return Engine(tiny_dirs["q4"], RuntimeOptions(provider="cpu", threads=1))
