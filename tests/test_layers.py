"""The layers of the code base hold: the client imports nothing from service/, the core and
the batcher load no Flask (nor grpc), service/ never imports training/, classifier/ imports
neither, and no module of service/ is part of an import circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

CORE = (
    "classifier.batching",
    "service.dataplane",
    "service.registry",
    "service.loader",
    "service.settings",
    "service.errors",
    "service.calls",
    "service.access",
    "service.keys",
    "service.logs",
    "service.metrics",
    "service.monitor",
    "service.drift",
    "service.capture",
    "service.feedback",
    "service.photos",
)


def loaded_after(code: str) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after running `code`."""
    script = (
        f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def imports(path: Path, top_level: bool = False) -> set[str]:
    """The modules a file imports (absolute names, as this code base writes them); with
    `top_level`, only those imported while it loads (not inside a function)."""
    found = set()
    tree = ast.parse(path.read_text())
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    inside = {id(n) for f in functions for n in ast.walk(f)} if top_level else set()
    for node in ast.walk(tree):
        if id(node) in inside:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_client_imports_nothing_from_the_service():
    loaded = loaded_after("import client, client.cli, client.local, client.remote")
    assert "service" not in loaded and "flask" not in loaded
    for path in (REPO / "client").rglob("*.py"):
        assert not {m for m in imports(path) if m.split(".")[0] == "service"}, path


def test_the_core_and_the_batcher_load_no_flask_nor_grpc():
    loaded = loaded_after("import " + ", ".join(CORE))
    assert "flask" not in loaded and "werkzeug" not in loaded and "grpc" not in loaded


@pytest.mark.parametrize(
    ("package", "never"),
    [("service", {"training"}), ("classifier", {"service", "training", "client"})],
)
def test_packages_keep_to_their_side(package, never):
    for path in (REPO / package).rglob("*.py"):
        assert not {m.split(".")[0] for m in imports(path)} & never, path


def test_no_import_circle_in_the_service():
    """Among the imports made while a module loads: an import inside a function (such as
    `service.create_app`'s) runs after both modules have loaded."""
    modules = {module_name(p): p for p in (REPO / "service").rglob("*.py")}
    graph = {
        name: {m for m in imports(path, top_level=True) if m in modules and m != name}
        for name, path in modules.items()
    }
    visiting, done = [], set()

    def visit(name: str) -> None:
        if name in visiting:
            raise AssertionError("import circle: " + " -> ".join([*visiting, name]))
        if name in done:
            return
        visiting.append(name)
        for child in graph[name]:
            visit(child)
        visiting.pop()
        done.add(name)

    for name in graph:
        visit(name)


def test_service_create_app_is_the_app_factory_and_loads_flask_only_when_used():
    """`gunicorn 'service:create_app()'` (../shared/peers/compare.sh) starts the same app."""
    assert "flask" not in loaded_after("import service")
    import service
    from service.http.app import create_app

    assert service.create_app is create_app
