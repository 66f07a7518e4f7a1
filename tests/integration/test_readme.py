"""The README's commands and docs/usage.md's, run as they show them, against the real stack:
they cannot drift.

Each fenced block below is read from the page itself, run line by line through bash from
the checkout (the test's own topic prefix and schema in the environment, and the test
stack's ports where the README names the local stack's), and each line must do what its
block says: finish with exit code 0, or, for a command that runs until stopped, still run
and answer on its port. Blocks not run here say where else they are covered.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.stack_helpers import KAFKA_PORT, ROOT, cli_env
from tests.integration.worker_helpers import get

README = (ROOT / "README.md").read_text()
USAGE = (ROOT / "docs" / "usage.md").read_text()
SASL_PORT = KAFKA_PORT + 4
#: Commands that run until stopped: alive after this long, and answering on their port.
FOREGROUND = {
    "marquee serve recommender": 6066,
    "marquee serve generator": 6067,
    "marquee serve dashboard": 6068,
    "marquee tail interactions --from-beginning": None,
}
#: Lines covered elsewhere, and where.
ELSEWHERE = {
    "marquee demo --duration 300": "tests/integration/test_end_to_end.py runs the demo",
}
STDIN = {"marquee users add app1 --password-stdin": "a-long-password\n"}
#: Every fenced block of the README by the section it stands in: run by a test of this
#: module, or where it is covered instead and why.
BLOCKS = {
    "## Two commands on a fresh machine": "CI runs `make test`; test_end_to_end runs the demo",
    "## Configuration": "test_trying_authentication_locally_runs_as_written",
    "## Production-like: Docker Compose": "no Docker engine here: tests/deploy checks the file",
    "## Layout": "a picture, not a command",
}
#: The same accounting for the docs/ pages the README links to.
PAGES = {
    "README.md": BLOCKS,
    "docs/usage.md": {
        "## The marquee command": "test_using_it_runs_as_written",
        "## Recommendations over HTTP": "test_recommendations_over_http_answer_as_shown",
        "## The ops dashboard": "test_the_dashboard_block_runs_as_written",
        "## Generating text: the model and the engine": "set-up runs build-default; "
        "tests/services/generator/test_cli.py runs model info and generate",
        "## The generator service": "test_the_generator_service_block_runs_as_written",
        "## Publishing from your app (Python SDK)": "test_the_sdk_snippet_runs_as_written",
    },
    "docs/dashboard.md": {"## Metrics for Prometheus": "Prometheus's YAML, not a command"},
    "docs/generator.md": {
        "## Other models": "the Optimum export needs PyTorch, kept out of this install",
        "## Settings and the engine in Python": "tests/services/generator/test_docs.py",
    },
    "docs/recommender.md": {},
    "docs/collector.md": {
        "## Keys: one per app": "tests/integration/collector/test_collector.py (the apps CLI)",
        "## Sending events": "tests/integration/collector/test_collector.py (answers, codes)",
        "## Browsers: CORS and beacons": "test_collector.py: preflight, then a beacon",
        "## The script: `/v1/marquee.js`": "HTML and JavaScript for a page, not a command",
        "## From Python: the same semantics": "tests/integration/shared/kafka/test_publisher.py",
    },
    "docs/experiments.md": {
        "## Commands": "tests/integration/shared/cli/test_experiments.py (create, list, report, stop)",
    },
}


def block(after: str, page: str = USAGE) -> list[str]:
    """The command lines of the first ```sh block after the heading or text ``after`` in
    ``page`` (docs/usage.md unless told)."""
    start = page.index(after)
    match = re.search(r"```sh\n(.*?)```", page[start:], re.S)
    assert match, f"no sh block after {after!r}"
    lines, current = [], ""
    for line in match.group(1).splitlines():
        current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            if current.strip() and not current.lstrip().startswith("#"):
                lines.append(current.strip())
            current = ""
    return lines


def local(line: str) -> str:
    """The line against the test stack: its SASL port for the local stack's."""
    return line.replace("127.0.0.1:9096", f"127.0.0.1:{SASL_PORT}")


def bare(line: str) -> str:
    return re.sub(r"\s+#.*$", "", line).strip()


def run(line: str, env: dict, tmp_path: Path, *, timeout: float = 600, stdin: str = ""):
    return subprocess.run(
        ["bash", "-c", f". .venv/bin/activate && {local(line)}"],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("page", PAGES)
def test_every_block_of_the_readme_and_its_pages_is_accounted_for(page):
    sections, current = set(), None
    fence = False
    for line in (ROOT / page).read_text().splitlines():
        if line.startswith("```"):
            if not fence:
                sections.add(current)
            fence = not fence
        elif not fence and line.startswith("#"):
            current = line.strip()
    assert sections == set(PAGES[page]), sections ^ set(PAGES[page])


