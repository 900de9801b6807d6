"""The Open Inference Protocol (V2) over REST, driven by Triton's own client against gunicorn."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from benchmarks.harness import Server
from classifier.preprocess import decode_image
from classifier.spec import InputSpec
from tests.helpers import encode, jpeg_bytes, noise_image, publish_model

pytestmark = pytest.mark.e2e

SPEC = InputSpec(height=64, width=64)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    models = tmp_path_factory.mktemp("v2-models")
    publish_model(models, "pets")
    with Server(models, MODEL_NAME="pets", MODEL_POLL_SECONDS="0") as running:
        yield running.wait_ready()


@pytest.fixture(scope="module")
def tc(server):
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield client
    client.close()


def images_input(photos: list[bytes], binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(photos)], "BYTES")
    data = photos if binary else [base64.b64encode(p) for p in photos]
    tensor.set_data_from_numpy(np.array(data, dtype=np.object_), binary_data=binary)
    return tensor


def test_health_and_server_metadata(tc):
    assert tc.is_server_live() and tc.is_server_ready()
    meta = tc.get_server_metadata()
    assert meta["name"] == "image-classifier-service"
    assert {"binary_tensor_data", "classification"} <= set(meta["extensions"])


def test_model_metadata_and_readiness(tc):
    assert tc.is_model_ready("pets") and tc.is_model_ready("pets", "1")
    assert not tc.is_model_ready("pets", "7") and not tc.is_model_ready("nope")
    meta = tc.get_model_metadata("pets")
    assert meta["name"] == "pets" and meta["versions"] == ["1"]
    assert meta["platform"] in ("onnxruntime_onnx", "openvino_onnx")
    inputs = {t["name"]: t for t in meta["inputs"]}
    assert inputs["image"]["datatype"] == "BYTES"
    assert inputs["input"]["shape"] == [-1, 64, 64, 3]
    outputs = {t["name"]: t for t in meta["outputs"]}
    assert outputs["probabilities"]["shape"] == [-1, 2] and outputs["label"]["datatype"] == "BYTES"
    assert tc.get_model_metadata("pets", "1")["versions"] == ["1"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_images(tc, binary):
    photos = [jpeg_bytes(seed=1), jpeg_bytes((90, 70), seed=2), encode(noise_image(seed=3), "PNG")]
    outputs = [
        triton.InferRequestedOutput("probabilities", binary_data=binary),
        triton.InferRequestedOutput("label", binary_data=binary),
    ]
    result = tc.infer("pets", [images_input(photos, binary)], outputs=outputs, request_id="req-7")
    probs = result.as_numpy("probabilities")
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")]
    assert probs.shape == (3, 2) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert labels == [("dogs" if p[1] >= 0.5 else "cats") for p in probs]
    response = result.get_response()
    assert response["id"] == "req-7" and response["model_version"] == "1"


def test_an_id_with_a_lone_surrogate_escape_is_sent_back(server):
    """JSON's "\\ud800" is a string orjson cannot write: before, a 500 after the model ran."""
    photo = base64.b64encode(jpeg_bytes(seed=8)).decode()
    tensor = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [photo]}
    body = json.dumps({"id": "\ud800", "inputs": [tensor]})  # the id as "\\ud800"
    response = requests.post(
        f"{server.url}/v2/models/pets/infer",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "\ud800"


def test_no_outputs_asked_gives_both_in_binary(tc):
    result = tc.infer("pets", [images_input([jpeg_bytes(seed=4)], True)])
    assert result.as_numpy("probabilities").shape == (1, 2)
    assert result.as_numpy("label").shape == (1,)


def test_classification_extension(tc):
    photos = [jpeg_bytes(seed=5), jpeg_bytes(seed=6)]
    result = tc.infer(
        "pets",
        [images_input(photos, True)],
        outputs=[triton.InferRequestedOutput("probabilities", binary_data=False, class_count=2)],
    )
    rows = result.as_numpy("probabilities")
    assert rows.shape == (2, 2)
    for row in rows:
        first, second = (v.decode() if isinstance(v, bytes) else v for v in row)
        score, index, label = first.split(":")
        assert label == ("cats", "dogs")[int(index)]
        assert float(score) >= float(second.split(":")[0])


def test_pixel_inputs_fp32_and_uint8_give_the_same_answer(tc):
    photo = jpeg_bytes(seed=8)
    pixels = decode_image(photo, SPEC)[None]
    answers = []
    for dtype, name in ((np.float32, "FP32"), (np.uint8, "UINT8")):
        tensor = triton.InferInput("input", list(pixels.shape), name)
        tensor.set_data_from_numpy(pixels.astype(dtype), binary_data=True)
        answers.append(tc.infer("pets", [tensor]).as_numpy("probabilities"))
    from_file = tc.infer("pets", [images_input([photo], True)]).as_numpy("probabilities")
    assert np.allclose(answers[0], answers[1], atol=1e-6)
    assert np.allclose(answers[0], from_file, atol=1e-6)


def test_a_bad_input_is_readable_through_the_client(tc):
    tensor = triton.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
    with pytest.raises(InferenceServerException) as info:
        tc.infer("pets", [tensor])
    assert info.value.status() == "400"
    assert "not_an_image" not in str(info.value) and "image" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        tc.infer("nope", [images_input([jpeg_bytes()], True)])
    assert info.value.status() == "404" and "nope" in str(info.value)


def post_infer(server, body: dict | bytes, headers: dict | None = None, path: str = "pets"):
    data = json.dumps(body) if isinstance(body, dict) else body
    return requests.post(
        f"{server.url}/v2/models/{path}/infer", data=data, headers=headers or {}, timeout=30
    )


def b64_input(count: int = 1, **override) -> dict:
    photo = base64.b64encode(jpeg_bytes()).decode()
    return {
        "name": "image",
        "shape": [count],
        "datatype": "BYTES",
        "data": [photo] * count,
        **override,
    }


def binary_request(tensor: dict, blob: bytes, header_length: int | None = None):
    header = json.dumps({"inputs": [tensor]}).encode()
    length = len(header) if header_length is None else header_length
    return header + blob, {"Inference-Header-Content-Length": str(length)}


BAD_JSON = {
    "wrong datatype": {"inputs": [b64_input(datatype="FP32")]},
    "wrong shape": {"inputs": [b64_input(shape=[1, 1])]},
    "shape and data disagree": {"inputs": [b64_input(shape=[2])]},
    "unknown input": {"inputs": [b64_input(name="pixels")]},
    "two inputs": {"inputs": [b64_input(), b64_input()]},
    "no inputs": {"inputs": []},
    "missing inputs": {"id": "x"},
    "unknown output": {"inputs": [b64_input()], "outputs": [{"name": "logits"}]},
    "classification on label": {
        "inputs": [b64_input()],
        "outputs": [{"name": "label", "parameters": {"classification": 1}}],
    },
    "classification too large": {
        "inputs": [b64_input()],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}],
    },
    "classification true": {
        "inputs": [b64_input()],
        "outputs": [{"name": "probabilities", "parameters": {"classification": True}}],
    },
    "classification null": {  # refused, as gRPC refuses a parameter with no value
        "inputs": [b64_input()],
        "outputs": [{"name": "probabilities", "parameters": {"classification": None}}],
    },
    "invalid base64": {"inputs": [b64_input(data=["%%%"])]},
    "not an image": {"inputs": [b64_input(data=[base64.b64encode(b"hello").decode()])]},
    "pixels out of range": {
        "inputs": [{"name": "input", "shape": [1, 64, 64, 3], "datatype": "FP32", "data": [300.0] * 64 * 64 * 3}]
    },
    "pixels of the wrong size": {
        "inputs": [{"name": "input", "shape": [1, 2, 2, 3], "datatype": "FP32", "data": [1.0] * 12}]
    },
    "no data": {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES"}]},
    "a number past float64": {
        "inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [10**400]}]
    },
    "pixels as strings": {
        "inputs": [{"name": "input", "shape": [1, 64, 64, 3], "datatype": "FP32", "data": ["1"] * 64 * 64 * 3}]
    },
    "pixels as booleans": {
        "inputs": [{"name": "input", "shape": [1, 64, 64, 3], "datatype": "UINT8", "data": [True] * 64 * 64 * 3}]
    },
    "pixels with one boolean among numbers": {
        "inputs": [{"name": "input", "shape": [1, 64, 64, 3], "datatype": "UINT8", "data": [True] + [0] * (64 * 64 * 3 - 1)}]
    },
    "a shape of 1.0": {"inputs": [b64_input(shape=[1.0])]},
    "binary_data a string": {
        "inputs": [b64_input()],
        "outputs": [{"name": "label", "parameters": {"binary_data": "no"}}],
    },
    "binary_data_output a list": {
        "inputs": [b64_input()], "parameters": {"binary_data_output": [1]},
    },
}  # fmt: skip


