"""API keys: off by default; when on, every path but the exempt ones needs a known key."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.http.app import create_app
from service.keys import digest, exempt, new_key, read_keys
from service.settings import SettingsError
from tests.helpers import app_config, jpeg_bytes


@pytest.fixture
def keys_file(tmp_path) -> tuple[Path, str]:
    key, line = new_key("alice")
    path = tmp_path / "keys"
    path.write_text(f"# who may call\n{line}\n")
    return path, key


@pytest.fixture
def keyed(models_dir, keys_file):
    path, key = keys_file
    app = create_app(app_config(models_dir, API_KEYS_FILE=str(path)))
    return app, key


def predict(client, **headers):
    return client.post("/predict", data=jpeg_bytes(), content_type="image/jpeg", headers=headers)


def test_keys_are_off_by_default(client):
    assert predict(client).status_code == 200


def test_a_known_key_in_either_header_is_let_in(keyed):
    app, key = keyed
    client = app.test_client()
    assert predict(client, Authorization=f"Bearer {key}").status_code == 200
    assert predict(client, **{"X-API-Key": key}).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"X-API-Key": "x"}])
def test_no_key_or_a_wrong_one_is_401_with_www_authenticate(keyed, headers):
    app, _ = keyed
    response = predict(app.test_client(), **headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["error"]["code"] == "unauthorized"


# nginx limits each client by the first key it carries (`Authorization: Bearer`, read as
# `^Bearer\s+(.+)$`, else X-API-Key): a request the service let in with a made-up key
# beside a known one, or a known key with a Unicode space after it, was a new client to
# nginx each time, past its per-client limit.
@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "{key}", "Authorization": "Bearer made-up"},
        {"X-API-Key": "{key}", "Authorization": "Bearer\tmade-up"},
        {"X-API-Key": "made-up", "Authorization": "Bearer {key}"},
        {"Authorization": "Bearer {key}\xa0"},
    ],
    ids=["bearer-made-up", "bearer-tab-made-up", "x-api-key-made-up", "nbsp-after-key"],
)
def test_a_made_up_key_is_401_even_beside_a_known_one(keyed, headers):
    app, key = keyed
    response = predict(app.test_client(), **{k: v.format(key=key) for k, v in headers.items()})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_a_bearer_key_after_a_tab_is_the_key_nginx_counts(keyed):
    app, key = keyed
    assert predict(app.test_client(), Authorization=f"Bearer\t {key}").status_code == 200
    assert predict(app.test_client(), Authorization=f"bearer {key}").status_code == 200


def test_v2_routes_answer_401_in_their_shape(keyed):
    app, _ = keyed
    response = app.test_client().get("/v2/models/pets")
    assert response.status_code == 401 and isinstance(response.get_json()["error"], str)


def test_exempt_paths_need_no_key(keyed):
    app, _ = keyed
    client = app.test_client()
    for path in ("/healthz", "/readyz", "/"):
        assert client.get(path).status_code == 200, path
    assert client.get("/metrics").status_code == 401


def test_the_exempt_paths_are_a_setting(models_dir, keys_file):
    path, _ = keys_file
    config = app_config(models_dir, API_KEYS_FILE=str(path), API_KEY_EXEMPT_PATHS="/v2/health/*")
    client = create_app(config).test_client()
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/healthz").status_code == 401


def test_a_trailing_star_is_a_prefix_and_nothing_else_a_wildcard():
    """`?` and `[` are a path's own characters (before, fnmatch took them as wildcards:
    `/v2/models/[ab]*` exempted /v2/models/a)."""
    assert exempt("/v2/health/live", ("/v2/health/*",))
    assert not exempt("/v2/models/a", ("/v2/models/[ab]*",))
    assert not exempt("/v2/models/x", ("/v2/models/?",))
    assert exempt("/v2/models/[ab]/ready", ("/v2/models/[ab]*",))


def test_the_key_name_is_logged_and_counted_never_the_key(keyed, caplog):
    app, key = keyed
    with caplog.at_level("INFO", logger="service.access"):
        predict(app.test_client(), **{"X-API-Key": key})
    fields = [r.fields for r in caplog.records if hasattr(r, "fields")]
    assert fields[-1]["api_key"] == "alice"
    assert key not in caplog.text
    metrics = app.test_client().get("/metrics", headers={"X-API-Key": key}).get_data(True)
    assert 'http_requests_by_api_key_total{key="alice",status="200"}' in metrics
    assert key not in metrics


def test_the_file_is_reread_when_it_changes(keyed, keys_file):
    app, old = keyed
    path, _ = keys_file
    client = app.test_client()
    new, line = new_key("bob")
    time.sleep(1.1)  # the file is looked at once a second at most
    path.write_text(line + "\n")  # alice revoked, bob added
    os.utime(path)
    time.sleep(1.1)
    assert predict(client, **{"X-API-Key": new}).status_code == 200
    assert predict(client, **{"X-API-Key": old}).status_code == 401


def test_a_broken_file_keeps_the_last_good_keys(keyed, keys_file):
    app, key = keyed
    path, _ = keys_file
    time.sleep(1.1)
    path.write_text("not a key line\n")
    time.sleep(1.1)
    assert predict(app.test_client(), **{"X-API-Key": key}).status_code == 200


@pytest.mark.parametrize("text", ["alice\n", "alice:xyz\n", "a b:" + "0" * 64 + "\n"])
def test_bad_key_files_are_refused_at_start(models_dir, tmp_path, text):
    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(ValueError, match="line 1"):
        read_keys(path)
    with pytest.raises(SettingsError, match="API_KEYS_FILE"):
        create_app(app_config(models_dir, API_KEYS_FILE=str(path)))


def test_a_missing_key_file_is_refused(models_dir, tmp_path):
    with pytest.raises(SettingsError, match="cannot read the API keys file"):
        create_app(app_config(models_dir, API_KEYS_FILE=str(tmp_path / "none")))


def test_the_command_prints_a_key_and_its_line(tmp_path):
    command = str(Path(sys.executable).parent / "classifier-api-key")
    keys = tmp_path / "keys"
    result = subprocess.run(
        [command, "ci-bot", "--append", str(keys)], capture_output=True, text=True, check=True
    )
    key = result.stdout.split("key:")[1].split()[0]
    [stored] = read_keys(keys)
    assert stored.name == "ci-bot" and key not in keys.read_text()
    bad = subprocess.run([command, "no spaces"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2


def test_the_command_prints_only_the_key_for_a_variable(tmp_path):
    command = str(Path(sys.executable).parent / "classifier-api-key")
    keys = tmp_path / "keys"
    argv = [command, "alice", "--append", str(keys), "--key-only"]
    result = subprocess.run(argv, capture_output=True, text=True, check=True)
    [key] = result.stdout.split()
    [stored] = read_keys(keys)
    assert stored.name == "alice" and stored.digest == digest(key)
    lost = subprocess.run([command, "alice", "--key-only"], capture_output=True, text=True)
    assert lost.returncode == 2 and "needs --append" in lost.stderr and lost.stdout == ""
