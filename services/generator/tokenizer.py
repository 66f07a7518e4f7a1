"""``tokenizer.json`` through the ``tokenizers`` package, with streaming detokenization."""

from __future__ import annotations

from pathlib import Path

from .errors import ModelError


class Tokenizer:
    def __init__(self, path: Path, *, bos_token: str | None = None, add_bos: bool = False) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        try:
            self._tok = HFTokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises a bare Exception subclass
            raise ModelError(f"cannot load {path}: {exc}") from None
        self.bos_id = self._tok.token_to_id(bos_token) if bos_token and add_bos else None

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special tokens written in it (``<|im_start|>``) are kept."""
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids.insert(0, self.bos_id)
        return ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)

    def stream(self) -> TextStream:
        return TextStream(self)


class TextStream:
    """Turns tokens into text deltas whose concatenation is ``decode(all tokens)``.

    Byte-level BPE splits multi-byte characters across tokens, so a token may decode to
    an incomplete character (U+FFFD); such text is held back until the next token ends it.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # start of the re-decoded window
        self._read = 0  # tokens whose text has been returned

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        decode = self._tokenizer.decode
        before = decode(self._ids[self._prefix : self._read])
        after = decode(self._ids[self._prefix :])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        # Re-decode from the last emitted token on: a window of a few tokens, not the whole
        # text, so each push costs the same however long the completion grows.
        self._prefix, self._read = self._read, len(self._ids)
        return after[len(before) :]

    def flush(self) -> str:
        """The text held back when generation ends: a character cut off by the end comes
        out as U+FFFD, as ``decode`` of all the tokens has it."""
        decode = self._tokenizer.decode
        before = decode(self._ids[self._prefix : self._read])
        after = decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return after[len(before) :] if len(after) > len(before) else ""
