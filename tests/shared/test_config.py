"""Settings: MARQUEE_ variables, frozen, secrets masked, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.config import CHECKOUT_RUN_DIR, Settings, load_settings, settings_file
from shared.errors import ConfigurationError

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
    monkeypatch.setenv("MARQUEE_RUN_DIR", str(tmp_path / "no-stack"))
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
        load_settings()


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
        load_settings()
    assert str(info.value).startswith("invalid configuration: ")
    assert expected in str(info.value)


def test_load_settings_reports_cross_field_errors_without_a_bogus_variable(monkeypatch):
    monkeypatch.setenv("MARQUEE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
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


def test_the_local_stacks_file_is_read_from_any_folder(monkeypatch, tmp_path):
    run_dir = tmp_path / "checkout" / ".run"
    run_dir.mkdir(parents=True)
    (run_dir / "marquee.env").write_text("MARQUEE_TOPIC_PREFIX=stack.\n")
    monkeypatch.setenv("MARQUEE_RUN_DIR", str(run_dir))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_settings().topic_prefix == "stack."
    assert settings_file() == run_dir / "marquee.env"


def test_the_checkouts_run_dir_is_the_default(monkeypatch):
    monkeypatch.delenv("MARQUEE_RUN_DIR")
    assert CHECKOUT_RUN_DIR == Path(__file__).resolve().parents[2] / ".run"
    expected = CHECKOUT_RUN_DIR / "marquee.env"
    assert settings_file() == (expected if expected.is_file() else None)


def test_without_a_stack_file_the_environment_alone_counts(monkeypatch):
    monkeypatch.setenv("MARQUEE_HTTP_PORT", "7003")
    assert settings_file() is None
    assert load_settings().http_port == 7003


def test_marquee_env_file_names_the_file_for_the_sdk_too(monkeypatch, tmp_path):
    named = tmp_path / "prod.env"
    named.write_text("MARQUEE_KAFKA_CLIENT_ID=from-named\n")
    monkeypatch.setenv("MARQUEE_ENV_FILE", str(named))
    assert load_settings().kafka_client_id == "from-named"
    monkeypatch.setenv("MARQUEE_ENV_FILE", "")
    assert settings_file() is None and load_settings().kafka_client_id == "marquee"


@pytest.mark.parametrize("how", ["argument", "variable"])
def test_a_named_file_that_is_missing_is_an_error_naming_it(monkeypatch, how):
    if how == "variable":
        monkeypatch.setenv("MARQUEE_ENV_FILE", "/nonexistent/marquee.env")
    with pytest.raises(ConfigurationError, match="settings file /nonexistent/marquee.env does"):
        load_settings(env_file=Path("/nonexistent/marquee.env") if how == "argument" else None)


def test_invalid_value_in_env_file_is_a_configuration_error(tmp_path):
    env_file = tmp_path / "stack.env"
    env_file.write_text("MARQUEE_HTTP_PORT=99999\n")
    with pytest.raises(ConfigurationError, match="MARQUEE_HTTP_PORT"):
        load_settings(env_file=env_file)


def test_short_http_token_is_refused_with_advice(monkeypatch):
    monkeypatch.setenv("MARQUEE_HTTP_TOKEN", "short")
    with pytest.raises(ConfigurationError, match="MARQUEE_HTTP_TOKEN: .*at least 16 characters"):
        load_settings()


def test_a_command_waits_seconds_for_a_broker_unless_told_otherwise(monkeypatch, tmp_path):
    assert load_settings().for_prompt().kafka_bootstrap_timeout_seconds == 3.0
    (tmp_path / "slow.env").write_text("MARQUEE_KAFKA_BOOTSTRAP_TIMEOUT_SECONDS=40\n")
    assert (
        load_settings(env_file=tmp_path / "slow.env").for_prompt().kafka_bootstrap_timeout_seconds
        == 40
    )
    monkeypatch.setenv("MARQUEE_KAFKA_BOOTSTRAP_TIMEOUT_SECONDS", "1.5")
    assert load_settings().for_prompt().kafka_bootstrap_timeout_seconds == 1.5
