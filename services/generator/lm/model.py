"""A Llama decoder in JAX with the converter's semantics, weights read from the GGUF.

Weights are dequantized and Q/K rows un-permuted exactly as ``convert/llama.py`` does
(``weights.load`` + ``weights.reverse_permute``), so the same GGUF gives the same
function here and in the ONNX graph: rotate-half RoPE, RMSNorm, SiLU-gated MLP,
grouped-query attention. Parameters are a dict pytree of float32 arrays in the layout of
a PyTorch ``Linear`` (``[out, in]``). Training needs no KV cache: one full forward pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..convert import weights as W
from ..convert.gguf_file import GGUFModel, LlamaSpec
from .jaxdeps import require_jax

#: Per-layer projections, by the GGUF tensor name's stem.
PROJECTIONS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
NORMS = ("attn_norm", "ffn_norm")


def load_params(gguf_path: Path) -> tuple[LlamaSpec, dict]:
    """The GGUF's weights as numpy float32: ``{"token_embd", "output_norm", ["output"],
    "layers": [{name: array}]}``."""
    model = GGUFModel(gguf_path)
    s = model.spec

    def dense(name: str) -> np.ndarray:
        return W.load(model, name, quantized=False).dequantize()

    layers = []
    for i in range(s.n_layers):
        p = f"blk.{i}"
        layer = {n: model.dequantized(f"{p}.{n}.weight") for n in NORMS}
        for n in PROJECTIONS:
            weight = W.load(model, f"{p}.{n}.weight", quantized=False)
            if n in ("attn_q", "attn_k"):
                weight = W.reverse_permute(weight, s.n_heads if n == "attn_q" else s.n_kv_heads)
            layer[n] = weight.dequantize()
        layers.append(layer)
    params = {
        "token_embd": dense("token_embd.weight"),
        "output_norm": model.dequantized("output_norm.weight"),
        "layers": layers,
    }
    if not s.tied_embeddings:
        params["output"] = dense("output.weight")
    return s, params


def rope_tables(spec: LlamaSpec, length: int) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin ``[length, head_dim/2]`` computed as the converter computes them."""
    exponents = np.arange(0, spec.head_dim, 2, dtype=np.int64).astype(np.float32) / spec.head_dim
    inv_freq = (1.0 / (np.float32(spec.rope_theta) ** exponents)).astype(np.float32)
    angles = np.arange(length, dtype=np.float32)[:, None] * inv_freq[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def forward(spec: LlamaSpec, params: dict, ids, mask, adapters=None, lora_scale: float = 1.0):
    """Logits ``[B, S, vocab]`` for right-padded ``ids`` ``[B, S]`` (``mask`` 1 for tokens).

    ``adapters``: ``[{projection: (A [r, in], B [out, r])}]`` per layer (LoRA), added as
    ``lora_scale * (x A^T) B^T`` beside each frozen projection.
    """
    jax, jnp, _ = require_jax()
    b, n = ids.shape
    d, heads, kv = spec.head_dim, spec.n_heads, spec.n_kv_heads
    group = heads // kv
    cos, sin = (jnp.asarray(t) for t in rope_tables(spec, n))

    def rms(x, w):
        return x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + spec.rms_eps) * w

    def rotate(x):  # [B, S, H, D], rotate-half
        x1, x2 = x[..., : d // 2], x[..., d // 2 :]
        c, s_ = cos[None, :, None, :], sin[None, :, None, :]
        return jnp.concatenate([x1 * c - x2 * s_, x2 * c + x1 * s_], -1)

    allowed = jnp.tril(jnp.ones((n, n), bool))[None] & mask[:, None, :].astype(bool)
    bias = jnp.where(allowed, 0.0, jnp.finfo(jnp.float32).min)[:, None, None]  # [B,1,1,S,T]
    x = params["token_embd"][ids]
    for i, layer in enumerate(params["layers"]):
        extra = adapters[i] if adapters else {}

        def proj(h, name, layer=layer, extra=extra):
            y = h @ layer[name].T
            if name in extra:
                a, bb = extra[name]
                y = y + lora_scale * ((h @ a.T) @ bb.T)
            return y

        h = rms(x, layer["attn_norm"])
        q = rotate(proj(h, "attn_q").reshape(b, n, heads, d))
        k = rotate(proj(h, "attn_k").reshape(b, n, kv, d))
        v = proj(h, "attn_v").reshape(b, n, kv, d)
        q = q.reshape(b, n, kv, group, d) / np.sqrt(d).astype(np.float32)
        scores = jnp.einsum("bskgd,btkd->bkgst", q, k) + bias
        probs = jax.nn.softmax(scores, axis=-1)
        ctx = jnp.einsum("bkgst,btkd->bskgd", probs, v).reshape(b, n, heads * d)
        x = x + proj(ctx, "attn_output")
        h = rms(x, layer["ffn_norm"])
        gate, up = proj(h, "ffn_gate"), proj(h, "ffn_up")
        x = x + proj(jax.nn.silu(gate) * up, "ffn_down")
    head = params["token_embd"] if spec.tied_embeddings else params["output"]
    return rms(x, params["output_norm"]) @ head.T
