"""Any number of classes: a three-class model served beside the binary one, its answers in
every form, top_k, and classes that never change under a model's users."""

from __future__ import annotations

import base64
import io
import json
import logging
import shutil

import numpy as np
import pytest

from classifier.errors import ModelStoreError
from classifier.metadata import METADATA_FILE
from classifier.store import ModelStore
from service.http.app import create_app
from tests.helpers import app_config, jpeg_bytes, publish_model, publish_multiclass

CLASSES = ["ant", "bee", "cicada"]


@pytest.fixture
def two_models(models_dir):
    """pets (binary, the default) and insects (three classes) in one store."""
    publish_multiclass(models_dir, "insects")
    app = create_app(app_config(models_dir))
    return app, app.test_client()


def probabilities(answer: dict) -> dict:
    return answer["predictions"][0]["probabilities"]


def test_both_models_are_served_side_by_side(two_models):
    _, client = two_models
    default = client.post("/predict", data=jpeg_bytes(), content_type="image/jpeg").get_json()
    assert default["model"]["name"] == "pets" and set(probabilities(default)) == {"cats", "dogs"}
    answer = client.post(
        "/v1/models/insects:predict", data=jpeg_bytes(), content_type="image/jpeg"
    ).get_json()
    probs = probabilities(answer)
    assert list(probs) == CLASSES and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert answer["predictions"][0]["label"] == max(probs, key=probs.get)
    models = client.get("/v1/models").get_json()["models"]
    assert {m["name"] for m in models} == {"pets", "insects"}


def test_top_k_lists_the_best_classes_sorted(two_models):
    _, client = two_models
    answer = client.post(
        "/v1/models/insects:predict?top_k=2", data=jpeg_bytes(), content_type="image/jpeg"
    ).get_json()
    top = answer["predictions"][0]["top"]
    probs = probabilities(answer)
    assert [t["label"] for t in top] == sorted(probs, key=probs.get, reverse=True)[:2]
    assert top[0]["probability"] >= top[1]["probability"]


# %C2%B2 is "²" and %D9%A3 an Arabic-Indic 3: str.isdigit takes both, int() refuses the first
# and 5,000 digits are past what int() takes (it raises ValueError over 4,300)
@pytest.mark.parametrize(
    "value", ["0", "-1", "abc", "4", "1.5", "", "%C2%B2", "%D9%A3", "9" * 5000, "0" * 5000 + "2"]
)
def test_a_bad_top_k_is_400_with_the_range(two_models, value):
    _, client = two_models
    response = client.post(
        f"/v1/models/insects:predict?top_k={value}", data=jpeg_bytes(), content_type="image/jpeg"
    )
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_parameter" and "1 to 3" in error["message"]


def test_every_protocol_gives_three_probabilities(two_models):
    _, client = two_models
    photo = base64.b64encode(jpeg_bytes()).decode()
    tf = client.post("/v1/models/insects:predict", json={"instances": [{"b64": photo}]})
    assert len(tf.get_json()["predictions"][0]["probabilities"]) == 3
    body = {
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [photo]}],
        "outputs": [
            {"name": "probabilities"},
            {"name": "label"},
        ],
    }
    v2 = client.post("/v2/models/insects/infer", json=body).get_json()
    outputs = {o["name"]: o for o in v2["outputs"]}
    assert outputs["probabilities"]["shape"] == [1, 3]
    assert sum(outputs["probabilities"]["data"]) == pytest.approx(1.0, abs=1e-5)
    body["outputs"] = [{"name": "probabilities", "parameters": {"classification": 3}}]
    ranked = client.post("/v2/models/insects/infer", json=body).get_json()["outputs"][0]
    assert ranked["shape"] == [1, 3] and {s.split(":")[2] for s in ranked["data"]} == set(CLASSES)
    classify = client.post("/v1/models/insects:classify", json={"examples": [{"b64": photo}]})
    assert [pair[0] for pair in classify.get_json()["result"][0]] == CLASSES
    meta = client.get("/v2/models/insects").get_json()
    assert meta["parameters"]["classes"] == CLASSES


def test_publishing_other_classes_under_the_same_name_is_refused(models_dir):
    publish_multiclass(models_dir, "insects")
    with pytest.raises(ModelStoreError) as info:
        publish_multiclass(models_dir, "insects", ("ant", "bee"))
    assert info.value.code == "class_mismatch" and "new model name" in info.value.message
    assert "['ant', 'bee', 'cicada']" in info.value.message
    assert ModelStore(models_dir).versions("insects") == [1]  # nothing written
    assert sorted(p.name for p in (models_dir / "insects").iterdir()) == [".last-version", "1"]


def test_a_version_with_other_classes_is_never_swapped_in(models_dir, caplog):
    app = create_app(app_config(models_dir))
    loader, client = app.extensions["loader"], app.test_client()
    # A version that arrives by other means: pets v1's files under insects' classes.
    target = models_dir / "pets" / "2"
    shutil.copytree(models_dir / "pets" / "1", target)
    meta = json.loads((target / METADATA_FILE).read_text())
    meta.update(version=2, class_names=["ant", "bee"])
    (target / METADATA_FILE).write_text(json.dumps(meta))
    with caplog.at_level(logging.ERROR, logger="service.loader"):
        loader.load_all()
        loader.load_all()  # polled again: reported once
    status = client.get("/v1/models/pets").get_json()
    v2 = next(v for v in status["versions"] if v["version"] == 2)
    assert v2["state"] == "INVALID" and "differ" in v2["error"]
    assert status["serving_version"] == 1
    assert len([r for r in caplog.records if "v2 refused" in r.getMessage()]) == 1
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'model_class_mismatch_total{model="pets"} 1.0' in metrics
    answer = client.post("/predict", data=jpeg_bytes(), content_type="image/jpeg").get_json()
    assert set(probabilities(answer)) == {"cats", "dogs"}


def test_the_binary_answers_are_unchanged(models_dir):
    """pets' probabilities are exactly the sigmoid's P(dogs) and 1 - P(dogs), as before."""
    import onnxruntime as ort

    from classifier.preprocess import decode_image
    from classifier.spec import InputSpec

    app = create_app(app_config(models_dir, RUNTIME="onnx"))
    photo = jpeg_bytes(seed=5)
    answer = app.test_client().post("/predict", data=photo, content_type="image/jpeg").get_json()
    session = ort.InferenceSession(str(models_dir / "pets" / "1" / "model.onnx"))
    pixels = decode_image(photo, InputSpec(height=64, width=64))[None].astype(np.float32)
    p = float(session.run(None, {session.get_inputs()[0].name: pixels})[0][0][0])
    probs = probabilities(answer)
    assert abs(probs["dogs"] - p) <= 1e-6 and probs["cats"] == pytest.approx(1.0 - p, abs=1e-6)
    assert len(probs) == 2


def test_a_second_binary_model_is_its_own_name(models_dir):
    publish_model(models_dir, "birds", class_names=("crow", "dove"))
    client = create_app(app_config(models_dir)).test_client()
    answer = client.post(
        "/v1/models/birds:predict", data=io.BytesIO(jpeg_bytes()), content_type="image/jpeg"
    ).get_json()
    assert set(probabilities(answer)) == {"crow", "dove"}
