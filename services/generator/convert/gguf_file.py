"""Read a Llama-architecture GGUF: hyper-parameters, tensors and tokenizer metadata.

Only what the converter needs, through the ``gguf`` package's reader (memory-mapped, so
opening a 100 MB file costs nothing until a tensor is touched).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConversionError

log = logging.getLogger(__name__)

#: llama.cpp writes these architectures with the Llama tensor layout and key names.
SUPPORTED_ARCHITECTURES = ("llama",)


@dataclass(frozen=True)
class LlamaSpec:
    """The hyper-parameters of a Llama decoder, as the GGUF states them."""

    name: str
    n_layers: int
    hidden: int
    ffn: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    context_length: int
    rms_eps: float
    rope_theta: float
    tied_embeddings: bool


class GGUFModel:
    """A GGUF file opened for conversion."""

    def __init__(self, path: Path) -> None:
        try:
            from gguf import GGUFReader
        except ImportError:  # pragma: no cover - a dependency of the project
            raise ConversionError("reading GGUF files requires `pip install gguf`") from None
        if not path.is_file():
            raise ConversionError(f"no GGUF file at {path}")
        self.path = path
        try:
            self._reader = GGUFReader(path)
        except (ValueError, OSError) as exc:
            raise ConversionError(f"{path} is not a readable GGUF file: {exc}") from None
        self._tensors = {t.name: t for t in self._reader.tensors}
        self.spec = self._read_spec()

    # -- metadata --------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        field = self._reader.fields.get(key)
        return default if field is None else field.contents()

    def require(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise ConversionError(f"{self.path.name}: metadata key {key!r} is missing")
        return value

    def _read_spec(self) -> LlamaSpec:
        arch = self.get("general.architecture")
        if arch not in SUPPORTED_ARCHITECTURES:
            raise ConversionError(
                f"{self.path.name}: architecture {arch!r} is not supported (only "
                f"{', '.join(SUPPORTED_ARCHITECTURES)}); export the model with "
                "`optimum-cli export onnx --task text-generation-with-past` instead"
            )
        scaling = self.get(f"{arch}.rope.scaling.type")
        if scaling not in (None, "none"):
            raise ConversionError(f"{self.path.name}: RoPE scaling {scaling!r} is not supported")
        hidden = int(self.require(f"{arch}.embedding_length"))
        n_heads = int(self.require(f"{arch}.attention.head_count"))
        n_kv = int(self.get(f"{arch}.attention.head_count_kv", n_heads))
        head_dim = int(self.get(f"{arch}.attention.key_length", hidden // n_heads))
        rope_dims = int(self.get(f"{arch}.rope.dimension_count", head_dim))
        if rope_dims != head_dim or n_heads % n_kv:
            raise ConversionError(
                f"{self.path.name}: partial rotary ({rope_dims} of {head_dim}) or "
                f"{n_heads} heads over {n_kv} KV heads is not supported"
            )
        embd = self.tensor_info("token_embd.weight")
        return LlamaSpec(
            name=str(self.get("general.name") or self.path.stem),
            n_layers=int(self.require(f"{arch}.block_count")),
            hidden=hidden,
            ffn=int(self.require(f"{arch}.feed_forward_length")),
            n_heads=n_heads,
            n_kv_heads=n_kv,
            head_dim=head_dim,
            vocab=int(embd[1][0]),
            context_length=int(self.require(f"{arch}.context_length")),
            rms_eps=float(self.require(f"{arch}.attention.layer_norm_rms_epsilon")),
            rope_theta=float(self.get(f"{arch}.rope.freq_base", 10_000.0)),
            tied_embeddings="output.weight" not in self._tensors,
        )

    # -- tensors ---------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        return name in self._tensors

    def tensor_info(self, name: str) -> tuple[str, tuple[int, ...]]:
        """``(ggml type name, numpy-order shape)``: ``(out, in)`` for a weight matrix."""
        t = self._tensor(name)
        return t.tensor_type.name, tuple(int(d) for d in reversed(t.shape))

    def raw(self, name: str) -> tuple[str, np.ndarray]:
        """The type name and the stored bytes, one row of blocks per output row."""
        t = self._tensor(name)
        return t.tensor_type.name, np.asarray(t.data)

    def dequantized(self, name: str) -> np.ndarray:
        """Float32 values in numpy order, exactly as ``gguf.quants.dequantize`` makes them."""
        from gguf.quants import dequantize

        t = self._tensor(name)
        shape = tuple(int(d) for d in reversed(t.shape))
        return np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)

    def _tensor(self, name: str):
        try:
            return self._tensors[name]
        except KeyError:
            raise ConversionError(f"{self.path.name}: tensor {name!r} is missing") from None
