"""Texts to unit vectors with the content encoder (all-MiniLM-L6-v2 as ONNX).

The recommender builds the encoder (``marquee encoder build``) and embeds the catalog
with it; the generator embeds readers' questions with the same one, so a question and
the items it is about land near each other. Shared because both services run it and
neither may import the other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import MarqueeError


class EmbeddingModelMissing(MarqueeError):
    """The wheel or the built encoder is not there."""


#: Tokens read of each text: enough for a title, tags and a summary's first sentences.
MAX_TOKENS = 128


class Encoder:
    def __init__(self, model_dir: Path | str, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        manifest = model_dir / "manifest.json"
        if not manifest.exists():
            raise EmbeddingModelMissing(
                f"no content encoder in {model_dir}: run `make setup` (or `marquee encoder build`)"
            )
        about = json.loads(manifest.read_text())
        self.name, self.dimension = about["name"], int(about["dimension"])
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """One unit vector (float32) per text, in order."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            encoded = self.tokenizer.encode_batch(texts[start : start + batch_size])
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            (vectors,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[start : start + len(encoded)] = vectors
        return out
