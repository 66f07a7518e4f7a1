"""Settings: MARQUEE_ variables, frozen, secrets masked, clear errors; Kafka client options."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.config import Settings, load_settings
from shared.errors import ConfigurationError
from shared.kafka.client import client_options

DSN = "postgresql+psycopg2://marquee:hunter2@db.example:5432/marquee"
SASL = {
    "MARQUEE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "MARQUEE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "MARQUEE_KAFKA_SASL_USERNAME": "svc-recommender",
    "MARQUEE_KAFKA_SASL_PASSWORD": "s3cr3t-pw",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No MARQUEE_ variable from the developer's shell, no .run/marquee.env from the checkout."""
    for name in list(os.environ):
        if name.startswith("MARQUEE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def setenv(monkeypatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_defaults_without_environment():
    s = Settings()
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert s.max_event_bytes == 64 * 1024


def test_reads_marquee_variables(monkeypatch):
    setenv(
        monkeypatch,
        {
            "MARQUEE_KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
            "MARQUEE_TOPIC_PREFIX": "dev.",
            "MARQUEE_HTTP_PORT": "7001",
            "MARQUEE_MAX_CLOCK_SKEW_SECONDS": "12.5",
            "MARQUEE_KAFKA_SSL_CHECK_HOSTNAME": "false",
            "MARQUEE_POSTGRES_DSN": DSN,
            "HTTP_PORT": "1",  # unprefixed names are not ours
        },
    )
    s = Settings()
    assert s.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert s.topic_prefix == "dev."
    assert s.http_port == 7001
    assert s.max_clock_skew_seconds == 12.5
    assert s.kafka_ssl_check_hostname is False
    assert s.postgres_dsn.get_secret_value() == DSN


def test_settings_are_frozen():
    s = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        s.http_port = 1


def test_secrets_are_masked_when_printed(monkeypatch):
    setenv(monkeypatch, {**SASL, "MARQUEE_POSTGRES_DSN": DSN})
    s = Settings()
    for text in (repr(s), str(s), s.model_dump_json(), f"{s}"):
        assert "hunter2" not in text and "db.example" not in text
        assert "s3cr3t-pw" not in text
        assert "**********" in text
    assert s.kafka_sasl_username in repr(s)  # not a secret


def test_sasl_without_credentials_names_the_variables(monkeypatch):
    monkeypatch.setenv("MARQUEE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ValidationError) as info:
        Settings()
    for name in (
        "MARQUEE_KAFKA_SASL_MECHANISM",
        "MARQUEE_KAFKA_SASL_USERNAME",
        "MARQUEE_KAFKA_SASL_PASSWORD",
    ):
        assert name in str(info.value)


def test_sasl_mechanism_without_sasl_protocol_is_an_error(monkeypatch):
    monkeypatch.setenv("MARQUEE_KAFKA_SASL_MECHANISM", "PLAIN")
    with pytest.raises(ConfigurationError, match="MARQUEE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"):
        load_settings(env_file=Path("absent.env"))


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("MARQUEE_HTTP_PORT", "not-a-port", "MARQUEE_HTTP_PORT: "),
        ("MARQUEE_HTTP_PORT", "0", "MARQUEE_HTTP_PORT: "),
        ("MARQUEE_KAFKA_SECURITY_PROTOCOL", "TLS", "MARQUEE_KAFKA_SECURITY_PROTOCOL: "),
        ("MARQUEE_TOPIC_PREFIX", "has space", "MARQUEE_TOPIC_PREFIX: "),
        ("MARQUEE_MAX_EVENT_BYTES", "10", "MARQUEE_MAX_EVENT_BYTES: "),
    ],
)
def test_load_settings_names_the_invalid_variable(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings(env_file=Path("absent.env"))
    assert str(info.value).startswith("invalid configuration: ")
    assert expected in str(info.value)


def test_load_settings_reports_cross_field_errors_without_a_bogus_variable(monkeypatch):
    monkeypatch.setenv("MARQUEE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    with pytest.raises(ConfigurationError) as info:
        load_settings(env_file=Path("absent.env"))
    message = str(info.value)
    assert "MARQUEE_KAFKA_SASL_PASSWORD" in message
    # A model-level error has no field location; it must not be reported as "MARQUEE_?".
    assert "MARQUEE_?" not in message


def test_env_file_is_read_and_the_environment_wins(monkeypatch, tmp_path):
    env_file = tmp_path / "stack.env"
    env_file.write_text(
        f"MARQUEE_HTTP_PORT=7002\nMARQUEE_KAFKA_CLIENT_ID=from-file\nMARQUEE_POSTGRES_DSN={DSN}\n"
    )
    monkeypatch.setenv("MARQUEE_KAFKA_CLIENT_ID", "from-env")
    s = load_settings(env_file=env_file)
    assert s.http_port == 7002
    assert s.kafka_client_id == "from-env"
    assert s.postgres_dsn.get_secret_value() == DSN


def test_default_env_file_is_the_local_stacks(tmp_path):
    (tmp_path / ".run").mkdir()
    (tmp_path / ".run" / "marquee.env").write_text("MARQUEE_TOPIC_PREFIX=stack.\n")
    assert load_settings().topic_prefix == "stack."


def test_missing_env_file_means_environment_only(monkeypatch):
    monkeypatch.setenv("MARQUEE_HTTP_PORT", "7003")
    assert load_settings(env_file=Path("absent.env")).http_port == 7003


def test_invalid_value_in_env_file_is_a_configuration_error(tmp_path):
    env_file = tmp_path / "stack.env"
    env_file.write_text("MARQUEE_HTTP_PORT=99999\n")
    with pytest.raises(ConfigurationError, match="MARQUEE_HTTP_PORT"):
        load_settings(env_file=env_file)


# --- kafka-python client options --------------------------------------------------------------
def test_client_options_plaintext():
    opts = client_options(Settings(kafka_bootstrap_servers="k1:9092,k2:9093", kafka_client_id="t"))
    assert opts == {
        "bootstrap_servers": ["k1:9092", "k2:9093"],
        "client_id": "t",
        "security_protocol": "PLAINTEXT",
    }


def test_client_options_ssl(tmp_path):
    s = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=tmp_path / "ca.pem",
        kafka_ssl_certfile=tmp_path / "client.pem",
        kafka_ssl_check_hostname=False,
    )
    opts = client_options(s)
    assert opts["security_protocol"] == "SSL"
    assert opts["ssl_cafile"] == str(tmp_path / "ca.pem")
    assert opts["ssl_certfile"] == str(tmp_path / "client.pem")
    assert "ssl_keyfile" not in opts  # unset files are left to kafka-python's defaults
    assert opts["ssl_check_hostname"] is False
    assert not any(k.startswith("sasl") for k in opts)


def test_client_options_sasl_ssl_unwraps_the_password(monkeypatch, tmp_path):
    setenv(monkeypatch, {**SASL, "MARQUEE_KAFKA_SSL_CAFILE": str(tmp_path / "ca.pem")})
    opts = client_options(Settings())
    assert opts["security_protocol"] == "SASL_SSL"
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert opts["sasl_plain_username"] == "svc-recommender"
    assert opts["sasl_plain_password"] == "s3cr3t-pw"  # a plain str, not a SecretStr
    assert opts["ssl_cafile"] == str(tmp_path / "ca.pem")
    assert opts["ssl_check_hostname"] is True


def test_client_options_sasl_plaintext_has_no_tls_options(monkeypatch):
    setenv(
        monkeypatch,
        {
            **SASL,
            "MARQUEE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "MARQUEE_KAFKA_SASL_MECHANISM": "PLAIN",
        },
    )
    opts = client_options(Settings())
    assert opts["sasl_mechanism"] == "PLAIN"
    assert not any(k.startswith("ssl") for k in opts)


def test_short_http_token_is_refused_with_advice(monkeypatch):
    monkeypatch.setenv("MARQUEE_HTTP_TOKEN", "short")
    with pytest.raises(ConfigurationError, match="MARQUEE_HTTP_TOKEN: .*at least 16 characters"):
        load_settings()
