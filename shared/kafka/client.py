"""Connection and security options shared by every kafka-python client we build."""

from __future__ import annotations

from typing import Any

from ..config import Settings


def client_options(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """kafka-python keyword arguments for bootstrap servers, SASL/TLS and how long to wait
    for a first broker; ``overrides`` (a client's own timeouts, say) win."""
    opts: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in settings.kafka_bootstrap_servers.split(",")],
        "client_id": settings.kafka_client_id,
        "security_protocol": settings.kafka_security_protocol,
        "bootstrap_timeout_ms": int(settings.kafka_bootstrap_timeout_seconds * 1000),
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        opts["ssl_check_hostname"] = settings.kafka_ssl_check_hostname
        for name in ("cafile", "certfile", "keyfile"):
            value = getattr(settings, f"kafka_ssl_{name}")
            if value is not None:
                opts[f"ssl_{name}"] = str(value)
    if settings.kafka_security_protocol.startswith("SASL"):
        assert settings.kafka_sasl_password is not None  # checked by Settings
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        opts["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return opts | overrides
