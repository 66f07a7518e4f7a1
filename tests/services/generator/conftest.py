"""Tiny random-weight models built by the real converter, and the default SmolLM2 builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.generator.convert import GraphOptions, convert
from tests.services.generator.generator_helpers import TinyConfig, write_tiny_gguf


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """``(gguf path, config, dequantized HF-layout weights)``."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    cfg = TinyConfig()
    return path, cfg, write_tiny_gguf(path, cfg)


@pytest.fixture(scope="session")
def tiny_dirs(tiny, tmp_path_factory) -> dict[str, Path]:
    """The tiny model converted several ways. Exact ones (fp32 arithmetic throughout):
    ``fp32``, ``q4-fp32-head`` (GGUF blocks in MatMulNBits plus the offset term, the
    vocabulary projection dequantized) and ``q4-ops`` (the same with attention in standard
    ops, as GPU builds have it). ``q4`` (the default) has onnxruntime's int8 vocabulary
    projection and ``q4-int8`` computes the layers' block matmuls with int8 activations
    too."""
    path, _, _ = tiny
    root = tmp_path_factory.mktemp("tiny-models")
    options = {
        "fp32": GraphOptions(weights="fp32"),
        "q4": GraphOptions(weights="q4"),
        "q4-fp32-head": GraphOptions(weights="q4", head_compute="fp32"),
        "q4-ops": GraphOptions(weights="q4", head_compute="fp32", attention="ops"),
        "q4-int8": GraphOptions(weights="q4", compute="int8"),
    }
    for name, opts in options.items():
        convert(path, root / name, opts)
    return {name: root / name for name in options}


@pytest.fixture(scope="session")
def tiny_engine(tiny_dirs):
    from services.generator.engine import Engine, RuntimeOptions

    return Engine(tiny_dirs["q4"], RuntimeOptions(provider="cpu", threads=1))
