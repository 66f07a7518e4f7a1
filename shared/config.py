"""Typed, frozen settings shared by every service and tool (prefix ``MARQUEE_``).

Only entrypoints build a :class:`Settings` (from the environment and, when present, the
env file that ``make up`` writes); everything else receives it as an argument.
Secrets are :class:`~pydantic.SecretStr` so printing the settings never shows them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigurationError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

#: Where ``make up`` runs the local stack (``MARQUEE_RUN_DIR`` moves it): its
#: ``marquee.env`` holds the stack's addresses and DSN.
CHECKOUT_RUN_DIR = Path(__file__).resolve().parents[1] / ".run"


#: The longest a command waits for a first Kafka broker before it says it found none: with
#: Python's start-up, the one-line error comes within 5 s.
PROMPT_BOOTSTRAP_SECONDS = 3.0


class Settings(BaseSettings):
    """Settings every Marquee process understands. Services subclass it for their own."""

    model_config = SettingsConfigDict(
        env_prefix="MARQUEE_", frozen=True, extra="ignore", env_file_encoding="utf-8"
    )

    # Kafka
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_check_hostname: bool = True
    kafka_client_id: str = "marquee"
    #: How long a silent consumer keeps its partitions: shorter means faster takeover
    #: after a crash, longer tolerates longer pauses (the broker allows 6 s to 30 min).
    kafka_session_timeout_seconds: float = Field(default=30.0, ge=6, le=1800)
    #: How long a client waits for its first broker before giving up. Commands (``marquee
    #: serve``'s start-up check included) wait at most PROMPT_BOOTSTRAP_SECONDS unless this
    #: is set: someone is waiting for the answer.
    kafka_bootstrap_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    topic_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$", max_length=100)
    topic_replication: int = Field(default=1, ge=1, le=10)
    topic_partitions: int | None = Field(default=None, ge=1, le=1000)

    # Postgres
    postgres_dsn: SecretStr = SecretStr("postgresql+psycopg2://marquee@127.0.0.1:5433/marquee")
    postgres_schema: str = Field(default="public", pattern=r"^[a-z_][a-z0-9_]*$", max_length=63)

    # Events
    max_event_bytes: int = Field(default=64 * 1024, ge=512, le=8 * 1024 * 1024)
    max_clock_skew_seconds: float = Field(default=300.0, ge=0)
    #: Longest pause between retries of a failing write (Postgres or Kafka) in a service.
    retry_max_seconds: float = Field(default=10.0, gt=0)

    # HTTP (every service exposes /livez, /readyz and /metrics)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=6066, ge=1, le=65535)
    http_token: SecretStr | None = None

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    def for_prompt(self) -> Settings:
        """These settings for a command someone waits on: "cannot reach Kafka" in seconds,
        not half a minute, unless MARQUEE_KAFKA_BOOTSTRAP_TIMEOUT_SECONDS asks for longer."""
        if "kafka_bootstrap_timeout_seconds" in self.model_fields_set:
            return self
        wait = min(self.kafka_bootstrap_timeout_seconds, PROMPT_BOOTSTRAP_SECONDS)
        return self.model_copy(update={"kafka_bootstrap_timeout_seconds": wait})

    @field_validator("http_token")
    @classmethod
    def _token_is_long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and len(token.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 24`)")
        return token

    @model_validator(mode="after")
    def _security_is_consistent(self) -> Settings:
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL"):
            if not (
                self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
            ):
                raise ValueError(
                    f"MARQUEE_KAFKA_SECURITY_PROTOCOL={protocol} needs MARQUEE_KAFKA_SASL_MECHANISM, "
                    "MARQUEE_KAFKA_SASL_USERNAME and MARQUEE_KAFKA_SASL_PASSWORD"
                )
        elif self.kafka_sasl_mechanism:
            raise ValueError(
                "MARQUEE_KAFKA_SASL_MECHANISM is set but MARQUEE_KAFKA_SECURITY_PROTOCOL="
                f"{protocol}; use SASL_PLAINTEXT or SASL_SSL"
            )
        return self


def settings_file(named: Path | str | None = None) -> Path | None:
    """The settings file read besides the environment, by one rule for the CLI and the SDK:
    ``named`` (``--env-file``), else ``MARQUEE_ENV_FILE``, else the local stack's
    ``marquee.env`` (in ``MARQUEE_RUN_DIR``, by default the checkout's ``.run/``) when
    ``make up`` has written it, wherever the command runs from. A file that is named must
    exist; an empty ``MARQUEE_ENV_FILE`` means none."""
    if named is None:
        named = os.environ.get("MARQUEE_ENV_FILE")
    if named is not None:
        if str(named) == "":
            return None
        path = Path(named)
        if not path.is_file():
            raise ConfigurationError(
                f"settings file {path} does not exist (named by --env-file or MARQUEE_ENV_FILE); "
                "`make up` writes the local stack's, or set MARQUEE_ENV_FILE= for none"
            )
        return path
    local = Path(os.environ.get("MARQUEE_RUN_DIR") or CHECKOUT_RUN_DIR) / "marquee.env"
    return local if local.is_file() else None


def load_settings(cls: type[Settings] = Settings, env_file: Path | str | None = None) -> Settings:
    """Build settings for an entrypoint: the environment first, then the settings file
    (:func:`settings_file`: ``env_file`` if given).

    Raises :class:`ConfigurationError` with every invalid variable named, never a traceback.
    """
    from pydantic import ValidationError

    path = settings_file(env_file)
    try:
        return cls(_env_file=path)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(
            f"MARQUEE_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            if err["loc"]
            else err["msg"].removeprefix("Value error, ")
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None
