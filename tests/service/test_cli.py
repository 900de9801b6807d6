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
    readme = (REPO / "README.md").read_text()
    assert "    make serve\n" in readme and "    make test\n" in readme
