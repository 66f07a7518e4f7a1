"""The inference engine: prompts in, text out, batched, with a KV cache.

``Engine.generate_batch`` is the service's entry point. It blocks the calling thread
(run it in an executor, never on the event loop), serialises batches with a lock, and
answers every request, a bad one included (``finish_reason="error"``).

A batch runs as one forward pass over the left-padded prompts (``attention_mask`` marks
the padding, ``position_ids = cumsum(mask) - 1``, clipped at 0), then one pass per new
token with the KV cache. A request that finishes leaves the batch at once: its row is
dropped from the cache, and padding no remaining row needs is cut off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import prompts
from ..errors import RequestError
from ..modeldir import load_model_config
from ..sampling import Sampler
from ..stopping import StopText
from ..tokenizer import TextStream, Tokenizer
from .decoder import Decoder
from .runtime import RuntimeOptions, create_session
from .types import FinishReason, GenerationRequest, GenerationResult, OnToken, TokenEvent

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, model_dir: Path, options: RuntimeOptions | None = None) -> None:
        options = options or RuntimeOptions()
        self.config = load_model_config(model_dir)
        self.tokenizer = Tokenizer(
            self.config.tokenizer_path,
            bos_token=self.config.bos_token,
            add_bos=self.config.add_bos_token,
        )
        session, self.device = create_session(
            self.config.onnx_path, options, self.config.custom_ops
        )
        # A fused-attention graph appends to its cache in place (see Decoder). Only the
        # converter builds them; other graphs (an Optimum export with inline weights, say)
        # are not parsed a second time just to find out.
        built = self.config.build.get("fingerprint", {}).get("options", {})
        kv_type = (
            fused_attention_kv_type(self.config.onnx_path)
            if built.get("attention") == "gqa"
            else None
        )
        self.decoder = Decoder(
            session,
            self.device,
            options.device_id,
            share_buffers=kv_type is not None,
            max_length=self.config.context_length,
        )
        if self.device == "cuda":
            _warn_about_cpu_only_nodes(self.config.onnx_path, kv_type, self.config.custom_ops)
        self.eos_ids = frozenset(self.config.eos_token_ids)
        self.pad_id = (
            self.config.pad_token_id
            if self.config.pad_token_id is not None
            else min(self.eos_ids, default=0)
        )
        self._lock = threading.Lock()
        log.info(
            "loaded %s from %s (%s layers, context %s) on %s",
            self.model_id,
            model_dir,
            self.decoder.layers,
            self.context_length,
            self.device,
        )

    @property
    def model_id(self) -> str:
        return self.config.name

    @property
    def context_length(self) -> int:
        return self.config.context_length

    def render(self, kind: str, prompt: str) -> str:
        """The text to generate from for a request of ``kind`` (chat template applied)."""
        return prompts.render(
            kind,
            prompt,
            self.config.chat_template,
            bos_token=self.config.bos_token,
            eos_token=self.config.eos_token,
        )

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def generate(
        self, request: GenerationRequest, on_token: OnToken | None = None
    ) -> GenerationResult:
        return self.generate_batch([request], on_token)[0]

    def generate_batch(
        self, requests: Sequence[GenerationRequest], on_token: OnToken | None = None
    ) -> list[GenerationResult]:
        """One result per request, in order. ``on_token`` is called from this thread for
        every generated token; an exception it raises aborts the batch."""
        with self._lock:
            return _Batch(self, requests, on_token).run()


#: Attention kernels that append to a preallocated cache bound as both past and present,
#: and where their past key and value inputs are.
IN_PLACE_ATTENTION = {"GroupQueryAttention": slice(3, 5), "CachedAttention": slice(1, 3)}


def fused_attention_kv_type(onnx_path: Path) -> int | None:
    """The KV cache's ONNX element type when every ``past_key_values.*`` input feeds a
    kernel that can append to its cache in place (onnxruntime's GroupQueryAttention or
    our CachedAttention) as its past key or value; ``None`` for any other graph
    (``--attention ops``, a graph that mixes kinds of attention)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    pasts = {i.name: i for i in graph.input if i.name.startswith("past_key_values.")}
    fused = {
        name
        for node in graph.node
        if node.op_type in IN_PLACE_ATTENTION
        for name in node.input[IN_PLACE_ATTENTION[node.op_type]]
    }
    if not pasts or not set(pasts) <= fused:
        return None
    return next(iter(pasts.values())).type.tensor_type.elem_type


def _warn_about_cpu_only_nodes(onnx_path: Path, kv_type: int | None, custom_ops) -> None:
    import onnx

    if custom_ops is not None:
        log.warning(
            "%s uses Marquee's CPU kernels (%s): their inputs and outputs cross the bus each "
            "step. Build the model for the GPU with `marquee model build-default --attention ops`",
            onnx_path,
            custom_ops.name,
        )
    elif kv_type == onnx.TensorProto.FLOAT:
        log.warning(
            "%s has fp32 GroupQueryAttention, which onnxruntime runs only on the CPU: "
            "every layer's KV cache crosses the bus each step. Build the model for the "
            "GPU with `marquee model build-default --attention ops`",
            onnx_path,
        )