def start(line: str, env: dict, log: Path, port: int | None) -> subprocess.Popen:
    """Start ``line`` as a user does in a terminal of its own, and see it answer on its
    port (or print what it reads) while it keeps running."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-c", f". .venv/bin/activate && exec {bare(line)}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{line!r} stopped:\n{log.read_text()[-2000:]}"
        if port is None and log.read_text().strip():
            return proc  # it printed what it read
        if port is not None:
            try:
                if get(port, "/livez")[0] == 200:
                    return proc
            except OSError:
                pass
        time.sleep(0.5)
    proc.terminate()
    pytest.fail(f"{line!r} did not answer within 90 s:\n{log.read_text()[-2000:]}")


@pytest.mark.timeout(1200)
def test_using_it_runs_as_written(topics, engine, tmp_path):
    # `marquee train` below is docs/usage.md's own retrain: the workers' schedule stays out.
    env = cli_env(topics) | {"MARQUEE_RECOMMENDER_RETRAIN_CHECK_SECONDS": "0"}
    lines = block("## The marquee command")
    assert len(lines) >= 15 and lines[0].startswith(". .venv/bin/activate")
    running: list[subprocess.Popen] = []
    try:
        for n, line in enumerate(lines[1:]):
            command = bare(line)
            if command in ELSEWHERE:
                continue
            if command in FOREGROUND:
                log = tmp_path / f"{n}.log"
                running.append(start(line, env, log, FOREGROUND[command]))
                continue
            result = run(line, env, tmp_path, stdin=STDIN.get(command, ""))
            assert result.returncode == 0, (line, result.stdout[-1500:], result.stderr[-1500:])
            assert "Traceback" not in result.stderr, line
    finally:
        for proc in running:
            proc.terminate()
        for proc in running:
            proc.wait(timeout=60)
    # What the block promises along the way: the replay reached the recommender, which
    # `marquee train` then trained on.
    listed = run("marquee models --json", env, tmp_path)
    assert json.loads(listed.stdout)[0]["status"] == "active"


def test_recommendations_over_http_answer_as_shown(topics, engine, tmp_path):
    from tests.integration.stack_helpers import marquee, seed_movielens

    seed_movielens(engine, 30_000)
    assert marquee(topics, "train").returncode == 0
    env = cli_env(topics)
    curls = block("## Recommendations over HTTP")
    shown = re.search(r"curl 'localhost:6066/users/42/recommendations[^\n]*\n# (\{.*\})", USAGE)
    assert shown, "the sample answer under the first curl"
    log = tmp_path / "recommender.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-c", ". .venv/bin/activate && exec marquee serve recommender"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if get(6066, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.5)
        for line in curls:
            result = run(f"curl -sS -f {bare(line).removeprefix('curl ')}", env, tmp_path)
            assert result.returncode == 0, (line, result.stderr)
            body = json.loads(result.stdout)
            assert "error" not in body, (line, body)
        first = json.loads(run(bare(curls[0]), env, tmp_path).stdout)
        sample = shown.group(1).replace("...", '"..."').replace(', "..."]', "]")
        keys = set(re.findall(r'"(\w+)":', sample))
        assert keys <= set(first) | set(first["items"][0]), (keys, first)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_the_sdk_snippet_runs_as_written(topics):
    from tests.integration.kafka_helpers import read_all

    code = re.search(r"## Publishing from your app.*?```python\n(.*?)```", USAGE, re.S).group(1)
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", code],
        cwd=ROOT,
        env=cli_env(topics),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    (record,) = read_all(topics, "interactions", expected=1)
    assert b'"article-42"' in record.value and b"urn:myapp:web" in record.value


def test_trying_authentication_locally_runs_as_written(topics, tmp_path):
    lines = block("To try authentication locally", README)
    script = " && ".join(local(line) for line in lines)
    env = cli_env(topics)
    result = subprocess.run(
        ["bash", "-c", f". .venv/bin/activate && {script}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"to {topics.topic_prefix}interactions[" in result.stdout


def test_the_generator_service_block_runs_as_written(topics, engine, tmp_path):
    env = cli_env(topics)
    generator = start("marquee serve generator", env, tmp_path / "generator.log", 6067)
    try:
        publish, tail = block("## The generator service")
        result = run(publish, env, tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr
        out = result.stdout.splitlines()
        assert out[0].startswith("published marquee.content_request.v1 id=")
        assert len(out) > 1 and "finish:" in result.stderr  # the text, then its summary
        tailing = start(tail, env, tmp_path / "tail.log", None)
        tailing.terminate()
        tailing.wait(timeout=30)
        assert "marquee.generated_content.v1" in (tmp_path / "tail.log").read_text()
    finally:
        generator.terminate()
        generator.wait(timeout=60)


def test_the_dashboard_block_runs_as_written(topics, engine, tmp_path):
    from kafka import KafkaConsumer

    from shared.kafka.client import client_options
    from tests.integration.stack_helpers import marquee

    # A reader group with a committed offset, so the jq path of docs/usage.md has a partition.
    published = marquee(
        topics, "publish", "interaction", "--user", "u1", "--item", "i1", "--type", "view"
    )
    assert published.returncode == 0
    reader = KafkaConsumer(
        f"{topics.topic_prefix}interactions",
        group_id=f"{topics.topic_prefix}readme-reader",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **client_options(topics),
    )
    assert reader.poll(timeout_ms=10_000, max_records=1)
    reader.commit()
    reader.close()
    env = cli_env(topics)
    dashboard = start("marquee serve dashboard", env, tmp_path / "dashboard.log", 6068)
    try:
        lines = block("## The ops dashboard")
        deadline = time.monotonic() + 30
        while json.loads(run(lines[0], env, tmp_path).stdout) is None:
            assert time.monotonic() < deadline, "the reader group never appeared"
            time.sleep(1)
        for line in lines:
            result = run(line, env, tmp_path, timeout=60)
            assert result.returncode == 0, (line, result.stderr)
            json.loads(result.stdout)  # JSON, as docs/usage.md says (jq's output included)
        shown = re.search(r"jq '[^']*'\n# (\{.*\})", USAGE).group(1)
        answer = json.loads(run(lines[0], env, tmp_path).stdout)
        assert set(re.findall(r'"(\w+)":', shown)) <= set(answer), (shown, answer)
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=60)
