"""TensorFlow Serving's REST API, as its documentation describes it, through `requests`; and
the same photo through every protocol giving the same probabilities."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import requests
import tritonclient.http as triton

from benchmarks.harness import Server
from classifier.preprocess import decode_image
from classifier.spec import InputSpec
from tests.helpers import jpeg_bytes, publish_model

pytestmark = pytest.mark.e2e

PHOTOS = [jpeg_bytes(seed=21), jpeg_bytes((80, 60), seed=22)]
B64 = [base64.b64encode(p).decode() for p in PHOTOS]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    models = tmp_path_factory.mktemp("tf-models")
    publish_model(models, "pets")
    publish_model(models, "pets", seed=3)
    env = {"MODEL_NAME": "pets", "MODEL_POLL_SECONDS": "0", "MODEL_VERSION_POLICY": "latest:2"}
    with Server(models, VERSION_LABELS="stable=1,canary=2", **env) as running:
        yield running.wait_ready()


def post(server, path: str, body) -> requests.Response:
    return requests.post(f"{server.url}{path}", json=body, timeout=30)


def probabilities_of(server, path: str = "/v1/models/pets:predict") -> np.ndarray:
    body = post(server, path, {"instances": [{"b64": b} for b in B64]}).json()
    return np.array([p["probabilities"] for p in body["predictions"]])


def test_row_form_unnamed_and_named_inputs(server):
    unnamed = post(server, "/v1/models/pets:predict", {"instances": [{"b64": b} for b in B64]})
    named = post(
        server,
        "/v1/models/pets:predict",
        {"signature_name": "serving_default", "instances": [{"image": {"b64": b}} for b in B64]},
    )
    assert unnamed.status_code == named.status_code == 200, unnamed.text
    assert unnamed.json() == named.json()
    predictions = unnamed.json()["predictions"]
    assert len(predictions) == 2 and set(predictions[0]) == {"probabilities", "label"}
    assert predictions[0]["probabilities"][0] + predictions[0]["probabilities"][1] == pytest.approx(
        1
    )
    assert unnamed.headers["X-Model-Version"] == "2"


def test_columnar_form(server):
    for inputs in ({"image": [{"b64": b} for b in B64]}, [{"b64": b} for b in B64]):
        response = post(server, "/v1/models/pets:predict", {"inputs": inputs})
        assert response.status_code == 200, response.text
        outputs = response.json()["outputs"]
        assert np.allclose(outputs["probabilities"], probabilities_of(server), atol=1e-7)
        assert len(outputs["label"]) == 2


def test_classify(server):
    response = post(server, "/v1/models/pets:classify", {"examples": [{"image": {"b64": B64[0]}}]})
    assert response.status_code == 200, response.text
    [[cats, dogs]] = response.json()["result"]
    assert cats[0] == "cats" and dogs[0] == "dogs"
    assert cats[1] == pytest.approx(probabilities_of(server)[0][0], abs=1e-7)


def test_versions_and_labels(server):
    v1 = probabilities_of(server, "/v1/models/pets/versions/1:predict")
    stable = probabilities_of(server, "/v1/models/pets/labels/stable:predict")
    canary = probabilities_of(server, "/v1/models/pets/labels/canary:predict")
    assert np.array_equal(v1, stable) and not np.allclose(stable, canary)
    response = post(server, "/v1/models/pets/labels/beta:predict", {"instances": [{"b64": B64[0]}]})
    assert response.status_code == 404 and isinstance(response.json()["error"], str)


def test_model_status_and_metadata(server):
    status = requests.get(f"{server.url}/v1/models/pets", timeout=10).json()
    assert [s["version"] for s in status["model_version_status"]] == ["2", "1"]
    assert status["model_version_status"][0] == {
        "version": "2",
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }
    one = requests.get(f"{server.url}/v1/models/pets/versions/1", timeout=10).json()
    assert one["model_version_status"][0]["version"] == "1"
    labelled = requests.get(f"{server.url}/v1/models/pets/labels/canary", timeout=10).json()
    assert labelled["model_version_status"][0]["version"] == "2"
    meta = requests.get(f"{server.url}/v1/models/pets/metadata", timeout=10).json()
    assert meta["model_spec"] == {"name": "pets", "signature_name": "", "version": "2"}
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["image"]["dtype"] == "DT_STRING"
    assert set(signature["outputs"]) == {"probabilities", "label"}
    versioned = requests.get(f"{server.url}/v1/models/pets/versions/1/metadata", timeout=10)
    assert versioned.json()["model_spec"]["version"] == "1"


BAD = {
    "both forms": {"instances": [{"b64": B64[0]}], "inputs": [{"b64": B64[0]}]},
    "neither form": {"signature_name": "serving_default"},
    "unknown signature": {"signature_name": "other", "instances": [{"b64": B64[0]}]},
    "not b64": {"instances": [[1, 2, 3]]},
    "invalid base64": {"instances": [{"b64": "%%%"}]},
    "not an image": {"instances": [{"b64": base64.b64encode(b"hello").decode()}]},
    "no image": {"instances": []},
    "wrong input name": {"instances": [{"pixels": {"b64": B64[0]}}]},
}


@pytest.mark.parametrize("body", BAD.values(), ids=BAD.keys())
def test_bad_requests_get_400_in_tf_serving_shape(server, body):
    response = post(server, "/v1/models/pets:predict", body)
    assert response.status_code == 400, response.text
    assert isinstance(response.json()["error"], str)


def test_too_many_images_and_bad_json(server):
    response = post(server, "/v1/models/pets:predict", {"instances": [{"b64": B64[0]}] * 65})
    assert response.status_code == 413 and isinstance(response.json()["error"], str)
    response = requests.post(
        f"{server.url}/v1/models/pets:predict",
        data="[" * 100_000,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400 and isinstance(response.json()["error"], str)


def test_own_forms_keep_their_answers_on_the_same_routes(server):
    multipart = requests.post(
        f"{server.url}/v1/models/pets:predict", files={"image": ("a.jpg", PHOTOS[0])}, timeout=30
    ).json()
    assert multipart["model"] == {"name": "pets", "version": 2}
    own_json = post(server, "/predict", {"instances": [{"b64": B64[0]}]}).json()
    assert (
        own_json["predictions"][0]["probabilities"] == multipart["predictions"][0]["probabilities"]
    )


def test_octet_stream_body(server):
    response = requests.post(
        f"{server.url}/predict",
        data=PHOTOS[0],
        headers={"Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert response.status_code == 200 and len(response.json()["predictions"]) == 1


def test_the_same_photo_gets_the_same_probabilities_through_every_protocol(server):
    photo = PHOTOS[1]
    own = requests.post(
        f"{server.url}/predict", files={"image": ("p.jpg", photo)}, timeout=30
    ).json()["predictions"][0]["probabilities"]
    answers = {"own": [own["cats"], own["dogs"]]}
    answers["tf serving"] = post(
        server,
        "/v1/models/pets:predict",
        {"instances": [{"b64": base64.b64encode(photo).decode()}]},
    ).json()["predictions"][0]["probabilities"]
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    for binary in (True, False):
        tensor = triton.InferInput("image", [1], "BYTES")
        data = [photo] if binary else [base64.b64encode(photo)]
        tensor.set_data_from_numpy(np.array(data, dtype=np.object_), binary_data=binary)
        out = triton.InferRequestedOutput("probabilities", binary_data=binary)
        result = client.infer("pets", [tensor], outputs=[out])
        answers[f"v2 binary={binary}"] = result.as_numpy("probabilities")[0].tolist()
    pixels = decode_image(photo, InputSpec(height=64, width=64))[None].astype(np.float32)
    tensor = triton.InferInput("input", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=True)
    answers["v2 fp32 pixels"] = client.infer("pets", [tensor]).as_numpy("probabilities")[0].tolist()
    client.close()
    reference = np.array(answers["own"])
    for name, values in answers.items():
        assert np.allclose(values, reference, atol=1e-6), name


@pytest.mark.parametrize(
    "body",
    [{"examples": [{"image": {"b64": "%%%"}}]}, {"examples": []}, {"instances": []}, []],
    ids=["invalid base64", "no example", "no examples field", "not an object"],
)
def test_bad_classify_requests_get_400(server, body):
    response = post(server, "/v1/models/pets:classify", body)
    assert response.status_code == 400, response.text
    assert isinstance(response.json()["error"], str)


def test_unknown_model_and_version_in_tf_serving_shape(server):
    for path in ("/v1/models/nope/metadata", "/v1/models/pets/versions/9/metadata"):
        response = requests.get(f"{server.url}{path}", timeout=10)
        assert response.status_code == 404 and isinstance(response.json()["error"], str)
    response = post(server, "/v1/models/nope:classify", {"examples": [{"b64": B64[0]}]})
    assert response.status_code == 404 and isinstance(response.json()["error"], str)


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", None, "text/plain"], ids=str
)
def test_predict_reads_json_whatever_its_content_type(server, content_type):
    """As TensorFlow Serving, which parses every body as JSON: curl's `-d` sends a form type
    (TensorFlow Serving's own docs call it so), and some clients send none."""
    body = f'{{"instances": [{{"b64": "{B64[0]}"}}]}}'.encode()
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = requests.post(
        f"{server.url}/v1/models/pets:predict", data=body, headers=headers, timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["probabilities"] == pytest.approx(
        probabilities_of(server)[0].tolist(), abs=1e-7
    )
    # not JSON: TensorFlow Serving's shape, saying how an image is sent instead
    response = requests.post(
        f"{server.url}/v1/models/pets:predict", data=PHOTOS[0], headers=headers, timeout=30
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"] and "image/*" in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/models/pets:regress"),
        ("GET", "/v1/models/pets:regress"),
        ("POST", "/v1/models/pets/versions/1:explain"),
        ("POST", "/v1/models/pets/labels/stable:Predict"),
    ],
)
def test_an_unknown_verb_is_404_in_tf_serving_shape_naming_it(server, method, path):
    """Real TensorFlow Serving answers 400 "Malformed request"; here the path is not served,
    so 404 as every unknown path, in TensorFlow Serving's shape, naming the verb."""
    verb = path.rpartition(":")[2]
    response = requests.request(
        method, f"{server.url}{path}", json={"instances": [{"b64": B64[0]}]}, timeout=10
    )
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and repr(verb) in error and ":predict" in error
    assert "Allow" not in response.headers


def test_a_verb_with_the_wrong_method_and_a_bad_version_in_tf_serving_shape(server):
    for verb in ("predict", "classify"):  # not the model status of 'pets:predict'
        response = requests.get(f"{server.url}/v1/models/pets:{verb}", timeout=10)
        assert response.status_code == 405, response.text
        assert "GET" not in response.headers["Allow"] and "POST" in response.headers["Allow"]
        assert "POST" in response.json()["error"]
    for path in ("/v1/models/pets/versions/-1", "/v1/models/pets/versions/x/metadata"):
        response = requests.get(f"{server.url}{path}", timeout=10)
        assert response.status_code == 404 and isinstance(response.json()["error"], str), path
    # this service's own routes under /v1/models keep their answers
    assert requests.get(f"{server.url}/v1/models/pets", timeout=10).json()["name"] == "pets"
    response = requests.post(f"{server.url}/v1/models/pets", timeout=10)
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("top_k", ["1", "abc"])
def test_top_k_with_tf_serving_json_is_refused_not_dropped(server, top_k):
    """top_k shapes this service's own answer; TensorFlow Serving's has no place for it, so
    a JSON request asking for it is told so (it was 200 without `top`, even for "abc")."""
    response = requests.post(
        f"{server.url}/v1/models/pets:predict?top_k={top_k}",
        json={"instances": [{"b64": B64[0]}]},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert "top_k" in response.json()["error"]
    classify = requests.post(  # before: taken and ignored
        f"{server.url}/v1/models/pets:classify?top_k={top_k}",
        json={"examples": [{"image": {"b64": B64[0]}}]},
        timeout=30,
    )
    assert classify.status_code == 400 and "top_k" in classify.json()["error"], classify.text
    upload = requests.post(
        f"{server.url}/v1/models/pets:predict?top_k=1",
        files={"image": ("a.jpg", PHOTOS[0])},
        timeout=30,
    )
    assert upload.status_code == 200 and len(upload.json()["predictions"][0]["top"]) == 1
