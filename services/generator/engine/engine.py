"""The inference engine: prompts in, text out, batched, with a KV cache.

``Engine.generate_batch`` is the service's entry point. It blocks the calling thread
(run it in an executor, never on the event loop), serialises batches with a lock, and
answers every request, a bad one included (``finish_reason="error"``).

A batch reads its prompts into the KV cache in passes of at most ``prefill_chunk_tokens``
positions: one pass over the left-padded prompts (``attention_mask`` marks the padding,
``position_ids = cumsum(mask) - 1``, clipped at 0) when they fit, otherwise each prompt
alone in chunks, the rows' caches then merged, left-padded. Then it makes one pass per new
token. Between passes it checks each request's deadline and the engine's stop flag: a
long prompt holds the thread for one chunk's time, not for its whole length, and a
request whose deadline passes before its first token finishes with finish reason
``deadline`` and no text. A request that finishes leaves the batch at once (its row is
dropped from the cache, padding no remaining row needs is cut off) and its result goes to
``on_result`` at once. ``Engine.stop`` makes the running batch, and every later one,
raise :class:`~..errors.Stopping` at its next pass.
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
from ..errors import RequestError, Stopping
from ..modeldir import load_model_config
from ..sampling import Sampler
from ..stopping import StopText
from ..tokenizer import TextStream, Tokenizer
from .decoder import Decoder
from .runtime import RuntimeOptions, create_session
from .types import (
    FinishReason,
    GenerationRequest,
    GenerationResult,
    OnResult,
    OnToken,
    TokenEvent,
)

log = logging.getLogger(__name__)

#: Positions a prompt pass feeds: how late a deadline or a stop may be seen while a long
#: prompt is read. SmolLM2-135M on two CPU cores shared with other work: 2-7 s a pass of
#: 256 positions through an 8,053-token prompt, where one pass of the whole took 2 minutes.
DEFAULT_PREFILL_CHUNK_TOKENS = 256


class Engine:
    def __init__(
        self,
        model_dir: str | Path,
        options: RuntimeOptions | None = None,
        *,
        max_prompt_tokens: int | None = None,
        prefill_chunk_tokens: int = DEFAULT_PREFILL_CHUNK_TOKENS,
    ) -> None:
        """``max_prompt_tokens``: the prompt budget (None: the context less one, the room a
        new token needs); ``prefill_chunk_tokens``: positions per prompt pass."""
        model_dir = Path(model_dir)
        options = options or RuntimeOptions()
        self.config = load_model_config(model_dir)
        self.tokenizer = Tokenizer(
            self.config.tokenizer_path,
            bos_token=self.config.bos_token,
            add_bos=self.config.add_bos_token,
        )
        session, self.device = create_session(self.config.onnx_path, options)
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
            _warn_about_cpu_only_nodes(self.config.onnx_path, kv_type)
        self.eos_ids = frozenset(self.config.eos_token_ids)
        self.pad_id = (
            self.config.pad_token_id
            if self.config.pad_token_id is not None
            else min(self.eos_ids, default=0)
        )
        room = self.config.context_length - 1
        self.max_prompt_tokens = min(max_prompt_tokens or room, room)
        self.prefill_chunk_tokens = max(1, prefill_chunk_tokens)
        self._lock = threading.Lock()
        self._stop = threading.Event()
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

    def render(self, kind: str, prompt: str, items: list[dict[str, str]] | None = None) -> str:
        """The text to generate from for a request of ``kind`` (chat template applied),
        grounded on catalog ``items`` when given."""
        return prompts.render(
            kind,
            prompt,
            self.config.chat_template,
            items=items,
            bos_token=self.config.bos_token,
            eos_token=self.config.eos_token,
        )

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def check_prompt(self, prompt: str) -> int:
        """The prompt's length in tokens; a :class:`RequestError` naming the numbers if it
        is empty or over the prompt budget."""
        return len(self._prompt_ids(prompt))

    def _prompt_ids(self, prompt: str) -> list[int]:
        ids = self.tokenizer.encode(prompt)
        if not ids:
            raise RequestError("the prompt is empty")
        if len(ids) > self.max_prompt_tokens:
            context, room = self.context_length, self.context_length - 1
            limit = (
                f"at most {room} for the prompt"
                if self.max_prompt_tokens == room
                else f"this generator takes at most {self.max_prompt_tokens} prompt tokens"
            )
            raise RequestError(
                f"the prompt is {len(ids)} tokens; this model's context is {context} "
                f"tokens ({limit})"
            )
        return ids

    def stop(self) -> None:
        """Abandon the running batch at its next pass and refuse later ones (thread-safe):
        they raise :class:`Stopping`. For a service that is shutting down."""
        self._stop.set()

    def generate(
        self, request: GenerationRequest, on_token: OnToken | None = None
    ) -> GenerationResult:
        return self.generate_batch([request], on_token)[0]

    def generate_batch(
        self,
        requests: Sequence[GenerationRequest],
        on_token: OnToken | None = None,
        on_result: OnResult | None = None,
    ) -> list[GenerationResult]:
        """One result per request, in order. From this thread, ``on_token`` is called for
        every generated token and ``on_result`` with ``(index, result)`` as each request
        finishes, before this returns; an exception either raises aborts the batch."""
        with self._lock:
            return _Batch(self, requests, on_token, on_result).run()


#: Where GroupQueryAttention, which appends in place to a preallocated cache bound as both
#: past and present, takes its past key and value.
GQA_PAST = slice(3, 5)


def fused_attention_kv_type(onnx_path: Path) -> int | None:
    """The KV cache's ONNX element type when every ``past_key_values.*`` input feeds a
    GroupQueryAttention as its past key or value; ``None`` for any other graph
    (``--attention ops``, a graph that mixes kinds of attention)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    pasts = {i.name: i for i in graph.input if i.name.startswith("past_key_values.")}
    fused = {
        name
        for node in graph.node
        if node.op_type == "GroupQueryAttention"
        for name in node.input[GQA_PAST]
    }
    if not pasts or not set(pasts) <= fused:
        return None
    return next(iter(pasts.values())).type.tensor_type.elem_type


