"""Stop sequences over streamed text, without ever streaming what gets cut.

Text that might be the start of a stop sequence is held back until it is known not to
be, so the streamed pieces always add up to the final text.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopText:
    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._longest = max((len(s) for s in self.stops), default=0)
        self.text = ""
        self._emitted = 0
        self.stopped = False

    def push(self, delta: str) -> str:
        """Add ``delta``; return the text now safe to stream (may be empty)."""
        if self.stopped or not delta:
            return ""
        searched_from = max(0, len(self.text) - self._longest + 1)
        self.text += delta
        hits = [i for s in self.stops if (i := self.text.find(s, searched_from)) >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.stopped = True
            return self._release(len(self.text))
        return self._release(len(self.text) - self._pending_prefix())

    def flush(self) -> str:
        """The held-back rest, once generation ended for another reason."""
        return self._release(len(self.text))

    def _pending_prefix(self) -> int:
        """Length of the longest end of the text that begins some stop sequence."""
        for n in range(min(self._longest - 1, len(self.text) - self._emitted), 0, -1):
            tail = self.text[-n:]
            if any(s.startswith(tail) for s in self.stops):
                return n
        return 0

    def _release(self, upto: int) -> str:
        piece = self.text[self._emitted : upto]
        self._emitted = max(self._emitted, upto)
        return piece