@pytest.mark.parametrize("body", BAD_JSON.values(), ids=BAD_JSON.keys())
def test_bad_json_requests_get_400_in_the_protocol_shape(server, body):
    response = post_infer(server, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and error


def test_a_multipart_form_is_refused_naming_what_to_send(server):
    """Before: 400 "the inference request header is not valid JSON" (a form upload is the
    most likely mistake here: say what this route takes, and where a form goes)."""
    response = requests.post(
        f"{server.url}/v2/models/pets/infer", files={"file": jpeg_bytes()}, timeout=30
    )
    assert response.status_code == 400
    assert "not a multipart form" in response.json()["error"]
    assert "/v1/models/pets:predict" in response.json()["error"]


def test_too_many_images_is_413(server):
    response = post_infer(server, {"inputs": [b64_input(65)]})
    assert response.status_code == 413 and isinstance(response.json()["error"], str)


BAD_BINARY = {
    "header length past the body": binary_request(
        {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 4}},
        b"\0\0\0\0",
        header_length=10_000,
    ),
    "negative header length": binary_request(
        {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 4}},
        b"\0\0\0\0",
        header_length=-3,
    ),
    "sizes that do not add up": binary_request(
        {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 9}},
        struct.pack("<I", 3) + b"abc",
    ),
    "element longer than its data": binary_request(
        {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 7}},
        struct.pack("<I", 50) + b"abc",
    ),
    "fewer elements than the shape": binary_request(
        {"name": "image", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 7}},
        struct.pack("<I", 3) + b"abc",
    ),
    "pixels of the wrong byte count": binary_request(
        {"name": "input", "shape": [1, 64, 64, 3], "datatype": "FP32", "parameters": {"binary_data_size": 12}},
        b"\0" * 12,
    ),
    "header not JSON": (b"{{{{" + b"\0" * 4, {"Inference-Header-Content-Length": "4"}),
    "a shape whose size wraps around in int64": binary_request(
        {"name": "input", "shape": [1, 2**62, 2**62, 3], "datatype": "UINT8", "parameters": {"binary_data_size": 0}},
        b"",
    ),
}  # fmt: skip