@dataclass
class _Row:
    index: int
    request: GenerationRequest
    prompt_ids: list[int]
    sampler: Sampler
    stream: TextStream
    stops: StopText
    tokens: list[int] = field(default_factory=list)
    first_token_seconds: float | None = None
    finish: FinishReason | None = None


class _Batch:
    def __init__(self, engine: Engine, requests, on_token: OnToken | None) -> None:
        self.engine = engine
        self.requests = list(requests)
        self.on_token = on_token
        self.started = time.monotonic()
        self.results: list[GenerationResult | None] = [None] * len(self.requests)

    def run(self) -> list[GenerationResult]:
        rows = [row for i, r in enumerate(self.requests) if (row := self._admit(i, r))]
        if rows:
            self._decode(rows)
        return self.results  # type: ignore[return-value]

    def _admit(self, index: int, request: GenerationRequest) -> _Row | None:
        engine = self.engine
        try:
            ids = engine.tokenizer.encode(request.prompt)
            if not ids:
                raise RequestError("the prompt is empty")
            room = engine.context_length - 1
            if len(ids) > room:
                raise RequestError(
                    f"the prompt is {len(ids)} tokens; this model's context is "
                    f"{engine.context_length} tokens (at most {room} for the prompt)"
                )
        except RequestError as exc:
            self._finish_early(index, request, "error", 0, str(exc))
            return None
        if request.deadline is not None and time.monotonic() >= request.deadline:
            self._finish_early(index, request, "deadline", len(ids), None)
            return None
        stream = engine.tokenizer.stream()
        return _Row(
            index, request, ids, Sampler(request.params, ids), stream, StopText(request.params.stop)
        )

    def _finish_early(self, index, request, reason, prompt_tokens, error) -> None:
        self.results[index] = GenerationResult(
            request_id=request.request_id,
            text="",
            token_ids=(),
            prompt_tokens=prompt_tokens,
            finish_reason=reason,
            first_token_seconds=None,
            total_seconds=time.monotonic() - self.started,
            error=error,
        )

    def _decode(self, rows: list[_Row]) -> None:
        decoder = self.engine.decoder
        width = max(len(r.prompt_ids) for r in rows)
        ids = np.full((len(rows), width), self.engine.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for b, row in enumerate(rows):
            ids[b, width - len(row.prompt_ids) :] = row.prompt_ids
            mask[b, width - len(row.prompt_ids) :] = 1
        positions = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
        room = self.engine.context_length - width
        reserve = min(room, max(r.request.params.max_new_tokens for r in rows))
        logits, cache = decoder.prefill(ids, mask, positions, reserve)
        while True:
            tokens = np.array([row.sampler(logits[k]) for k, row in enumerate(rows)], np.int64)
            keep = [k for k, row in enumerate(rows) if not self._advance(row, int(tokens[k]))]
            if not keep:
                return
            if len(keep) < len(rows):
                kept = np.array(keep)
                mask = mask[kept]
                # Left padding that every remaining row has is dead weight in the cache.
                unused = int(np.argmax(mask.any(axis=0)))
                mask = mask[:, unused:]
                cache = decoder.select(cache, kept, unused)
                rows = [rows[k] for k in keep]
                tokens = tokens[kept]
            mask = np.concatenate([mask, np.ones((len(rows), 1), np.int64)], axis=1)
            positions = mask.sum(axis=1, keepdims=True) - 1
            logits, cache = decoder.step(tokens[:, None], mask, positions, cache)

    def _advance(self, row: _Row, token: int) -> bool:
        """Record ``token`` for ``row``; True when the row has finished."""
        now = time.monotonic()
        row.tokens.append(token)
        if row.first_token_seconds is None:
            row.first_token_seconds = now - self.started
        params, request = row.request.params, row.request
        if token in self.engine.eos_ids and not params.ignore_eos:
            row.finish = "stop"
            piece = row.stops.push(row.stream.flush()) + row.stops.flush()
        else:
            piece = row.stops.push(row.stream.push(token))
            if row.stops.stopped:
                row.finish = "stop"
            elif len(row.tokens) >= params.max_new_tokens:
                row.finish = "length"
            elif len(row.prompt_ids) + len(row.tokens) >= self.engine.context_length:
                row.finish = "length"
            elif request.deadline is not None and now >= request.deadline:
                row.finish = "deadline"
            if row.finish is not None and row.finish != "stop":
                piece += row.stops.push(row.stream.flush()) + row.stops.flush()
                if row.stops.stopped:  # the held-back text completed a stop sequence
                    row.finish = "stop"
        if self.on_token is not None:
            self.on_token(TokenEvent(row.index, request.request_id, token, piece))
        if row.finish is None:
            return False
        self.results[row.index] = GenerationResult(
            request_id=request.request_id,
            text=row.stops.text,
            token_ids=tuple(row.tokens),
            prompt_tokens=len(row.prompt_ids),
            finish_reason=row.finish,
            first_token_seconds=row.first_token_seconds,
            total_seconds=now - self.started,
        )
        return True
