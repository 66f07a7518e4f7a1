"""Kafka security settings become the credentials Faust hands to aiokafka."""

from __future__ import annotations

from faust.auth import SASLCredentials

from shared.config import Settings
from shared.service.credentials import broker_credentials


def test_plaintext_needs_no_credentials():
    assert broker_credentials(Settings()) is None


def test_sasl_carries_the_mechanism_and_the_secret_but_no_tls_in_plaintext():
    creds = broker_credentials(
        Settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="SCRAM-SHA-256",
            kafka_sasl_username="app1",
            kafka_sasl_password="pw-from-a-secret",
        )
    )
    assert isinstance(creds, SASLCredentials)
    assert (creds.username, creds.password) == ("app1", "pw-from-a-secret")
    assert creds.mechanism.value == "SCRAM-SHA-256"
    assert creds.ssl_context is None


def test_sasl_ssl_builds_a_context_that_checks_the_host_unless_told():
    def creds(check: bool):
        return broker_credentials(
            Settings(
                kafka_security_protocol="SASL_SSL",
                kafka_sasl_mechanism="PLAIN",
                kafka_sasl_username="u",
                kafka_sasl_password="p",
                kafka_ssl_check_hostname=check,
            )
        )

    assert creds(True).ssl_context.check_hostname is True
    assert creds(False).ssl_context.check_hostname is False
