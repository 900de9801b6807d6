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


def test_a_request_that_reaches_the_model_after_its_version_retired_finishes_on_it(models_dir):
    """A slow upload that took v1 before a swap, and reaches the model after v1's batcher
    stopped (REQUEST_DEADLINE_MS + 1 s later): answered by v1 (before: 503 "the server is
    shutting down"), in padded batches counted as any."""
    app, loader, client = make(models_dir, REQUEST_DEADLINE_MS=100)
    plane = app.extensions["dataplane"]
    old = plane.model("pets")
    expected = plane.predict(old, np.zeros((3, 64, 64, 3), np.uint8))
    publish_model(models_dir, "pets", seed=5)
    loader.load_all()
    deadline = time.monotonic() + 10
    while not old.batcher.stopping:
        assert time.monotonic() < deadline, "the old version never retired"
        time.sleep(0.05)
    time.sleep(0.2)
    counted = old.batcher.stats.images
    late = plane.predict(old, np.zeros((3, 64, 64, 3), np.uint8))
    assert np.allclose(late, expected)
    # in padded batches, counted in its batch metrics (before: neither)
    assert old.batcher.stats.images == counted + 3 and old.batcher.stats.sizes[3] >= 1
    assert served_version(client) == 2


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


def test_corrupt_model_file_fails_once_and_is_retried_when_its_folder_changes(
    models_dir, caplog, tmp_path
):
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
    # replace the folder's content with a good model v2 (a copy): tried again and served
    publish_model(tmp_path / "good", "pets")
    publish_model(tmp_path / "good", "pets", seed=6)
    shutil.rmtree(models_dir / "pets" / "2")
    shutil.copytree(tmp_path / "good" / "pets" / "2", models_dir / "pets" / "2")
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


@pytest.mark.parametrize(
    "text",
    ["newest", "latest:0", "specific:", "specific:a", "latest:x", "specific:1_0", "latest:\u0663"],
)
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
    # the staging folder was cleaned up; .last-version is the store's record of v1
    assert sorted(p.name for p in (models_dir / "pets").iterdir()) == [".last-version", "1"]
    loader.load_all()
    assert served_version(client) == 1


