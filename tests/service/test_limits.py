"""Bounded bodies: JSON within its own size and depth, chunked bodies within the upload limit."""

from __future__ import annotations

import base64
import http.client
import json
import socket

import pytest
import requests

from benchmarks.harness import Server
from service.http.app import create_app
from service.protocols.rest import depth
from tests.helpers import app_config, jpeg_bytes, publish_model

JSON_ROUTES = (
    "/predict",
    "/v1/models/pets:predict",
    "/v1/models/pets:classify",
    "/v2/models/pets/infer",
)


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_deep_json_is_400_on_every_json_route(client, path):
    too_deep = "[" * 40 + "1" + "]" * 40  # parses, but deeper than MAX_JSON_DEPTH (32)
    for body in ("[" * 100_000, '{"a":' * 100_000, too_deep):
        response = client.post(path, data=body, content_type="application/json")
        assert response.status_code == 400, (path, response.get_data(True))
        assert "invalid_json" in response.get_data(True) or path != "/predict"


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_json_over_its_own_limit_is_413(models_dir, path):
    client = create_app(app_config(models_dir, MAX_JSON_BYTES=1000)).test_client()
    body = json.dumps({"instances": [{"b64": base64.b64encode(jpeg_bytes()).decode()}]})
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == 413, response.get_data(True)


def test_a_small_json_limit_still_takes_small_bodies(models_dir):
    client = create_app(app_config(models_dir, MAX_JSON_BYTES=100_000)).test_client()
    body = {"instances": [{"b64": base64.b64encode(jpeg_bytes()).decode()}]}
    assert client.post("/predict", json=body).status_code == 200


def test_depth():
    assert depth([], 10) == 1 and depth({"a": [1, {"b": []}]}, 10) == 4 and depth(5, 10) == 0
    assert depth([[[[[]]]]], 2) == 3  # stops looking once past the limit


def post_chunked(port: int, body: bytes) -> int:
    """The status of a POST /predict whose body comes chunked (no Content-Length)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", "/predict")
    conn.putheader("Content-Type", "image/jpeg")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for start in range(0, len(body), 8192):
        piece = body[start : start + 8192]
        conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    conn.send(b"0\r\n\r\n")
    status = conn.getresponse().status
    conn.close()
    return status


@pytest.mark.e2e
def test_a_chunked_body_of_exactly_the_limit_is_taken(tmp_path):
    """As with a Content-Length: the limit itself is allowed, one byte more is 413 (the
    chunked path refused the limit itself)."""
    publish_model(tmp_path, "pets")
    limit = 50_000
    padded = jpeg_bytes((120, 90)).ljust(limit, b"\0")  # a JPEG padded to the limit
    with Server(
        tmp_path, MODEL_NAME="pets", MODEL_POLL_SECONDS="0", MAX_UPLOAD_BYTES=str(limit)
    ) as server:
        server.wait_ready()
        with_length = requests.post(
            f"{server.url}/predict",
            data=padded,
            headers={"Content-Type": "image/jpeg"},
            timeout=30,
        )
        assert with_length.status_code == 200, with_length.text
        assert post_chunked(server.port, padded) == 200
        assert post_chunked(server.port, padded + b"\0") == 413


@pytest.mark.e2e
def test_a_chunked_body_over_the_limit_is_413_not_truncated(tmp_path):
    publish_model(tmp_path, "pets")
    photo = jpeg_bytes((120, 90))
    with Server(
        tmp_path, MODEL_NAME="pets", MODEL_POLL_SECONDS="0", MAX_UPLOAD_BYTES="50000"
    ) as server:
        server.wait_ready()
        assert post_chunked(server.port, photo) == 200
        assert post_chunked(server.port, photo + b"\0" * 60_000) == 413  # padded past the limit
        # broken chunk framing (a size that is not hex, a chunk without its CRLF): 400 in the
        # route's shape, not gunicorn's parse error as a 500
        for framing in (b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcXX0\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
                sock.sendall(
                    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                    b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + framing
                )
                answer = b"".join(iter(lambda s=sock: s.recv(65536), b""))
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400"), answer
            assert json.loads(body)["error"]["code"] == "bad_request", answer