@pytest.mark.parametrize("request_parts", BAD_BINARY.values(), ids=BAD_BINARY.keys())
def test_bad_binary_requests_get_400(server, request_parts):
    body, headers = request_parts
    response = post_infer(server, body, headers)
    assert response.status_code == 400, response.text
    assert isinstance(response.json()["error"], str)


def test_a_huge_declared_shape_is_said_as_it_is(server):
    body, headers = BAD_BINARY["a shape whose size wraps around in int64"]
    error = post_infer(server, body, headers).json()["error"]
    assert f"needs {2**124 * 3} bytes" in error, error  # not "needs 0 bytes"


def test_deep_json_and_unknown_paths_answer_in_the_protocol_shape(server):
    response = post_infer(server, b"[" * 100_000, {"Content-Type": "application/json"})
    assert response.status_code == 400 and isinstance(response.json()["error"], str)
    for path in ("/v2/models/pets/versions/x/infer", "/v2/nothing"):
        response = requests.get(f"{server.url}{path}", timeout=10)
        assert response.status_code == 404 and isinstance(response.json()["error"], str)
    for version in ("9", "0"):  # 0 is a number no version has, as over gRPC (NOT_FOUND)
        response = post_infer(server, {"inputs": [b64_input()]}, path=f"pets/versions/{version}")
        assert response.status_code == 404 and version in response.json()["error"]
