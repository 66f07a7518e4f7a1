"""Kafka plumbing on kafka-python: client options, topic admin, the publisher SDK."""

from .checksum import install as _install_checksum

_install_checksum()
