"""Hot reload, refusal of bad versions and the version policy, through a real app."""

import errno
import logging
import shutil
import time

import numpy as np
import pytest

from classifier.metadata import MODEL_FILE
from classifier.spec import InputSpec
from classifier.store import ModelStore
from service.http.app import create_app
from service.registry import VersionPolicy
from tests.helpers import PETS_FIELDS, app_config, jpeg_bytes, publish_model
from training.model import build_model


def make(models_dir, **config):
    app = create_app(app_config(models_dir, **config))
    return app, app.extensions["loader"], app.test_client()


def served_version(client, path="/predict") -> int:
    response = client.post(path, data=jpeg_bytes(), content_type="image/jpeg")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["X-Model-Version"] == str(response.get_json()["model"]["version"])
    return response.get_json()["model"]["version"]


def states(client) -> dict[int, str]:
    return {v["version"]: v["state"] for v in client.get("/v1/models/pets").get_json()["versions"]}


def test_a_new_version_is_picked_up(models_dir):
    _, loader, client = make(models_dir)
    assert served_version(client) == 1
    publish_model(models_dir, "pets", seed=5)
    loader.load_all()
    assert served_version(client) == 2
    assert states(client) == {1: "NOT_LOADED", 2: "AVAILABLE"}


def test_requests_holding_the_old_version_finish_on_it(models_dir):
    app, loader, _ = make(models_dir, REQUEST_DEADLINE_MS=2000)
    old = loader.registry.get("pets")
    publish_model(models_dir, "pets", seed=5)
    loader.load_all()
    assert loader.registry.get("pets").version == 2
    # the retired version still answers the requests that took it before the swap
    plane = app.extensions["dataplane"]
    assert len(plane.predict(old, np.zeros((2, 64, 64, 3), np.uint8), timeout_s=5)) == 2


def test_half_written_folder_is_refused_and_the_old_version_answers(models_dir):
    _, loader, client = make(models_dir)
    half = models_dir / "pets" / "2"
    half.mkdir()
    (half / MODEL_FILE).write_bytes(b"partial")
    loader.load_all()
    assert served_version(client) == 1
    body = client.get("/v1/models/pets").get_json()
    assert body["versions"][1]["state"] == "INVALID"
    assert "no metadata.json" in body["versions"][1]["error"]


def test_checksum_mismatch_is_refused(models_dir):
    _, loader, client = make(models_dir)
    publish_model(models_dir, "pets", seed=5)
    with open(models_dir / "pets" / "2" / MODEL_FILE, "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    loader.load_all()
    assert served_version(client) == 1
    assert states(client) == {1: "AVAILABLE", 2: "INVALID"}


def test_corrupt_model_file_fails_once_and_is_retried_when_its_folder_changes(models_dir, caplog):
    _, loader, client = make(models_dir)

    def garbage(folder):
        (folder / MODEL_FILE).write_bytes(b"checksummed, but not a Keras file")
        return dict(PETS_FIELDS)

    ModelStore(models_dir).publish("pets", garbage)
    with caplog.at_level(logging.ERROR, logger="service.loader"):
        loader.load_all()
        loader.load_all()
    failures = [r for r in caplog.records if "v2 failed to load" in r.getMessage()]
    assert len(failures) == 1  # not retried while its folder is unchanged
    assert served_version(client) == 1
    body = client.get("/v1/models/pets").get_json()
    assert body["versions"][1]["state"] == "FAILED"
    # replace the folder's content with a good model: it is tried again and served
    shutil.rmtree(models_dir / "pets" / "2")
    publish_model(models_dir, "pets", seed=6)  # becomes v2 again
    loader.load_all()
    assert served_version(client) == 2


def test_wrong_output_shape_is_refused(models_dir):
    _, loader, client = make(models_dir)
    import keras

    def two_outputs(folder):
        inputs = keras.Input((64, 64, 3))
        x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
        keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)).save(
            folder / MODEL_FILE
        )
        return dict(PETS_FIELDS)

    ModelStore(models_dir).publish("pets", two_outputs)
    loader.load_all()
    assert served_version(client) == 1
    body = client.get("/v1/models/pets").get_json()
    assert body["versions"][1]["state"] == "FAILED"
    assert "(None, 2)" in body["versions"][1]["error"]


