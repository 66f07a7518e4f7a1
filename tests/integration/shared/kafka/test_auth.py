"""SASL/SCRAM against the real broker: the SDK, the CLI and the service chassis log in."""

from __future__ import annotations

import time
import uuid

import pytest
from kafka.errors import KafkaError
from pydantic import SecretStr

from shared.events import InteractionEvent
from shared.kafka.publisher import Publisher
from tests.integration.kafka_helpers import read_all, record_count
from tests.integration.stack_helpers import RUN_DIR, STACK_ENV, marquee
from tests.integration.worker_helpers import chassis_worker, get

SASL_PORT = int(STACK_ENV["MARQUEE_KAFKA_PORT"]) + 4


@pytest.fixture
def scram_user(topics):
    name, password = f"app-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    result = marquee(topics, "users", "add", name, "--password-stdin", input=password + "\n")
    assert result.returncode == 0, result.stderr
    assert f"user {name} set (SCRAM-SHA-256)" in result.stdout
    return name, password


def sasl_settings(settings, user: str, password: str):
    return settings.model_copy(
        update={
            "kafka_bootstrap_servers": f"127.0.0.1:{SASL_PORT}",
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": "SCRAM-SHA-256",
            "kafka_sasl_username": user,
            "kafka_sasl_password": SecretStr(password),
        }
    )


def test_publisher_authenticates_with_scram(topics, scram_user):
    secure = sasl_settings(topics, *scram_user)
    event = InteractionEvent.create({"user_id": "u", "item_id": "i", "action": "share"})
    with Publisher(secure) as pub:
        pub.publish_sync(event, timeout=30)
    (record,) = read_all(topics, "interactions", expected=1)
    assert event.id.encode() in record.value


def test_wrong_password_is_refused(topics, scram_user):
    secure = sasl_settings(topics, scram_user[0], "not-the-password")
    log = RUN_DIR / "kafka" / "logs" / "server.log"
    failures_before = log.read_text().count("due to invalid credentials")
    with pytest.raises(KafkaError):
        Publisher(secure, bootstrap_timeout_ms=5_000)
    assert log.read_text().count("due to invalid credentials") > failures_before
    assert record_count(topics, "interactions") == 0


def test_cli_uses_sasl_settings_from_the_environment(topics, scram_user):
    user, password = scram_user
    result = marquee(
        topics,
        "publish",
        "interaction",
        "--user",
        "u9",
        "--item",
        "i9",
        "--type",
        "view",
        MARQUEE_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{SASL_PORT}",
        MARQUEE_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        MARQUEE_KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
        MARQUEE_KAFKA_SASL_USERNAME=user,
        MARQUEE_KAFKA_SASL_PASSWORD=password,
    )
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["publish", "interaction", "--user", "u", "--item", "i", "--type", "view"],
        ["topics", "ensure"],
    ],
)
def test_a_wrong_password_is_named_as_such_by_the_cli_fast(topics, scram_user, command):
    user, _ = scram_user
    started = time.monotonic()
    result = marquee(
        topics,
        *command,
        MARQUEE_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{SASL_PORT}",
        MARQUEE_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        MARQUEE_KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
        MARQUEE_KAFKA_SASL_USERNAME=user,
        MARQUEE_KAFKA_SASL_PASSWORD="not-the-password",
    )
    took = time.monotonic() - started
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()  # one line, no client noise
    assert line.startswith(
        f"marquee: error: Kafka at 127.0.0.1:{SASL_PORT} refused to "
        f"authenticate {user} (SASL_PLAINTEXT, SCRAM-SHA-256)"
    )
    # The broker's reason when it sends one; Kafka 4 often just hangs up after the exchange.
    said = "invalid credentials" in line or "closed the connection during SASL" in line
    assert said and "MARQUEE_KAFKA_SASL_PASSWORD" in line
    assert "not-the-password" not in line and "cannot reach" not in line
    assert took < 10, took  # a guard, not a benchmark: start-up plus the CLI's 3 s wait


def test_service_chassis_authenticates_with_scram(topics, scram_user, tmp_path):
    user, password = scram_user
    sasl_env = {
        "MARQUEE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{SASL_PORT}",
        "MARQUEE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "MARQUEE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "MARQUEE_KAFKA_SASL_USERNAME": user,
        "MARQUEE_KAFKA_SASL_PASSWORD": password,
    }
    with chassis_worker(topics, tmp_path, **sasl_env) as (_, port):
        status, body = get(port, "/readyz")  # ready = a heartbeat confirmed over SASL
        assert status == 200, body
    assert password not in (tmp_path / "worker.log").read_text()
