"""Decoding group member assignments (kafka-python's dicts, and raw bytes it gives up on)."""

from __future__ import annotations

import struct

from services.dashboard.kafka_source import assigned_partitions


def encode(version: int, topics: dict[str, list[int]], user_data: bytes = b"") -> bytes:
    """The consumer protocol's assignment layout, as any client writes it."""
    out = struct.pack(">hi", version, len(topics))
    for topic, partitions in topics.items():
        name = topic.encode()
        out += struct.pack(">h", len(name)) + name
        out += struct.pack(f">i{len(partitions)}i", len(partitions), *partitions)
    return out + struct.pack(">i", len(user_data)) + user_data


def test_decoded_by_kafka_python():
    assignment = {"assigned_partitions": [{"topic": "interactions", "partitions": [0, 2]}]}
    assert assigned_partitions(assignment) == {("interactions", 0), ("interactions", 2)}


def test_a_faust_assignment_kafka_python_could_not_decode():
    # Faust writes version 4 with zlib-compressed user data after the partitions.
    raw = encode(4, {"t.interactions": [1, 4], "t.marquee-x-__assignor-__leader": [0]}, b"x\x9c")
    assert assigned_partitions(raw) == {
        ("t.interactions", 1),
        ("t.interactions", 4),
        ("t.marquee-x-__assignor-__leader", 0),
    }


def test_garbage_and_nothing_own_nothing():
    assert assigned_partitions(None) == set()
    assert assigned_partitions(b"") == set()
    assert assigned_partitions(b"\x00\x04\x00\x00\x00\x09\x00") == set()  # cut short
