"""The import graph keeps the layers apart: ``shared/`` imports no service, and no service
imports another (they talk through Kafka and Postgres; the CLI and ``marquee serve`` find
services through entry points, shared/registry.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").is_file())


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved, at any depth (a function's
    lazy import counts as much as one at the top)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def arrows(folder: str) -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted((ROOT / folder).rglob("*.py"))}


def test_the_graph_is_read():
    """The checks below would pass on an empty graph: make sure they see real arrows."""
    graph = arrows("shared")
    assert "shared.config" in graph["shared.service.app"]
    assert "shared.errors" in graph["shared.registry"]
    assert "shared.service.registry" not in graph  # the registry is not under the chassis
    assert "services.recommender.settings" in arrows("services")["services.recommender"]
    assert len(SERVICES) >= 3


def test_shared_imports_no_service():
    wrong = {
        module: sorted(name for name in names if name.split(".")[0] == "services")
        for module, names in arrows("shared").items()
    }
    assert {m: n for m, n in wrong.items() if n} == {}


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service(service: str):
    others = {f"services.{s}" for s in SERVICES if s != service}
    wrong = {
        module: sorted(n for n in names if ".".join(n.split(".")[:2]) in others)
        for module, names in arrows(f"services/{service}").items()
    }
    assert {m: n for m, n in wrong.items() if n} == {}
