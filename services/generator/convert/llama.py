"""The ONNX graph of a Llama decoder, in the Optimum ``text-generation-with-past`` contract.

Inputs ``input_ids``, ``attention_mask``, ``position_ids`` and
``past_key_values.{i}.key/value`` (``[batch, kv_heads, past, head_dim]``); outputs ``logits``
and ``present.{i}.key/value``. One extra input with a default, ``num_logits_to_keep``
(0: every position, as Optimum returns; n: the last n), lets the engine skip the
vocabulary projection for all prompt positions but the last.

Semantics follow Hugging Face's ``LlamaForCausalLM`` (rotate-half RoPE after un-permuting
llama.cpp's Q/K rows, RMSNorm, SiLU-gated MLP, grouped-query attention, additive mask of
float32's minimum), so logits can be compared with transformers' to float rounding.
Every node is a standard ONNX or onnxruntime contrib operator. Block-quantized GGUF
weights go to ``MatMulNBits`` as they are (see ``weights.py``); RMSNorm (fused with the
residual add) is onnxruntime's ``SkipSimplifiedLayerNormalization``. Attention is
``RotaryEmbedding`` and one fused ``GroupQueryAttention`` per layer by default, or standard
ops (queries grouped per KV head, so KV heads are never repeated) with
``attention="ops"``: onnxruntime's CUDA GroupQueryAttention takes fp16/bf16 only, so an
fp32 graph meant for a GPU wants "ops".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx

from . import weights as W
from .gguf_file import GGUFModel, LlamaSpec
from .graph import FLOAT, INT64, MS_DOMAIN, Graph

WeightFormat = Literal["q4", "fp32"]
Compute = Literal["fp32", "int8"]
Attention = Literal["gqa", "ops"]

#: Bumped whenever the graph changes, so cached model directories get rebuilt.
GRAPH_VERSION = 3


@dataclass(frozen=True)
class GraphOptions:
    #: "q4": keep the GGUF's blocks (MatMulNBits); "fp32": dequantize everything.
    weights: WeightFormat = "q4"
    #: What the decoder layers' MatMulNBits compute in. "fp32" (accuracy_level 1):
    #: exactly the dequantized matmul, so logits match an fp32 implementation to rounding.
    #: "int8" (level 4): activations quantized to int8 per block, as llama.cpp does; about
    #: twice as fast on CPU, but logits move by ~0.7 and greedy text drifts from fp32's.
    compute: Compute = "fp32"
    #: The same for the vocabulary projection when its weights are 8-bit blocks (Q8_0).
    #: "int8" by default: MatMulNBits moves logits by ~0.25 there, and its fp32 would
    #: need the table dequantized on every call (onnxruntime has no fp32-compute path for
    #: 8-bit blocks), so "fp32" dequantizes it once into a dense table, exact but 4x the
    #: bytes read per token.
    head_compute: Compute = "int8"
    #: "gqa": RotaryEmbedding and one fused GroupQueryAttention per layer (fastest on
    #: CPU), whose CUDA kernel is fp16-only, so under CUDA it would run on the CPU; "ops":
    #: the same attention in standard ONNX ops, which run on either device.
    attention: Attention = "gqa"


class _LlamaBuilder:
    def __init__(self, model: GGUFModel, options: GraphOptions) -> None:
        self.model = model
        self.spec: LlamaSpec = model.spec
        self.options = options
        self.g = Graph(f"{self.spec.name} decoder")
        self._block_sums: dict[str, str] = {}
        self._table: str | None = None
        self._gqa_lengths: tuple[str, str] | None = None

    # -- weights ---------------------------------------------------------------------------
    def weight(self, name: str) -> W.Weight:
        return W.load(self.model, name, quantized=self.options.weights == "q4")

    def linear(
        self,
        x: str,
        weight: W.Weight,
        name: str,
        out: str | None = None,
        compute: Compute | None = None,
    ) -> str:
        g = self.g
        compute = compute or self.options.compute
        if isinstance(weight, W.BlockWeight) and weight.bits == 8 and compute == "fp32":
            # onnxruntime has no fp32-compute kernel for 8-bit blocks: it would dequantize
            # the whole matrix on every call. Dense fp32 is both exact and faster.
            weight = W.DenseWeight(weight.dequantize())
        if isinstance(weight, W.DenseWeight):
            return g.op("MatMul", x, g.weight(f"{name}.weight", weight.w.T), name=name, out=out)
        y = g.op(
            "MatMulNBits",
            x,
            g.weight(f"{name}.qweight", weight.packed),
            g.weight(f"{name}.scales", weight.scales),
            name=name,
            domain=MS_DOMAIN,
            K=weight.in_features,
            N=weight.out_features,
            bits=weight.bits,
            block_size=W.BLOCK,
            accuracy_level=4 if compute == "int8" else 1,
        )
        if (block_offsets := weight.offsets) is None:
            if out is None:
                return y
            return g.op("Identity", y, name=f"{name}/named", out=out)
        offsets = g.weight(f"{name}.offsets", block_offsets.T)
        correction = g.op("MatMul", self.block_sums(x, weight.in_features), offsets)
        return g.op("Add", y, correction, name=f"{name}/offset", out=out)

    def block_sums(self, x: str, width: int) -> str:
        """Per-32-block sums of ``x`` ([B, S, K] -> [B, S, K/32]), once per input."""
        if x not in self._block_sums:
            g = self.g
            blocks = g.op("Reshape", x, g.const([0, 0, width // W.BLOCK, W.BLOCK]))
            self._block_sums[x] = g.op("ReduceSum", blocks, g.const([-1]), keepdims=0)
        return self._block_sums[x]

    def linears(self, x: str, weights: list[W.Weight], name: str) -> list[str]:
        """Several projections of one input: one fused matmul and a Split when possible."""
        fused = W.fuse(weights)
        if fused is None:
            return [self.linear(x, w, f"{name}.{i}") for i, w in enumerate(weights)]
        y = self.linear(x, fused, name)
        sizes = self.g.const([w.out_features for w in weights])
        return self.g.op("Split", y, sizes, axis=-1, outputs=len(weights), name=f"{name}/split")

    # -- graph -----------------------------------------------------------------------------
    def build(self) -> onnx.ModelProto:
        s, g = self.spec, self.g
        ids = g.input("input_ids", INT64, ["batch_size", "sequence_length"])
        mask = g.input("attention_mask", INT64, ["batch_size", "total_sequence_length"])
        positions = g.input("position_ids", INT64, ["batch_size", "sequence_length"])
        past = [
            tuple(
                g.input(f"past_key_values.{i}.{kind}", FLOAT, self._kv_shape("past"))
                for kind in ("key", "value")
            )
            for i in range(s.n_layers)
        ]
        keep = "num_logits_to_keep"
        g.input(keep, INT64, [])
        g.initializers.append(onnx.numpy_helper.from_array(np.array(0, np.int64), keep))

        embedding = self.weight("token_embd.weight")
        x = self.embed(ids, embedding)
        bias = self.attention_bias(ids, mask)
        cos, sin = self.rope_caches()
        residual, pending = x, None
        for i in range(s.n_layers):
            prefix = f"blk.{i}"
            h, residual = self.norm(residual, pending, f"{prefix}.attn_norm.weight")
            attn = self.attention(i, h, positions, cos, sin, bias, past[i])
            h, residual = self.norm(residual, attn, f"{prefix}.ffn_norm.weight")
            pending = self.mlp(i, h)
        h, _ = self.norm(residual, pending, "output_norm.weight")
        head = embedding if s.tied_embeddings else self.weight("output.weight")
        h = self.last_positions(h, ids, keep)
        compute = self.options.head_compute
        if isinstance(head, W.BlockWeight) and (head.bits == 4 or compute == "int8"):
            self.linear(h, head, "lm_head", out="logits", compute=compute)
        else:
            self.dense_head(h, head, shared=s.tied_embeddings)
        g.output("logits", FLOAT, ["batch_size", "logits_length", s.vocab])
        for i in range(s.n_layers):
            for kind in ("key", "value"):
                g.output(f"present.{i}.{kind}", FLOAT, self._kv_shape("total"))
        return g.model(
            {
                "marquee.graph_version": str(GRAPH_VERSION),
                "marquee.weights": self.options.weights,
                "marquee.source": self.model.path.name,
            }
        )

    def _kv_shape(self, length: str) -> list:
        s = self.spec
        return ["batch_size", s.n_kv_heads, f"{length}_sequence_length", s.head_dim]

    def embed(self, ids: str, table: W.Weight) -> str:
        g = self.g
        if isinstance(table, W.BlockWeight) and table.mins is None:
            return g.op(
                "GatherBlockQuantized",
                g.weight("token_embd.qweight", table.packed.reshape(table.out_features, -1)),
                ids,
                g.weight("token_embd.scales", table.scales),
                name="embed",
                domain=MS_DOMAIN,
                bits=table.bits,
                block_size=W.BLOCK,
                gather_axis=0,
                quantize_axis=1,
            )
        self._table = g.weight("token_embd.weight", table.dequantize())
        return g.op("Gather", self._table, ids, name="embed")

    def dense_head(self, h: str, head: W.Weight, shared: bool) -> None:
        """Logits through Gemm on the ``[vocab, hidden]`` table itself (no transposed copy;
        tied embeddings share the initializer with the embedding Gather)."""
        g, s = self.g, self.spec
        if shared and self._table:
            table = self._table
        else:
            table = g.weight("lm_head.weight", head.dequantize())
        flat = g.op("Reshape", h, g.const([-1, s.hidden]))
        logits = g.op("Gemm", flat, table, transB=1, name="lm_head")
        shape = g.op("Concat", g.op("Shape", h, start=0, end=2), g.const([s.vocab]), axis=0)
        g.op("Reshape", logits, shape, name="lm_head/shape", out="logits")

    def norm(self, residual: str, update: str | None, gamma_name: str) -> tuple[str, str]:
        """RMSNorm of ``residual + update``; returns (normed, the new residual)."""
        g, eps = self.g, self.spec.rms_eps
        gamma = g.weight(gamma_name, self.model.dequantized(gamma_name))
        if update is None:
            normed = g.op("SimplifiedLayerNormalization", residual, gamma, axis=-1, epsilon=eps)
            return normed, residual
        normed, _, _, total = g.op(
            "SkipSimplifiedLayerNormalization",
            residual,
            update,
            gamma,
            domain=MS_DOMAIN,
            epsilon=eps,
            outputs=4,
        )
        return normed, total

    def attention_bias(self, ids: str, mask: str) -> str:
        """[B, 1, S, T]: 0 where a query may attend a key, float32's minimum elsewhere."""
        g = self.g
        total = g.op("Shape", mask, start=1, end=2)
        new = g.op("Shape", ids, start=1, end=2)
        total_s = g.op("Squeeze", total, g.const([0]))
        first_s = g.op("Squeeze", g.op("Sub", total, new), g.const([0]))
        keys = g.op("Unsqueeze", g.op("Range", g.const(0), total_s, g.const(1)), g.const([0]))
        queries = g.op("Unsqueeze", g.op("Range", first_s, total_s, g.const(1)), g.const([1]))
        causal = g.op("LessOrEqual", keys, queries)  # [S, T]
        padding = g.op("Cast", mask, to=onnx.TensorProto.BOOL)
        padding = g.op("Unsqueeze", padding, g.const([1, 2]))  # [B, 1, 1, T]
        allowed = g.op("And", causal, padding)
        minimum = np.finfo(np.float32).min
        return g.op("Where", allowed, g.const(0.0, np.float32), g.const(minimum, np.float32))

    def rope_caches(self) -> tuple[str, str]:
        s = self.spec
        # float32 throughout, as transformers computes its rotary tables.
        exponents = np.arange(0, s.head_dim, 2, dtype=np.int64).astype(np.float32) / s.head_dim
        inv_freq = (1.0 / (np.float32(s.rope_theta) ** exponents)).astype(np.float32)
        angles = np.arange(s.context_length, dtype=np.float32)[:, None] * inv_freq[None, :]
        return (
            self.g.weight("rope.cos", np.cos(angles).astype(np.float32)),
            self.g.weight("rope.sin", np.sin(angles).astype(np.float32)),
        )

    def attention(self, i, h, positions, cos, sin, bias, past) -> str:
        s, g = self.spec, self.g
        prefix = f"blk.{i}"
        wq = W.reverse_permute(self.weight(f"{prefix}.attn_q.weight"), s.n_heads)
        wk = W.reverse_permute(self.weight(f"{prefix}.attn_k.weight"), s.n_kv_heads)
        wv = self.weight(f"{prefix}.attn_v.weight")
        q, k, v = self.linears(h, [wq, wk, wv], f"{prefix}.attn_qkv")
        rope = {"domain": MS_DOMAIN, "interleaved": 0}
        q = g.op("RotaryEmbedding", q, positions, cos, sin, num_heads=s.n_heads, **rope)
        k = g.op("RotaryEmbedding", k, positions, cos, sin, num_heads=s.n_kv_heads, **rope)
        if self.options.attention == "gqa":
            ctx = self.fused_attention(i, q, k, v, bias, past)
        else:
            ctx = self.attention_ops(i, q, k, v, bias, past)
        return self.linear(ctx, self.weight(f"{prefix}.attn_output.weight"), f"{prefix}.attn_out")

    def fused_attention(self, i, q, k, v, bias, past) -> str:
        """GroupQueryAttention with its causal mask and a bias for left padding.

        Every row claims the whole (padded) length as valid (``seqlens_k = T - 1``), so the
        cache is a plain concatenation, as the contract wants; the bias hides the padding.
        Rotary embedding is applied before, with each row's own positions (onnxruntime's
        own rotary takes them from ``seqlens_k``, wrong for left-padded rows).
        """
        s, g = self.spec, self.g
        if self._gqa_lengths is None:
            total = g.op("Shape", bias, start=3, end=4)
            batch = g.op("Shape", bias, start=0, end=1)
            last = g.op("Expand", g.op("Sub", total, g.const([1])), batch)
            self._gqa_lengths = (
                g.op("Cast", last, to=onnx.TensorProto.INT32),
                g.op("Cast", g.op("Squeeze", total, g.const([0])), to=onnx.TensorProto.INT32),
            )
        seqlens, total = self._gqa_lengths
        ctx, _, _ = g.op(
            "GroupQueryAttention",
            q, k, v, past[0], past[1], seqlens, total, "", "", "", bias,
            domain=MS_DOMAIN,
            num_heads=s.n_heads,
            kv_num_heads=s.n_kv_heads,
            out=[f"blk.{i}.attn/out", f"present.{i}.key", f"present.{i}.value"],
        )  # fmt: skip
        return ctx

    def attention_ops(self, i, q, k, v, bias, past) -> str:
        s, g = self.spec, self.g

        def heads(x: str) -> str:  # [B, S, kv*D] -> [B, kv, S, D]
            x = g.op("Reshape", x, g.const([0, 0, s.n_kv_heads, s.head_dim]))
            return g.op("Transpose", x, perm=[0, 2, 1, 3])

        key = g.op("Concat", past[0], heads(k), axis=2, out=f"present.{i}.key")
        value = g.op("Concat", past[1], heads(v), axis=2, out=f"present.{i}.value")
        group = s.n_heads // s.n_kv_heads
        # [B, S, H*D] -> [B, kv, group, S, D]: query head h reads KV head h // group.
        q = g.op("Reshape", q, g.const([0, 0, s.n_kv_heads, group, s.head_dim]))
        q = g.op("Transpose", q, perm=[0, 2, 3, 1, 4])
        q = g.op("Mul", q, g.const(1.0 / np.sqrt(s.head_dim), np.float32))
        key_t = g.op("Unsqueeze", g.op("Transpose", key, perm=[0, 1, 3, 2]), g.const([2]))
        bias = g.op("Unsqueeze", bias, g.const([2]))  # [B, 1, 1, S, T]
        scores = g.op("Add", g.op("MatMul", q, key_t), bias)  # [B, kv, group, S, T]
        probs = g.op("Softmax", scores, axis=-1)
        ctx = g.op("MatMul", probs, g.op("Unsqueeze", value, g.const([2])))
        ctx = g.op("Transpose", ctx, perm=[0, 3, 1, 2, 4])
        return g.op("Reshape", ctx, g.const([0, 0, s.n_heads * s.head_dim]))

    def mlp(self, i: int, h: str) -> str:
        g = self.g
        prefix = f"blk.{i}"
        weights = [self.weight(f"{prefix}.ffn_gate.weight"), self.weight(f"{prefix}.ffn_up.weight")]
        gate, up = self.linears(h, weights, f"{prefix}.ffn_gate_up")
        act = g.op("Mul", g.op("Mul", gate, g.op("Sigmoid", gate)), up)
        return self.linear(act, self.weight(f"{prefix}.ffn_down.weight"), f"{prefix}.ffn_down")

    def last_positions(self, h: str, ids: str, keep: str) -> str:
        """The last ``num_logits_to_keep`` positions of ``h`` (all of them when 0)."""
        g = self.g
        length = g.op("Shape", ids, start=1, end=2)
        wanted = g.op("Unsqueeze", keep, g.const([0]))
        start = g.op(
            "Where",
            g.op("Greater", wanted, g.const([0])),
            g.op("Max", g.op("Sub", length, wanted), g.const([0])),
            g.const([0]),
        )
        return g.op("Slice", h, start, length, g.const([1]))


def build_graph(model: GGUFModel, options: GraphOptions) -> onnx.ModelProto:
    """The decoder graph of ``model`` with its weights as initializers."""
    return _LlamaBuilder(model, options).build()
