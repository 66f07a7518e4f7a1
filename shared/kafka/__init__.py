"""Kafka plumbing on kafka-python: client options, topic admin, the publisher SDK."""
