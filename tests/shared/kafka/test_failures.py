"""One line for why a client could not connect: refused credentials or no broker."""

import logging

from shared.config import Settings
from shared.kafka import failures

SASL = Settings(
    kafka_bootstrap_servers="b:9096",
    kafka_security_protocol="SASL_PLAINTEXT",
    kafka_sasl_mechanism="SCRAM-SHA-256",
    kafka_sasl_username="app1",
    kafka_sasl_password="wrong-password",
)
LOST = "<KafkaConnection node_id=bootstrap-0>: Connection lost: KafkaConnectionError: {}"


def seen(*lines: str) -> failures.ConnectionFailures:
    with failures.capture() as captured:
        for line in lines:
            logging.getLogger("kafka.net.connection").error(line)
    return captured


def test_the_brokers_refusal_is_named_with_its_reason():
    captured = seen(
        LOST.format("") + "[Error 58] SaslAuthenticationFailedError: invalid credentials"
    )
    assert failures.explain(SASL, captured).startswith(
        "Kafka at b:9096 refused to authenticate app1 (SASL_PLAINTEXT, SCRAM-SHA-256): "
        "invalid credentials"
    )


def test_a_hang_up_during_sasl_is_a_refusal_too():
    # Kafka 4 often closes the connection after a failed SCRAM exchange, without an answer.
    captured = seen(LOST.format("socket disconnected"))
    line = failures.explain(SASL, captured)
    assert line.startswith("Kafka at b:9096 refused to authenticate app1")
    assert "closed the connection during SASL authentication" in line


def test_without_sasl_a_hang_up_is_an_unreachable_broker():
    captured = seen(LOST.format("socket disconnected"))
    line = failures.explain(Settings(kafka_bootstrap_servers="b:9092"), captured)
    assert line.startswith("cannot reach Kafka at b:9092 within 30 s (KafkaConnectionError:")


def test_a_refused_connection_is_an_unreachable_broker_even_with_sasl():
    captured = seen(LOST.format("[Errno 111] ECONNREFUSED"))
    assert failures.explain(SASL, captured).startswith("cannot reach Kafka at b:9096")


def test_a_hang_up_still_counts_when_the_deadline_cut_the_last_attempt_short():
    # Retries run until the bootstrap deadline, so the last attempt may time out mid-SCRAM.
    captured = seen(
        LOST.format("socket disconnected"),
        "<KafkaConnection node_id=bootstrap-0>: Connection failed: "
        "[Error 7] RequestTimedOutError: Request timed out after 97 ms",
    )
    line = failures.explain(SASL, captured)
    assert line.startswith("Kafka at b:9096 refused to authenticate app1"), line
