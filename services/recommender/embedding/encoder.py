"""Texts to unit vectors with the converted encoder (see :mod:`.convert`); the encoder
itself lives in :mod:`shared.embedding`, since the generator embeds questions with it."""

from shared.embedding import MAX_TOKENS, Encoder

__all__ = ["MAX_TOKENS", "Encoder"]
