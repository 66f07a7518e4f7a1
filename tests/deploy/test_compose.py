"""The Compose deployment and its image stay consistent with the code and with each other.

Broker-free and fast: the files are parsed, Compose's variable interpolation is imitated for
the case where a user sets only MARQUEE_PG_PASSWORD, and the result is validated with the
real :class:`shared.config.Settings`. `docker compose config` runs as well where the Compose
plugin is installed (it needs no Docker daemon).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared import registry
from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

#: Service -> the port its HTTP server listens on inside the container.
SERVING = {
    "recommender": 6066,
    "generator": 6067,
    "dashboard": 6068,
    "collector": 6069,
    "feedback": 6071,
}
REQUIRED_SERVICES = {"kafka", "postgres", "migrate", *SERVING}
#: Set by the user for Compose itself, not read by Marquee's settings.
COMPOSE_LEVEL_VARS = {"MARQUEE_PG_PASSWORD"}
COMMON_ENV = {
    "MARQUEE_KAFKA_BOOTSTRAP_SERVERS",
    "MARQUEE_KAFKA_SECURITY_PROTOCOL",
    "MARQUEE_POSTGRES_DSN",
    "MARQUEE_TOPIC_PREFIX",
    "MARQUEE_HTTP_HOST",
    "MARQUEE_HTTP_TOKEN",
    "MARQUEE_LOG_FORMAT",
    "MARQUEE_LOG_LEVEL",
}
#: Optional passthroughs: must be value-less keys (absent when unset), never "" defaults.
PASSTHROUGH_ENV = {
    "MARQUEE_KAFKA_SASL_MECHANISM",
    "MARQUEE_KAFKA_SASL_USERNAME",
    "MARQUEE_KAFKA_SASL_PASSWORD",
    "MARQUEE_HTTP_TOKEN",
}

_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


# --- helpers -----------------------------------------------------------------------------------


def interpolate(value: str, shell: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?err}`` and ``$$``."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = shell.get(name)
        if op in (":-", "-"):
            use_default = current is None or (op == ":-" and current == "")
            return arg if use_default else current
        if op in (":?", "?"):
            if current is None or (op == ":?" and current == ""):
                raise ValueError(f"${{{name}}} is required: {arg}")
            return current
        return current or ""

    return _INTERPOLATION.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def container_env(service: dict[str, Any], shell: dict[str, str]) -> dict[str, str]:
    """The environment the container would get; a value-less key passes the shell's through."""
    env: dict[str, str] = {}
    for key, value in (service.get("environment") or {}).items():
        if value is None:
            if key in shell:
                env[key] = shell[key]
        else:
            env[key] = interpolate(str(value), shell)
    return env


def container_ports(service: dict[str, Any]) -> list[tuple[str, int]]:
    """``(host part, container port)`` for every published or exposed port."""
    ports = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports.append((str(entry.get("published", "")), int(entry["target"])))
            continue
        spec = str(entry).split("/")[0]
        host, _, target = spec.rpartition(":")
        ports.append((host, int(target)))
    ports.extend(("", int(str(p).split("/")[0])) for p in service.get("expose") or [])
    return ports


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def dockerfile_stages() -> set[str]:
    return {
        m.group(1)
        for kind, args in dockerfile_instructions()
        if kind == "FROM" and (m := re.search(r"\bAS\s+(\S+)", args, re.IGNORECASE))
    }


def dockerfile_context_sources() -> set[str]:
    """Paths the build reads from its context: COPY/ADD sources and bind-mount sources."""
    sources: set[str] = set()
    for kind, args in dockerfile_instructions():
        if kind in {"COPY", "ADD"}:
            words = shlex.split(args)
            if any(w.startswith("--from=") for w in words):
                continue
            paths = [w for w in words if not w.startswith("--")]
            sources.update(paths[:-1])
        if kind == "RUN":
            for mount in re.findall(r"--mount=(\S+)", args):
                options = dict(o.split("=", 1) for o in mount.split(",") if "=" in o)
                if options.get("type") == "bind" and "from" not in options:
                    sources.add(options.get("source", options.get("src", ".")))
    return sources


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def settings_class(service: dict[str, Any]) -> type[Settings]:
    """The settings class the container's command reads: a service's own, else the shared."""
    command = list(service.get("command") or [])
    if command[:1] == ["serve"]:
        return registry.service(command[1]).settings
    return Settings


def marquee_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items() if "build" in svc}


