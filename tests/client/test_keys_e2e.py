"""The client against a real gunicorn that needs API keys: the key by --api-key, by
CLASSIFIER_API_KEY or in the Python Client; a refused key stops the run at the first refusal
with one line and its own exit status; extra headers reach the server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.harness import Server
from client import AccessRefused, Client, Prediction
from client.cli import Exit, main
from service.keys import new_key
from tests.client.fakes import FlakyServer, read_jsonl
from tests.helpers import jpeg_bytes

pytestmark = pytest.mark.e2e

QUIET = ["--no-progress"]
CLI = str(Path(sys.executable).parent / "classify-images")


@pytest.fixture(scope="module")
def keyed(models_template, tmp_path_factory):
    """The service with keys on, and a key it knows."""
    folder = tmp_path_factory.mktemp("keys")
    key, line = new_key("tester")
    (folder / "keys.txt").write_text(line + "\n")
    env = {
        "MODEL_NAME": "pets",
        "MODEL_POLL_SECONDS": "0",
        "API_KEYS_FILE": str(folder / "keys.txt"),
    }
    with Server(models_template, **env) as server:
        yield server.wait_ready(), key


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(30):
        (folder / f"{i:02d}.jpg").write_bytes(jpeg_bytes(seed=i))
    return folder


def test_the_key_by_option_or_environment_classifies_the_folder(keyed, photos, tmp_path):
    server, key = keyed
    out = tmp_path / "out.jsonl"
    argv = ["--url", server.url, "--concurrency", "4", "--output", str(out), *QUIET]
    assert main([*argv, "--api-key", key, str(photos)]) == Exit.OK
    assert len(read_jsonl(out)) == 30
    # The installed command, the key only in its environment.
    env_out = tmp_path / "env.jsonl"
    done = subprocess.run(
        [CLI, "--url", server.url, "--output", str(env_out), *QUIET, str(photos)],
        env={"PATH": "/usr/bin:/bin", "CLASSIFIER_API_KEY": key},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == Exit.OK, done.stderr
    records = read_jsonl(env_out)
    assert [Path(r["file"]).name for r in records] == sorted(p.name for p in photos.iterdir())
    assert all(r["model"] == "pets" for r in records)


@pytest.mark.parametrize(("key", "says"), [(None, "needs a key"), ("wrong", "not valid")])
def test_a_refused_key_stops_the_run_at_once_with_one_line(keyed, photos, tmp_path, key, says):
    server, _ = keyed
    out = tmp_path / "out.jsonl"
    env = {"PATH": "/usr/bin:/bin", **({"CLASSIFIER_API_KEY": key} if key else {})}
    with FlakyServer(server.url, fail_first=0) as counting:
        argv = ["--url", counting.url, "--concurrency", "1", "--output", str(out), *QUIET]
        done = subprocess.run(
            [CLI, *argv, str(photos)], env=env, capture_output=True, text=True, timeout=120
        )
        assert counting.requests == 1  # the first refusal ends the run
    assert done.returncode == Exit.REFUSED == 3
    [line] = done.stderr.splitlines()
    assert line.startswith("classify-images: error: ") and "401 unauthorized" in line
    assert says in line and "--api-key or CLASSIFIER_API_KEY" in line
    assert "Traceback" not in done.stderr and out.read_text() == ""  # nothing was classified


def test_a_refusal_with_several_threads_sends_little_and_writes_nothing(keyed, photos, tmp_path):
    server, _ = keyed
    out = tmp_path / "out.csv"
    with FlakyServer(server.url, fail_first=0) as counting:
        argv = ["--url", counting.url, "--concurrency", "4", "--output", str(out), *QUIET]
        assert main([*argv, "--api-key", "wrong", str(photos)]) == Exit.REFUSED
        assert counting.requests <= 8  # the threads' requests already on their way, no more
    assert not out.exists() or out.read_text() == ""


def test_the_python_client_sends_the_key_and_raises_when_refused(keyed, photos):
    server, key = keyed
    paths = sorted(photos.iterdir())[:3]
    with Client(server.url, api_key=key) as client:
        results = client.predict(paths)
    assert [r.file for r in results] == [str(p) for p in paths]
    assert all(isinstance(r, Prediction) for r in results)
    with (
        Client(server.url, api_key="wrong", concurrency=2) as client,
        pytest.raises(AccessRefused) as refused,
    ):
        client.predict(paths)
    assert refused.value.status == 401 and refused.value.code == "unauthorized"


def test_extra_headers_reach_the_server(keyed, photos):
    """The key as X-API-Key in an extra header, and a request id the access log shows."""
    server, key = keyed
    headers = {"X-API-Key": key, "X-Request-ID": "client-header-test"}
    [result] = Client(server.url, headers=headers, api_key="").predict([photos / "00.jpg"])
    assert isinstance(result, Prediction)
    [line] = server.logged(lambda x: x["request_id"] == "client-header-test")
    assert line["status"] == 200
    with pytest.raises(ValueError, match="once"):
        Client(server.url, api_key=key, headers={"x-api-key": key})


def test_a_header_that_is_not_one_is_bad_usage(keyed, photos, capsys):
    server, _ = keyed
    assert main(["--url", server.url, "--header", "no colon", str(photos)]) == Exit.USAGE
    assert "not 'Name: value'" in capsys.readouterr().err
    assert main(["--local", "--api-key", "k", str(photos)]) == Exit.USAGE
