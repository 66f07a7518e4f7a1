"""GGUF weight matrices as the ONNX graph consumes them: dense fp32, or block-quantized.

GGUF's legacy block formats map onto onnxruntime's ``MatMulNBits`` (blocks of 32 along the
input dimension, ``w = (q - zero_point) * scale`` with the default zero point ``2**(bits-1)``)
without re-quantizing anything:

- ``Q4_0`` (``w = d * (q - 8)``) and ``Q8_0`` (``w = d * q``, q signed) are that formula;
- ``Q4_1`` (``w = d * q + m``) is ``d * (q - 8)`` plus a per-block offset ``m + 8 d``. The
  offset term is ``sum over blocks of (m + 8 d) * (sum of x over the block)``: a tiny fp32
  matmul of per-block sums of the input (1/32 of the input width) that the graph adds.

``MatMulNBits`` also takes float zero points (``-m / d`` would do), but onnxruntime's CPU
kernel then dequantizes the whole matrix on every call instead of using its packed
int4 path, which is slower than fp32; hence the offset term.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .gguf_file import GGUFModel

log = logging.getLogger(__name__)

BLOCK = 32


@dataclass(frozen=True)
class DenseWeight:
    """``w`` is float32 ``[out, in]`` (a PyTorch ``Linear`` weight's layout)."""

    w: np.ndarray

    @property
    def out_features(self) -> int:
        return self.w.shape[0]

    @property
    def in_features(self) -> int:
        return self.w.shape[1]

    @property
    def kind(self) -> str:
        return "fp32"

    def dequantize(self) -> np.ndarray:
        return self.w

    def take_rows(self, order: np.ndarray) -> DenseWeight:
        return DenseWeight(self.w[order])


@dataclass(frozen=True)
class BlockWeight:
    """``w[n, k] = scales[n, b] * q[n, k] + mins[n, b]``, ``b = k // 32``; without ``mins``
    (Q4_0, Q8_0) ``w = scales * (q - 2**(bits-1))``.

    ``packed`` is ``MatMulNBits``' input B: uint8 ``[out, k_blocks, 32 * bits / 8]``, two
    4-bit values per byte (the even element in the low nibble). ``MatMulNBits`` takes
    ``mins`` as ``offsets``.
    """

    bits: int
    packed: np.ndarray
    scales: np.ndarray
    mins: np.ndarray | None = None

    @property
    def offsets(self) -> np.ndarray | None:
        """What ``MatMulNBits`` (``w = scales * (q - 2**(bits-1))``) leaves out of each block:
        ``mins + 2**(bits-1) * scales``; None without ``mins``."""
        if self.mins is None:
            return None
        return self.mins + np.float32(2 ** (self.bits - 1)) * self.scales

    @property
    def out_features(self) -> int:
        return self.packed.shape[0]

    @property
    def in_features(self) -> int:
        return self.packed.shape[1] * BLOCK

    @property
    def kind(self) -> str:
        return f"q{self.bits}" + ("+offset" if self.mins is not None else "")

    def codes(self) -> np.ndarray:
        """The unsigned codes ``q``, ``[out, k_blocks, 32]``."""
        if self.bits == 8:
            return self.packed
        low, high = self.packed & 0x0F, self.packed >> 4
        return np.stack([low, high], axis=-1).reshape(*self.packed.shape[:2], BLOCK)

    def dequantize(self) -> np.ndarray:
        zero = np.float32(2 ** (self.bits - 1))
        w = (self.codes().astype(np.float32) - zero) * self.scales[..., None]
        if (offsets := self.offsets) is not None:
            w = w + offsets[..., None]
        return w.reshape(self.out_features, self.in_features)

    def take_rows(self, order: np.ndarray) -> BlockWeight:
        mins = None if self.mins is None else self.mins[order]
        return BlockWeight(self.bits, self.packed[order], self.scales[order], mins)


Weight = DenseWeight | BlockWeight


def load(model: GGUFModel, name: str, *, quantized: bool) -> Weight:
    """The tensor ``name`` as a weight: block-quantized when asked for and mappable."""
    kind, shape = model.tensor_info(name)
    if quantized and kind in _MAPPERS and shape[-1] % BLOCK == 0:
        _, raw = model.raw(name)
        blocks = raw.reshape(shape[0], shape[1] // BLOCK, -1)
        return _MAPPERS[kind](blocks)
    if quantized and kind not in ("F32", "F16", "BF16"):
        log.info("%s is %s, which MatMulNBits cannot take as is; using fp32", name, kind)
    return DenseWeight(model.dequantized(name))


def _f16(blocks: np.ndarray, start: int) -> np.ndarray:
    return np.ascontiguousarray(blocks[..., start : start + 2]).view(np.float16)[..., 0]


def _pack_nibbles(low16: np.ndarray) -> np.ndarray:
    """GGUF keeps elements 0-15 in the low nibbles and 16-31 in the high ones; MatMulNBits
    wants each consecutive pair in one byte."""
    q = np.concatenate([low16 & 0x0F, low16 >> 4], axis=-1)
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


def _q4_0(blocks: np.ndarray) -> BlockWeight:
    d = _f16(blocks, 0).astype(np.float32)
    return BlockWeight(4, _pack_nibbles(blocks[..., 2:18]), d)


def _q4_1(blocks: np.ndarray) -> BlockWeight:
    d = _f16(blocks, 0).astype(np.float32)
    m = _f16(blocks, 2).astype(np.float32)
    return BlockWeight(4, _pack_nibbles(blocks[..., 4:20]), d, m)


def _q8_0(blocks: np.ndarray) -> BlockWeight:
    d = _f16(blocks, 0).astype(np.float32)
    signed = np.ascontiguousarray(blocks[..., 2:34]).view(np.int8)
    return BlockWeight(8, (signed.astype(np.int16) + 128).astype(np.uint8), d)


_MAPPERS = {"Q4_0": _q4_0, "Q4_1": _q4_1, "Q8_0": _q8_0}


def reverse_permute(weight: Weight, n_heads: int) -> Weight:
    """Undo llama.cpp's row permutation of the Q and K projections.

    llama.cpp's converter interleaves the two halves of each head's rows for its RoPE
    layout; Hugging Face's rotate-half RoPE (and the KV cache layout of an Optimum
    export) needs them back in order.
    """
    return weight.take_rows(_unpermuted_order(weight.out_features, n_heads))


def permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's row permutation of a Q or K weight ``[out, in]`` (the inverse of
    :func:`reverse_permute`), for writing Hugging Face-layout weights into a GGUF."""
    return w[np.argsort(_unpermuted_order(w.shape[0], n_heads))]


def _unpermuted_order(rows: int, n_heads: int) -> np.ndarray:
    per_head = rows // n_heads
    return np.arange(rows).reshape(n_heads, per_head // 2, 2).swapaxes(1, 2).reshape(rows)


def fuse(weights: Sequence[Weight]) -> Weight | None:
    """One weight with all outputs stacked (QKV, gate+up), or None when kinds differ."""
    first = weights[0]
    if any(w.kind != first.kind or w.in_features != first.in_features for w in weights):
        return None
    if isinstance(first, DenseWeight):
        return DenseWeight(np.concatenate([w.w for w in weights]))

    mins = None
    if first.mins is not None:
        mins = np.concatenate([w.mins for w in weights])  # type: ignore[misc]
    return BlockWeight(
        first.bits,
        np.concatenate([w.packed for w in weights]),
        np.concatenate([w.scales for w in weights]),
        mins,
    )
