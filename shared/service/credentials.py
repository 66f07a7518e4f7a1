"""Kafka security settings -> faust/aiokafka credentials (the SDK side is kafka/client.py)."""

from __future__ import annotations

import ssl

from faust.auth import SASLCredentials, SSLCredentials

from ..config import Settings


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    )
    context.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(
            str(settings.kafka_ssl_certfile),
            str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        )
    return context


def broker_credentials(settings: Settings) -> SASLCredentials | SSLCredentials | None:
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return SSLCredentials(_ssl_context(settings))
    assert settings.kafka_sasl_password is not None  # checked by Settings
    return SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=_ssl_context(settings) if protocol == "SASL_SSL" else None,
    )


def aiokafka_options(settings: Settings) -> dict:
    """Connection and security keyword arguments for an aiokafka client of a service (a
    consumer it owns besides the Faust app's), from the same settings as the app's."""
    opts: dict = {
        "bootstrap_servers": [s.strip() for s in settings.kafka_bootstrap_servers.split(",")],
        "security_protocol": settings.kafka_security_protocol,
    }
    protocol = settings.kafka_security_protocol
    if protocol in ("SSL", "SASL_SSL"):
        opts["ssl_context"] = _ssl_context(settings)
    if protocol.startswith("SASL"):
        assert settings.kafka_sasl_password is not None  # checked by Settings
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        opts["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return opts