def tiny_onnx(answers_one_row: bool = False) -> bytes:
    """A hand-made ONNX softmax over two channel means of a 64x64 image; `answers_one_row`:
    it loads, but answers one row whatever the batch (a model broken in a way no check names)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 64, 64, 3])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2])
    ints = {"axes": [1, 2], "start": [0], "end": [2], "one": [1], "zero": [0], "ax1": [1]}
    inits = [helper.make_tensor(k, TensorProto.INT64, [len(v)], v) for k, v in ints.items()]
    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["means"], keepdims=0),
        helper.make_node("Slice", ["means", "start", "end", "ax1"], ["two"]),
        helper.make_node("Softmax", ["two"], ["soft" if answers_one_row else "probs"], axis=1),
    ]
    if answers_one_row:
        nodes.append(helper.make_node("Slice", ["soft", "zero", "one", "zero"], ["probs"]))
    graph = helper.make_graph(nodes, "tiny", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model.SerializeToString()


def publish_onnx(models_dir, answers_one_row: bool = False) -> int:
    def write(folder):
        (folder / "model.onnx").write_bytes(tiny_onnx(answers_one_row))
        (folder / MODEL_FILE).write_bytes(b"a serving copy: ONNX only")
        return {**PETS_FIELDS, "output": {"activation": "softmax"}}

    return ModelStore(models_dir).publish("pets", write).version


def test_a_version_broken_in_a_way_no_check_names_is_skipped_not_fatal(models_dir, tmp_path):
    """An exception that is not the store's own (here a ValueError from the runtime) fails
    that version; the worker starts and the good version serves (before: the worker failed to
    boot, and the poller stopped refreshing the models after it)."""
    store = tmp_path / "store"
    publish_onnx(store)
    publish_onnx(store, answers_one_row=True)
    _, loader, client = make(store, RUNTIME="onnx")  # it loads v2 first, as the newest
    assert served_version(client) == 1
    assert states(client) == {1: "AVAILABLE", 2: "FAILED"}
    error = client.get("/v1/models/pets").get_json()["versions"][1]["error"]
    assert error.startswith("ValueError: ")
    loader.load_all()  # failed once: not loaded again until its folder changes
    assert states(client) == {1: "AVAILABLE", 2: "FAILED"}


def test_a_version_number_copied_in_again_serves_its_new_files(models_dir, tmp_path):
    """A seed or a copy can bring other files under a number already loaded: the loader
    loads them (their checksums changed) instead of answering with the old model."""
    _, loader, client = make(models_dir)
    before = client.post("/predict", data=jpeg_bytes(), content_type="image/jpeg").get_json()
    publish_model(tmp_path / "other", "pets", seed=5)
    shutil.rmtree(models_dir / "pets" / "1")
    shutil.copytree(tmp_path / "other" / "pets" / "1", models_dir / "pets" / "1")
    loader.load_all()
    after = client.post("/predict", data=jpeg_bytes(), content_type="image/jpeg").get_json()
    assert after["model"]["version"] == before["model"]["version"] == 1
    fresh = make(models_dir)[2].post("/predict", data=jpeg_bytes(), content_type="image/jpeg")
    assert after["predictions"] == fresh.get_json()["predictions"] != before["predictions"]


def test_metadata_nested_too_deep_is_refused_and_the_status_routes_answer(models_dir):
    """5,000 levels (json.loads: RecursionError) or 300 (the JSON encoder's limit, a 500 on
    the status routes before): refused as invalid; the old version serves, status is 200."""
    import json

    _, loader, client = make(models_dir)
    good = json.loads((models_dir / "pets" / "1" / "metadata.json").read_text())
    for version, depth in ((2, 300), (3, 5000)):
        folder = models_dir / "pets" / str(version)
        shutil.copytree(models_dir / "pets" / "1", folder)
        text = json.dumps({**good, "version": version, "training": {"notes": "NOTES"}})
        notes = "[" * depth + '"deep"' + "]" * depth  # json.dumps itself stops near 1,000
        (folder / "metadata.json").write_text(text.replace('"NOTES"', notes))
    loader.load_all()
    assert served_version(client) == 1
    for path in ("/v1/models/pets", "/v1/models"):
        assert client.get(path).status_code == 200
    assert states(client) == {1: "AVAILABLE", 2: "INVALID", 3: "INVALID"}


def test_a_model_folder_that_cannot_be_listed_for_a_while_unloads_nothing(
    models_dir, tmp_path, monkeypatch
):
    """EACCES or EIO listing models/<name>/ (an NFS hiccup) is not a deletion: every loaded
    version keeps serving and none is called removed (before: all but the newest were
    unloaded, 404 on their routes, and loaded and warmed up again once the folder read)."""
    import errno
    import json

    store = tmp_path / "store"
    publish_onnx(store)
    publish_onnx(store)
    _, loader, client = make(store, RUNTIME="onnx", MODEL_VERSION_POLICY="latest:2")
    before = client.get("/v1/models/pets").get_json()["versions"]
    listing = ModelStore.versions

    def unreadable(self, name):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(ModelStore, "versions", unreadable)
    loader.load_all()
    body = client.get("/v1/models/pets").get_json()
    assert body["loaded_versions"] == [1, 2]
    assert json.dumps(body["versions"]) == json.dumps(before)
    assert served_version(client, "/v1/models/pets/versions/1:predict") == 1
    monkeypatch.setattr(ModelStore, "versions", listing)
    kept = dict(loader.registry.state("pets").loaded)
    loader.load_all()
    assert loader.registry.state("pets").loaded == kept  # nothing loaded again


def test_a_version_unreadable_for_a_while_is_served_once_it_reads(
    models_dir, tmp_path, monkeypatch
):
    """A model file that could not be read (EACCES: published with a private mode, then
    chmod-ed; EIO) is checked again at the next poll, as a new worker would: before, the
    refusal was kept until the file's size or mtime changed (chmod changes neither), so this
    worker answered with v1 while a new one answered with v2."""
    import classifier.store

    store = tmp_path / "store"
    publish_onnx(store)
    _, loader, client = make(store, RUNTIME="onnx")
    publish_onnx(store)
    hashing = classifier.store.sha256_file

    def unreadable(path):
        if path == store / "pets" / "2" / "model.onnx":
            raise PermissionError(13, "Permission denied", str(path))
        return hashing(path)

    monkeypatch.setattr(classifier.store, "sha256_file", unreadable)
    loader.load_all()
    assert states(client) == {1: "AVAILABLE", 2: "INVALID"}
    monkeypatch.setattr(classifier.store, "sha256_file", hashing)
    loader.load_all()
    assert served_version(client) == 2
