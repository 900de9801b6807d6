import shlex

from service.cli import GUNICORN_ARGV
from tests.helpers import REPO


def test_make_serve_runs_the_one_serve_command():
    recipe = [
        line.strip()
        for line in (REPO / "Makefile").read_text().splitlines()
        if "gunicorn -c" in line
    ]
    assert len(recipe) == 1
    argv = shlex.split(recipe[0])
    assert argv[0].endswith("/gunicorn")
    assert ["gunicorn", *argv[1:]] == GUNICORN_ARGV


def test_readme_documents_the_serve_and_test_commands():
    readme = (REPO / "README.md").read_text()
    assert "    make serve\n" in readme and "    make test\n" in readme