def test_a_model_that_answers_nan_fails_its_probe_check(models_dir):
    _, loader, client = make(models_dir)

    def nan_model(folder):
        model = build_model(InputSpec(64, 64))
        weights = model.get_weights()
        weights[-1] = np.full_like(weights[-1], np.nan)
        model.set_weights(weights)
        model.save(folder / MODEL_FILE)
        return dict(PETS_FIELDS)

    ModelStore(models_dir).publish("pets", nan_model)
    loader.load_all()
    assert served_version(client) == 1
    error = client.get("/v1/models/pets").get_json()["versions"][1]["error"]
    assert "probe check" in error


def test_deleted_version_is_unloaded_but_never_the_last(models_dir):
    _, loader, client = make(models_dir)
    publish_model(models_dir, "pets", seed=5)
    loader.load_all()
    assert served_version(client) == 2
    shutil.rmtree(models_dir / "pets" / "2")
    loader.load_all()
    assert served_version(client) == 1
    shutil.rmtree(models_dir / "pets" / "1")
    loader.load_all()
    assert served_version(client) == 1  # the last loaded version stays in memory
    body = client.get("/v1/models/pets").get_json()
    assert body["versions"] == [
        {"version": 1, "state": "AVAILABLE", "note": "removed from the store; served from memory"}
    ]


def test_models_folder_deleted_while_serving(models_dir):
    _, loader, client = make(models_dir)
    shutil.rmtree(models_dir)
    loader.load_all()
    assert served_version(client) == 1
    assert client.get("/readyz").status_code == 200


def test_latest_n_policy_and_version_routes(models_dir):
    publish_model(models_dir, "pets", seed=5)
    publish_model(models_dir, "pets", seed=6)
    _, _, client = make(models_dir, MODEL_VERSION_POLICY="latest:2")
    assert client.get("/v1/models/pets").get_json()["loaded_versions"] == [2, 3]
    assert served_version(client) == 3
    assert served_version(client, "/v1/models/pets/versions/2:predict") == 2
    response = client.post(
        "/v1/models/pets/versions/1:predict", data=jpeg_bytes(), content_type="image/jpeg"
    )
    assert response.status_code == 404
    error = response.get_json()["error"]
    assert error["code"] == "version_not_found"
    assert error["details"]["loaded_versions"] == [2, 3]


def test_specific_policy_pins_a_version(models_dir):
    publish_model(models_dir, "pets", seed=5)
    _, _, client = make(models_dir, MODEL_VERSION_POLICY="specific:1")
    assert served_version(client) == 1


@pytest.mark.parametrize("text", ["newest", "latest:0", "specific:", "specific:a", "latest:x"])
def test_bad_policies_are_refused(text):
    with pytest.raises(ValueError):
        VersionPolicy.parse(text)


def test_the_poller_picks_up_a_version_by_itself(models_dir):
    _, loader, client = make(models_dir, MODEL_POLL_SECONDS=0.2)
    try:
        publish_model(models_dir, "pets", seed=5)
        deadline = time.monotonic() + 60
        while loader.registry.get("pets").version != 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert served_version(client) == 2
    finally:
        loader.stop()


def test_a_publish_that_fails_half_way_is_never_seen(models_dir):
    _, loader, client = make(models_dir)
    seen = {}

    def fails_while_writing(folder):
        (folder / MODEL_FILE).write_bytes(b"the first half of a model")
        loader.load_all()  # the service polls while the publisher is writing
        seen["versions"] = client.get("/v1/models/pets").get_json()["versions"]
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        ModelStore(models_dir).publish("pets", fails_while_writing)
    assert seen["versions"] == [{"version": 1, "state": "AVAILABLE"}]
    assert sorted(p.name for p in (models_dir / "pets").iterdir()) == ["1"]  # cleaned up
    loader.load_all()
    assert served_version(client) == 1
