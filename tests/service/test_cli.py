import shlex
import tomllib

from service.cli import APP, CONFIG, gunicorn_argv
from tests.helpers import REPO


def test_make_serve_runs_the_serve_command():
    recipe = [
        line.strip()
        for line in (REPO / "Makefile").read_text().splitlines()
        if "classifier-serve" in line
    ]
    assert len(recipe) == 1
    assert shlex.split(recipe[0])[0].endswith("/classifier-serve")


def test_serve_command_is_installed_and_runs_gunicorn_on_the_app():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["classifier-serve"] == "service.cli:main"
    argv = gunicorn_argv()
    assert argv[1:3] == ["-m", "gunicorn"] and argv[-1] == APP and CONFIG.is_file()


def test_readme_documents_the_serve_and_test_commands():
    """The two headline commands, in the quick start: `make serve` as a block the
    walk-through runs (tests/test_readme_walkthrough.py), `make test` as one it does not."""
    readme = (REPO / "README.md").read_text()
    quick = readme[
        readme.index("## Quick start") : readme.index("\n## ", readme.index("## Quick start"))
    ]
    assert "```sh server\nmake serve\n```" in quick and "\n    make test\n" in quick