def serving_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Long-running Marquee services (``marquee serve <name>``), GPU variants included."""
    return {
        name: svc
        for name, svc in marquee_services(services).items()
        if list(svc.get("command") or [])[:1] == ["serve"]
    }


# --- compose: structure ------------------------------------------------------------------------


def test_compose_spec_has_the_services_and_no_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "the Compose spec dropped `version:`"
    assert REQUIRED_SERVICES <= set(compose["services"])


def test_marquee_services_build_from_existing_dockerfile_targets(services) -> None:
    stages = dockerfile_stages()
    built = marquee_services(services)
    assert {"migrate", *SERVING} <= set(built)
    for name, svc in built.items():
        build = svc["build"]
        context = ROOT / build["context"]
        assert context.is_dir(), f"{name}: build context {context} does not exist"
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        assert build.get("target") in stages, f"{name}: no stage {build.get('target')!r}"


def test_each_serving_service_runs_its_own_container_with_health_and_restart(services) -> None:
    serving = serving_services(services)
    assert set(SERVING) <= set(serving)
    for name, svc in serving.items():
        assert svc["command"][1] in SERVING, name
        assert "container_name" not in svc, f"{name}: container_name prevents scaling"
        assert svc.get("restart") == "unless-stopped", name
        check = " ".join(svc["healthcheck"]["test"])
        assert "/livez" in check, f"{name}: healthcheck must probe /livez"
        assert "MARQUEE_HTTP_PORT" in check or str(SERVING[svc["command"][1]]) in check, name
        depends = svc.get("depends_on") or {}
        assert depends.get("migrate", {}).get("condition") == "service_completed_successfully"


def test_http_port_setting_matches_the_container_port(services) -> None:
    for name, svc in serving_services(services).items():
        expected = SERVING[svc["command"][1]]
        assert int(svc["environment"]["MARQUEE_HTTP_PORT"]) == expected, name
        assert expected in {port for _, port in container_ports(svc)}, name


def test_recommender_can_scale_without_host_port_clashes(services) -> None:
    for host, _ in container_ports(services["recommender"]):
        host_port = host.rpartition(":")[2] if host else ""
        assert host_port == "" or "-" in host_port, (
            f"recommender publishes fixed host port {host_port}; --scale would clash"
        )


def test_published_ports_bind_loopback_only(services) -> None:
    for name, svc in services.items():
        for entry in svc.get("ports") or []:
            assert str(entry).startswith("127.0.0.1:"), f"{name}: {entry} is not on 127.0.0.1"


def test_migrate_upgrades_the_schema_then_ensures_topics(services) -> None:
    migrate = services["migrate"]
    script = " ".join(migrate.get("entrypoint") or []) + " " + " ".join(migrate["command"])
    assert script.index("marquee db upgrade") < script.index("marquee topics ensure")
    for dependency in ("kafka", "postgres"):
        assert migrate["depends_on"][dependency]["condition"] == "service_healthy"


def test_kafka_is_kraft_combined_with_an_admin_call_healthcheck(services) -> None:
    kafka = services["kafka"]
    env = kafka["environment"]
    assert kafka["image"] == "apache/kafka:4.4.0"  # the release deploy/kafka/pom.xml pins
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    for key in ("KAFKA_NODE_ID", "KAFKA_CONTROLLER_QUORUM_VOTERS", "CLUSTER_ID"):
        assert env.get(key), key
    assert "INTERNAL://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "localhost:9094" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]).lower() == "false"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
    ):
        assert int(env[key]) == 1, key
    check = " ".join(kafka["healthcheck"]["test"])
    assert "kafka-broker-api-versions.sh" in check or "kafka-topics.sh" in check
    assert any(str(v).endswith(":" + env["KAFKA_LOG_DIRS"]) for v in kafka["volumes"])


def test_postgres_has_a_volume_a_healthcheck_and_no_literal_password(compose, services) -> None:
    pg = services["postgres"]
    assert pg["image"] == "postgres:16"
    assert pg["environment"]["POSTGRES_DB"] == pg["environment"]["POSTGRES_USER"] == "marquee"
    assert pg["environment"]["POSTGRES_PASSWORD"].startswith("${MARQUEE_PG_PASSWORD:?")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    volume = pg["volumes"][0].split(":")[0]
    assert volume in compose["volumes"], "postgres data must live in a named volume"


def test_no_literal_secrets(services) -> None:
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            if value is None:
                continue
            if re.search(r"PASSWORD|TOKEN|SECRET", key):
                assert str(value).startswith("${"), f"{name}: {key} holds a literal secret"
            if key.endswith("_DSN"):
                password = re.search(r"//[^:/@]+:([^@]*)@", str(value))
                assert password is None or password[1].startswith("${"), f"{name}: {key}"


# --- compose: settings -------------------------------------------------------------------------


def test_every_marquee_service_gets_the_common_environment(services) -> None:
    for name, svc in marquee_services(services).items():
        env = svc.get("environment") or {}
        missing = (COMMON_ENV | PASSTHROUGH_ENV) - set(env)
        assert not missing, f"{name} lacks {sorted(missing)}"
        assert env["MARQUEE_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["MARQUEE_HTTP_HOST"] == "0.0.0.0"
        assert env["MARQUEE_LOG_FORMAT"] == "json"
        assert "${MARQUEE_PG_PASSWORD" in env["MARQUEE_POSTGRES_DSN"]
        assert "@postgres:5432/marquee" in env["MARQUEE_POSTGRES_DSN"]
        for key in PASSTHROUGH_ENV:
            assert env[key] is None, f"{name}: {key} must be absent when unset, not defaulted"


def test_every_marquee_variable_is_a_settings_field(services) -> None:
    classes = {Settings, *(settings_class(svc) for svc in services.values())}
    fields = {f"MARQUEE_{name.upper()}" for cls in classes for name in cls.model_fields}
    text = COMPOSE_FILE.read_text()
    named = set(re.findall(r"\b(MARQUEE_[A-Z0-9_]+)\b", text)) - COMPOSE_LEVEL_VARS
    # Mentions inside comments count too: a comment naming a setting that does not exist lies.
    assert named <= fields, f"not fields of any service's settings: {sorted(named - fields)}"


@pytest.mark.parametrize(
    "shell",
    [
        pytest.param({"MARQUEE_PG_PASSWORD": "x"}, id="only-password"),
        pytest.param(
            {
                "MARQUEE_PG_PASSWORD": "x",
                "MARQUEE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "MARQUEE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "MARQUEE_KAFKA_SASL_USERNAME": "marquee",
                "MARQUEE_KAFKA_SASL_PASSWORD": "s3cret",
                "MARQUEE_HTTP_TOKEN": "a-token-of-24-characters",
            },
            id="sasl-and-token",
        ),
    ],
)
def test_container_environment_validates_as_settings(services, shell, monkeypatch) -> None:
    for key in list(os.environ):
        if key.startswith("MARQUEE_"):
            monkeypatch.delenv(key)
    for name, svc in marquee_services(services).items():
        env = container_env(svc, shell)
        with monkeypatch.context() as m:
            for key, value in env.items():
                m.setenv(key, value)
            settings = settings_class(svc)(_env_file=None)  # type: ignore[call-arg]
        assert settings.kafka_bootstrap_servers == "kafka:9092", name
        assert settings.postgres_dsn.get_secret_value().startswith(
            "postgresql+psycopg2://marquee:x@postgres:5432/"
        ), name
        assert settings.kafka_security_protocol == shell.get(
            "MARQUEE_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"
        ), name
        token = shell.get("MARQUEE_HTTP_TOKEN")
        assert (settings.http_token and settings.http_token.get_secret_value()) == token, name
        if name in serving_services(services):
            assert settings.http_port == SERVING[svc["command"][1]], name


def test_compose_refuses_to_start_without_the_password(services) -> None:
    with pytest.raises(ValueError, match="MARQUEE_PG_PASSWORD"):
        container_env(services["postgres"], {})


def test_dockerfile_reads_only_files_that_exist() -> None:
    missing = sorted(s for s in dockerfile_context_sources() if not (ROOT / s).exists())
    assert not missing, f"the image build needs {missing} at the repository root"


def test_dockerfile_builds_the_runtime_as_specified() -> None:
    instructions = dockerfile_instructions()
    text = " ".join(f"{kind} {args}" for kind, args in instructions)
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert "pip install -c requirements.lock ." in text
    assert "pip install --no-deps recbole==1.2.1" in text
    assert ("USER", "marquee") in instructions
    assert ("ENTRYPOINT", '["marquee"]') in instructions
    assert {"runtime", "marquee", *SERVING, "generator-gpu"} <= dockerfile_stages()
    last_from = [args for kind, args in instructions if kind == "FROM"][-1]
    assert last_from.endswith("AS marquee"), "an untargeted build should be the plain CLI"


def test_dockerignore_keeps_local_state_out_but_not_build_inputs() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for required in (".venv", ".run", "deploy/kafka/target", ".git", "docs/*.png", ".env"):
        assert required in patterns, required
    assert any("__pycache__" in p for p in patterns)
    for source in dockerfile_context_sources():
        ignored = [p for p in patterns if fnmatch.fnmatch(source.rstrip("/"), p)]
        assert not ignored, f".dockerignore {ignored} hides {source}, which the build copies"
