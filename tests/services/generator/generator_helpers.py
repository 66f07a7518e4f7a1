"""A tiny random-weight Llama written as a GGUF (as llama.cpp lays one out), and a numpy
reference forward pass with Hugging Face's semantics to check converted graphs against."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import dequantize, quantize

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a")]


@dataclass(frozen=True)
class TinyConfig:
    layers: int = 2
    hidden: int = 64
    ffn: int = 128
    heads: int = 4
    kv_heads: int = 2
    context: int = 96
    rope_theta: float = 10_000.0
    eps: float = 1e-5
    quant: GGMLQuantizationType = GGMLQuantizationType.Q4_1
    tied: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def byte_vocab() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def tokens() -> tuple[list[str], list[int]]:
    vocab = SPECIAL + byte_vocab() + ["".join(m) for m in MERGES]
    types = [3] * len(SPECIAL) + [1] * (len(vocab) - len(SPECIAL))
    return vocab, types


def _llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    # What llama.cpp's convert_hf_to_gguf.py does to Q and K weights.
    return (
        w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def write_tiny_gguf(path: Path, cfg: TinyConfig = TinyConfig(), seed: int = 0) -> dict:
    """Write the GGUF; return the Hugging Face-layout weights as the file dequantizes them."""
    rng = np.random.default_rng(seed)
    vocab, types = tokens()
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(cfg.layers)
    writer.add_context_length(cfg.context)
    writer.add_embedding_length(cfg.hidden)
    writer.add_feed_forward_length(cfg.ffn)
    writer.add_head_count(cfg.heads)
    writer.add_head_count_kv(cfg.kv_heads)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.eps)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt2")
    writer.add_token_list(vocab)
    writer.add_token_types(types)
    writer.add_token_merges([" ".join(m) for m in MERGES])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(0)
    writer.add_chat_template(CHATML)

    ref: dict[str, np.ndarray] = {}

    def matrix(name: str, shape, scale: float, qtype, permute_heads: int | None = None):
        w = (rng.standard_normal(shape) * scale).astype(np.float32)
        stored = quantize(w, qtype) if qtype != GGMLQuantizationType.F32 else w
        ref[name] = (
            dequantize(stored, qtype).reshape(shape) if qtype != GGMLQuantizationType.F32 else w
        )
        if permute_heads is not None:
            # Quantization blocks run along rows, so permuting rows commutes with it.
            stored = _llama_cpp_permute(stored, permute_heads)
        writer.add_tensor(name, stored, raw_dtype=qtype)

    def norm(name: str):
        w = (1.0 + 0.1 * rng.standard_normal(cfg.hidden)).astype(np.float32)
        ref[name] = w
        writer.add_tensor(name, w)

    h, d, q = cfg.hidden, cfg.head_dim, cfg.quant
    matrix("token_embd.weight", (len(vocab), h), 1.0, GGMLQuantizationType.Q8_0)
    for i in range(cfg.layers):
        p = f"blk.{i}"
        norm(f"{p}.attn_norm.weight")
        matrix(f"{p}.attn_q.weight", (cfg.heads * d, h), 0.25, q, permute_heads=cfg.heads)
        matrix(f"{p}.attn_k.weight", (cfg.kv_heads * d, h), 0.25, q, permute_heads=cfg.kv_heads)
        matrix(f"{p}.attn_v.weight", (cfg.kv_heads * d, h), 0.25, q)
        matrix(f"{p}.attn_output.weight", (h, cfg.heads * d), 0.15, q)
        norm(f"{p}.ffn_norm.weight")
        matrix(f"{p}.ffn_gate.weight", (cfg.ffn, h), 0.15, q)
        matrix(f"{p}.ffn_up.weight", (cfg.ffn, h), 0.15, q)
        matrix(f"{p}.ffn_down.weight", (h, cfg.ffn), 0.1, q)
    norm("output_norm.weight")
    if not cfg.tied:
        matrix("output.weight", (len(vocab), h), 0.5, GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return ref


def reference_logits(ref: dict, cfg: TinyConfig, ids: list[int]) -> np.ndarray:
    """``LlamaForCausalLM``'s logits for one unpadded sequence, in float64 numpy."""

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg.eps) * w

    def rotate(x, pos):  # x [heads, S, D]; rotate-half RoPE
        half = cfg.head_dim // 2
        inv = 1.0 / cfg.rope_theta ** (np.arange(0, cfg.head_dim, 2) / cfg.head_dim)
        ang = np.outer(pos, inv)
        cos, sin = np.concatenate([np.cos(ang)] * 2, -1), np.concatenate([np.sin(ang)] * 2, -1)
        rotated = np.concatenate([-x[..., half:], x[..., :half]], -1)
        return x * cos + rotated * sin

    w = {k: v.astype(np.float64) for k, v in ref.items()}
    x = w["token_embd.weight"][ids]
    n, d, group = len(ids), cfg.head_dim, cfg.heads // cfg.kv_heads
    pos = np.arange(n)
    causal = np.tril(np.ones((n, n), bool))
    for i in range(cfg.layers):
        p = f"blk.{i}"
        h = rms(x, w[f"{p}.attn_norm.weight"])
        q = (h @ w[f"{p}.attn_q.weight"].T).reshape(n, cfg.heads, d).transpose(1, 0, 2)
        k = (h @ w[f"{p}.attn_k.weight"].T).reshape(n, cfg.kv_heads, d).transpose(1, 0, 2)
        v = (h @ w[f"{p}.attn_v.weight"].T).reshape(n, cfg.kv_heads, d).transpose(1, 0, 2)
        q, k = rotate(q, pos), rotate(k, pos)
        k, v = np.repeat(k, group, axis=0), np.repeat(v, group, axis=0)
        scores = np.where(causal, q @ k.transpose(0, 2, 1) / np.sqrt(d), -np.inf)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        attn = (probs @ v).transpose(1, 0, 2).reshape(n, cfg.heads * d)
        x = x + attn @ w[f"{p}.attn_output.weight"].T
        h = rms(x, w[f"{p}.ffn_norm.weight"])
        gate, up = h @ w[f"{p}.ffn_gate.weight"].T, h @ w[f"{p}.ffn_up.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ w[f"{p}.ffn_down.weight"].T
    head = w["token_embd.weight"] if cfg.tied else w["output.weight"]
    return rms(x, w["output_norm.weight"]) @ head.T