def _warn_about_cpu_only_nodes(onnx_path: Path, kv_type: int | None) -> None:
    import onnx

    if kv_type == onnx.TensorProto.FLOAT:
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
    def __init__(self, engine: Engine, requests, on_token, on_result) -> None:
        self.engine = engine
        self.requests = list(requests)
        self.on_token: OnToken | None = on_token
        self.on_result: OnResult | None = on_result
        self.started = time.monotonic()
        self.results: list[GenerationResult | None] = [None] * len(self.requests)

    def run(self) -> list[GenerationResult]:
        self._check_stop()
        rows = [row for i, r in enumerate(self.requests) if (row := self._admit(i, r))]
        if rows and (prefilled := self._prefill(rows)):
            self._decode(*prefilled)
        return self.results  # type: ignore[return-value]

    def _check_stop(self) -> None:
        if self.engine._stop.is_set():
            raise Stopping("the engine is stopping: the batch was abandoned")

    def _admit(self, index: int, request: GenerationRequest) -> _Row | None:
        engine = self.engine
        try:
            ids = engine._prompt_ids(request.prompt)
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
        self._finish(
            index,
            GenerationResult(
                request_id=request.request_id,
                text="",
                token_ids=(),
                prompt_tokens=prompt_tokens,
                finish_reason=reason,
                first_token_seconds=None,
                total_seconds=time.monotonic() - self.started,
                error=error,
            ),
        )

    def _finish(self, index: int, result: GenerationResult) -> None:
        self.results[index] = result
        if self.on_result is not None:
            self.on_result(index, result)

    def _prefill(self, rows: list[_Row]):
        """Read the prompts into the cache: ``(rows, mask, logits, cache)`` of the rows
        still running once every prompt is in, or None when none is (every deadline
        passed first). A batch that fits in one pass of ``prefill_chunk_tokens`` positions
        has one pass over its left-padded prompts, as ever; a bigger one is read a row at a
        time, in chunks (onnxruntime's GroupQueryAttention appends several positions to a
        cache for one row only), and the rows' caches are then merged, left-padded."""
        width = max(len(r.prompt_ids) for r in rows)
        room = self.engine.context_length - width
        reserve = min(room, max(r.request.params.max_new_tokens for r in rows))
        if len(rows) * width <= self.engine.prefill_chunk_tokens:
            ids, mask = _left_padded(rows, self.engine.pad_id)
            positions = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
            logits, cache = self.engine.decoder.prefill(ids, mask, positions, reserve)
            return rows, mask, logits, cache
        read = {}
        # Shortest first: as many rows as can be are read before a long one's deadline.
        for row in sorted(rows, key=lambda r: len(r.prompt_ids)):
            if row.finish is None and (chunks := self._read(row, rows, reserve)):
                read[row.index] = chunks
        rows = [row for row in rows if row.finish is None]
        if not rows:
            return None
        logits = np.concatenate([read[row.index][0] for row in rows])
        caches = [read[row.index][1] for row in rows]
        cache = caches[0] if len(caches) == 1 else self.engine.decoder.merge(caches, reserve)
        return rows, _left_padded(rows, self.engine.pad_id)[1], logits, cache

    def _read(self, row: _Row, rows: list[_Row], reserve: int):
        """``row``'s prompt alone, in chunks: ``(logits, cache)``, or None if its deadline
        passed first. Between chunks every row of ``rows`` whose deadline has passed is
        finished, and a stop is seen."""
        decoder, chunk = self.engine.decoder, self.engine.prefill_chunk_tokens
        ids = np.array([row.prompt_ids], dtype=np.int64)
        length, done, cache = ids.shape[1], 0, None
        while done < length:
            end = min(length, done + chunk)
            mask, positions = np.ones((1, end), np.int64), np.arange(done, end)[None]
            if cache is None:
                logits, cache = decoder.prefill(
                    ids[:, :end], mask, positions, reserve, pending=length - end
                )
            else:
                logits, cache = decoder.step(ids[:, done:end], mask, positions, cache)
            done = end
            self._check_stop()
            now = time.monotonic()
            for other in rows:
                if other.finish is None:
                    self._late(other, now)
            if row.finish is not None:
                return None
        return logits, cache

    def _late(self, row: _Row, now: float) -> None:
        """Finish ``row`` (no text) if its deadline passed before its first token."""
        deadline = row.request.deadline
        if deadline is not None and now >= deadline:
            row.finish = "deadline"
            self._finish_early(row.index, row.request, "deadline", len(row.prompt_ids), None)

    def _decode(self, rows: list[_Row], mask: np.ndarray, logits, cache) -> None:
        decoder = self.engine.decoder
        while True:
            tokens = np.array([row.sampler(logits[k]) for k, row in enumerate(rows)], np.int64)
            keep = [k for k, row in enumerate(rows) if not self._advance(row, int(tokens[k]))]
            if not keep:
                return
            self._check_stop()
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
        self._finish(
            row.index,
            GenerationResult(
                request_id=request.request_id,
                text=row.stops.text,
                token_ids=tuple(row.tokens),
                prompt_tokens=len(row.prompt_ids),
                finish_reason=row.finish,
                first_token_seconds=row.first_token_seconds,
                total_seconds=now - self.started,
            ),
        )
        return True


def _left_padded(rows: list[_Row], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows' prompts, left-padded to the longest, and their attention mask."""
    width = max(len(r.prompt_ids) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for b, row in enumerate(rows):
        ids[b, width - len(row.prompt_ids) :] = row.prompt_ids
        mask[b, width - len(row.prompt_ids) :] = 1
    return ids, mask
