"""Stored interactions column by column, and Postgres' binary COPY format for numbers.

A retrain reads every interaction and writes every factor; as Python tuples and text both
cost more than the ALS fit itself. Here they move as numpy arrays through ``COPY ...
(FORMAT binary)``: fixed-width rows parse with one ``np.frombuffer``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

#: (user_id, item_id, confidence, timestamp)
Event = tuple[str, str, float, float]

_SIGNATURE = b"PGCOPY\n\xff\r\n\0"
_HEADER = _SIGNATURE + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_FLOAT4_OID = 700


@dataclass(frozen=True)
class Interactions:
    """Events as columns: ``users``/``items`` are dense codes into ``user_ids``/``item_ids``.

    Iterating yields :data:`Event` tuples, so code written for lists of events takes it."""

    user_ids: list[str]
    item_ids: list[str]
    users: np.ndarray  # int64 codes
    items: np.ndarray  # int64 codes
    weights: np.ndarray  # float32
    times: np.ndarray  # float64, epoch seconds

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> Interactions:
        """Columns of :data:`Event` tuples; ids coded in the order they first appear."""
        users: dict[str, int] = {}
        items: dict[str, int] = {}
        coded = [
            (users.setdefault(u, len(users)), items.setdefault(i, len(items)), w, t)
            for u, i, w, t in events
        ]
        columns = list(zip(*coded, strict=True)) or [(), (), (), ()]
        return cls(
            user_ids=list(users),
            item_ids=list(items),
            users=np.asarray(columns[0], dtype=np.int64),
            items=np.asarray(columns[1], dtype=np.int64),
            weights=np.asarray(columns[2], dtype=np.float32),
            times=np.asarray(columns[3], dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.users)

    def __iter__(self) -> Iterator[Event]:
        users, items = self.user_ids, self.item_ids
        return (
            (users[u], items[i], w, t)
            for u, i, w, t in zip(
                self.users.tolist(),
                self.items.tolist(),
                self.weights.tolist(),
                self.times.tolist(),
                strict=True,
            )
        )


def parse_binary_copy(data: bytes, fields: list[str]) -> list[np.ndarray]:
    """Columns of a ``COPY ... TO STDOUT (FORMAT binary)`` whose fields are all fixed-width
    and never NULL; ``fields`` are their big-endian numpy types (``">i4"``, ``">f8"``...)."""
    if not data.startswith(_SIGNATURE) or not data.endswith(_TRAILER):
        raise ValueError("not PostgreSQL binary COPY data")
    flags, extension = struct.unpack_from(">ii", data, len(_SIGNATURE))
    if flags:  # bit 16: every row carries an OID first
        raise ValueError(f"unsupported binary COPY flags {flags:#x}")
    start = len(_SIGNATURE) + 8 + extension
    body = memoryview(data)[start : len(data) - len(_TRAILER)]
    layout = [("count", ">i2")]
    for n, kind in enumerate(fields):
        layout += [(f"len{n}", ">i4"), (f"f{n}", kind)]
    rows = np.frombuffer(body, dtype=np.dtype(layout))
    if len(rows) and not (rows["count"] == len(fields)).all():
        raise ValueError(f"COPY rows do not all have {len(fields)} fields")
    for n, kind in enumerate(fields):
        if len(rows) and not (rows[f"len{n}"] == np.dtype(kind).itemsize).all():
            raise ValueError(f"COPY field {n} is NULL or not {kind}")
    return [rows[f"f{n}"] for n in range(len(fields))]


def binary_copy_factors(
    version: int, ids: list[str], factors: np.ndarray, encoding: str = "utf-8"
) -> bytes:
    """``COPY <side>_factors (model_version, idx, external_id, factors) FROM STDIN (FORMAT
    binary)`` data: one row per id, its factors a ``real[]``; ids in the connection's
    client ``encoding`` (Python's name for it), as Postgres reads binary text."""
    rows, width = factors.shape
    # Each element of a binary array is its length (4) and its big-endian float4.
    elements = np.empty((rows, 2 * width), dtype=">i4")
    elements[:, 0::2] = 4
    elements[:, 1::2] = np.ascontiguousarray(factors, dtype=">f4").view(">i4")
    array_header = struct.pack(">iiIii", 1, 0, _FLOAT4_OID, width, 1)
    array_length = len(array_header) + elements.shape[1] * 4
    parts = [_HEADER]
    for idx, (external, row) in enumerate(zip(ids, elements, strict=True)):
        name = external.encode(encoding)
        parts.append(struct.pack(">hiiiii", 4, 4, version, 4, idx, len(name)))
        parts.append(name)
        parts.append(struct.pack(">i", array_length) + array_header)
        parts.append(row.tobytes())
    parts.append(_TRAILER)
    return b"".join(parts)
