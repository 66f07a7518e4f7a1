"""A Hugging Face ``tokenizer.json`` from a GGUF's tokenizer metadata.

GGUF keeps a byte-level BPE tokenizer as ``tokenizer.ggml.tokens``, ``.merges`` and
``.token_type`` (3 = control tokens such as ``<|im_end|>``), plus the name of the
pre-tokenizer (``tokenizer.ggml.pre``) whose regular expressions llama.cpp hard-codes.
The pre-tokenizers below reproduce those expressions with the ``tokenizers`` package.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConversionError
from .gguf_file import GGUFModel

CONTROL = 3
USER_DEFINED = 4

_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class SpecialTokens:
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    bos: str | None
    eos: str | None
    pad: str | None
    add_bos: bool


def _pre_tokenizer(name: str):
    from tokenizers import Regex, pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if name in ("gpt2", "default", "gpt-2"):
        return byte_level
    if name == "smollm":
        # llama.cpp: every digit on its own, then GPT-2's expression.
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if name in ("llama-bpe", "llama3", "smaug-bpe"):
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    raise ConversionError(
        f"GGUF pre-tokenizer {name!r} is not supported (known: gpt2, smollm, llama-bpe)"
    )


def build_tokenizer(model: GGUFModel):
    """A ``tokenizers.Tokenizer`` equivalent to the GGUF's, and its special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    kind = model.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ConversionError(
            f"{model.path.name}: tokenizer model {kind!r} is not supported (only byte-level "
            "BPE, 'gpt2'); export the model with optimum-cli instead"
        )
    tokens: list[str] = list(model.require("tokenizer.ggml.tokens"))
    types = list(model.get("tokenizer.ggml.token_type") or [1] * len(tokens))
    merges = [tuple(m.split(" ", 1)) for m in model.require("tokenizer.ggml.merges")]
    bpe = models.BPE(
        vocab={t: i for i, t in enumerate(tokens)},
        merges=merges,
        ignore_merges=False,
        fuse_unk=False,
        byte_fallback=False,
    )
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = _pre_tokenizer(str(model.get("tokenizer.ggml.pre", "gpt2")))
    tokenizer.decoder = decoders.ByteLevel()
    special = [
        AddedToken(tokens[i], special=t == CONTROL, normalized=False)
        for i, t in enumerate(types)
        if t in (CONTROL, USER_DEFINED)
    ]
    tokenizer.add_special_tokens([t for t in special if t.special])
    tokenizer.add_tokens([t for t in special if not t.special])

    def token(key: str) -> tuple[int | None, str | None]:
        idx = model.get(key)
        return (None, None) if idx is None else (int(idx), tokens[int(idx)])

    (bos_id, bos), (eos_id, eos), (pad_id, pad) = (
        token("tokenizer.ggml.bos_token_id"),
        token("tokenizer.ggml.eos_token_id"),
        token("tokenizer.ggml.padding_token_id"),
    )
    add_bos = bool(model.get("tokenizer.ggml.add_bos_token", False))
    return tokenizer, SpecialTokens(bos_id, eos_id, pad_id, bos, eos, pad, add_bos)
