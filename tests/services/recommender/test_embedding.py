"""The content encoder: the ONNX graph computes what BERT + mean pooling computes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from services.recommender.embedding.convert import EmbeddingModelMissing, build, source_dir
from services.recommender.embedding.encoder import Encoder

SENTENCES = ["a film about space travel", "astronauts fly to Mars", "a recipe for bread"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("encoder")
    assert build(out) and not build(out)  # converted once, then found up to date
    return out


def reference(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """BERT written out in numpy from the same weights, then mean pooling and unit length."""
    source = source_dir()
    w = load_file(str(source / "model.safetensors"))
    config = json.loads((source / "config.json").read_text())
    heads, eps = config["num_attention_heads"], config["layer_norm_eps"]

    def norm(x, p):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * w[f"{p}.weight"] + w[f"{p}.bias"]

    def dense(x, p):
        return x @ w[f"{p}.weight"].T + w[f"{p}.bias"]

    from scipy.special import erf

    n, t = ids.shape
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:t]
    x = norm(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
    bias = (1.0 - mask[:, None, None, :]) * -10000.0
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q, k, v = (
            dense(x, f"{p}.attention.self.{name}").reshape(n, t, heads, -1).transpose(0, 2, 1, 3)
            for name in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1]) + bias
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(n, t, -1)
        x = norm(
            dense(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm"
        )
        inner = dense(x, f"{p}.intermediate.dense")
        gelu = 0.5 * inner * (1 + erf(inner / np.sqrt(2)))
        x = norm(dense(gelu, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def test_the_graph_matches_bert_written_in_numpy(model_dir):
    encoder = Encoder(model_dir, threads=1)
    encoded = encoder.tokenizer.encode_batch(SENTENCES)
    ids = np.array([e.ids for e in encoded])
    mask = np.array([e.attention_mask for e in encoded], dtype=np.float64)
    assert mask.min() == 0  # the batch is padded: the mask matters
    got = encoder.encode(SENTENCES)
    assert got.shape == (3, encoder.dimension) and got.dtype == np.float32
    assert np.allclose(got, reference(ids, mask), atol=1e-4)


def test_meaning_and_padding(model_dir):
    encoder = Encoder(model_dir, threads=1)
    space, mars, bread = encoder.encode(SENTENCES)
    assert space @ mars > space @ bread + 0.2
    alone = np.concatenate([encoder.encode([s]) for s in SENTENCES])
    assert np.allclose(alone, encoder.encode(SENTENCES, batch_size=3), atol=1e-5)
    assert np.allclose(np.linalg.norm(alone, axis=1), 1, atol=1e-5)


def test_a_missing_model_says_how_to_get_it(tmp_path):
    with pytest.raises(EmbeddingModelMissing, match="make setup"):
        Encoder(tmp_path)
