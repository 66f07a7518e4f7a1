"""GGUF (Llama architecture) -> ONNX model directory, with numpy and onnx only (no torch)."""

from .build import convert
from .llama import GraphOptions

__all__ = ["GraphOptions", "convert"]
