"""kafka-python options from the settings: servers, client id, TLS files, SASL, timeouts."""

from __future__ import annotations

from pathlib import Path

from shared.config import Settings
from shared.kafka.client import client_options

SASL = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "svc-recommender",
    "kafka_sasl_password": "s3cr3t-pw",
}


def test_plaintext_has_no_security_options():
    opts = client_options(Settings(kafka_bootstrap_servers="k1:9092, k2:9093", kafka_client_id="t"))
    assert opts == {
        "bootstrap_servers": ["k1:9092", "k2:9093"],
        "client_id": "t",
        "security_protocol": "PLAINTEXT",
        "bootstrap_timeout_ms": 30_000,
    }


def test_the_bootstrap_timeout_comes_from_the_settings_and_overrides_win():
    settings = Settings(kafka_bootstrap_timeout_seconds=2.5)
    assert client_options(settings)["bootstrap_timeout_ms"] == 2_500
    opts = client_options(settings, bootstrap_timeout_ms=10_000, request_timeout_ms=5_000)
    assert (opts["bootstrap_timeout_ms"], opts["request_timeout_ms"]) == (10_000, 5_000)


def test_ssl_passes_only_the_files_that_are_set(tmp_path: Path):
    opts = client_options(
        Settings(
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=tmp_path / "ca.pem",
            kafka_ssl_certfile=tmp_path / "client.pem",
            kafka_ssl_check_hostname=False,
        )
    )
    assert opts["security_protocol"] == "SSL"
    assert opts["ssl_cafile"] == str(tmp_path / "ca.pem")
    assert opts["ssl_certfile"] == str(tmp_path / "client.pem")
    assert "ssl_keyfile" not in opts  # unset files are left to kafka-python's defaults
    assert opts["ssl_check_hostname"] is False
    assert not any(k.startswith("sasl") for k in opts)


def test_sasl_ssl_unwraps_the_password(tmp_path: Path):
    opts = client_options(Settings(**SASL, kafka_ssl_cafile=tmp_path / "ca.pem"))
    assert opts["security_protocol"] == "SASL_SSL"
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert opts["sasl_plain_username"] == "svc-recommender"
    assert opts["sasl_plain_password"] == "s3cr3t-pw"  # a plain str, not a SecretStr
    assert opts["ssl_cafile"] == str(tmp_path / "ca.pem")
    assert opts["ssl_check_hostname"] is True


def test_sasl_plaintext_has_no_tls_options(tmp_path: Path):
    opts = client_options(
        Settings(
            **SASL | {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN"},
            kafka_ssl_cafile=tmp_path / "ca.pem",
        )
    )
    assert opts["sasl_mechanism"] == "PLAIN"
    assert not any(k.startswith("ssl") for k in opts)
