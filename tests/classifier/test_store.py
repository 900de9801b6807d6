import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from classifier.errors import ModelStoreError
from classifier.metadata import METADATA_FILE, MODEL_FILE, ONNX_FILE, ModelMetadata
from classifier.predictor import load_predictor
from classifier.spec import InputSpec
from classifier.store import TEMP_PREFIX, ModelStore, validate_name
from tests.helpers import publish_model

FIELDS = {
    "class_names": ["cats", "dogs"],
    "input": InputSpec(height=64, width=64).to_dict(),
    "threshold": 0.5,
}


DEEP = json.loads("[" * 40 + '"deep"' + "]" * 40)  # 41 levels with its section


def write_fake(payload: bytes = b"model bytes"):
    """A writer for store-level tests, where the model file's content does not matter."""

    def write(folder: Path) -> dict:
        (folder / MODEL_FILE).write_bytes(payload)
        (folder / "history.json").write_text("{}")
        return dict(FIELDS)

    return write


def test_publish_numbers_versions_and_records_checksums(tmp_path):
    store = ModelStore(tmp_path)
    first = store.publish("pets", write_fake(b"one"))
    second = store.publish("pets", write_fake(b"two"))
    assert (first.version, second.version) == (1, 2)
    assert store.versions("pets") == [1, 2]
    meta = json.loads((tmp_path / "pets" / "2" / METADATA_FILE).read_text())
    assert meta["name"] == "pets" and meta["version"] == 2
    assert set(meta["files"]) == {MODEL_FILE, "history.json"}
    assert meta["created_at"].endswith("+00:00")
    assert store.check("pets", 2).files == meta["files"]
    assert not [p for p in (tmp_path / "pets").iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_failed_publish_leaves_nothing_behind(tmp_path):
    store = ModelStore(tmp_path)

    def broken(folder: Path) -> dict:
        (folder / MODEL_FILE).write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.publish("pets", broken)
    assert list((tmp_path / "pets").iterdir()) == []


def test_a_folder_fsync_that_fails_after_the_rename_publishes_nothing(tmp_path, monkeypatch):
    """The version is renamed into models/<name>/ before that folder is fsynced: when that
    fsync fails (EIO), the publish raises and the version is taken back (before: it stayed,
    and the service swapped in a version whose publish had failed; a rerun published it
    again under the next number)."""
    import errno

    import classifier.store

    store = ModelStore(tmp_path)
    store.publish("pets", write_fake(b"one"))
    fsync = classifier.store.fsync

    def broken(path):
        if Path(path) == tmp_path / "pets":
            raise OSError(errno.EIO, "Input/output error")
        fsync(path)

    monkeypatch.setattr(classifier.store, "fsync", broken)
    with pytest.raises(OSError, match="Input/output error"):
        store.publish("pets", write_fake(b"two"))
    assert sorted(p.name for p in (tmp_path / "pets").iterdir()) == [".last-version", "1"]
    monkeypatch.setattr(classifier.store, "fsync", fsync)
    assert store.publish("pets", write_fake(b"two")).version == 2


def test_publish_refuses_metadata_that_could_not_load(tmp_path):
    def bad(folder: Path) -> dict:
        (folder / MODEL_FILE).write_bytes(b"x")
        return {**FIELDS, "class_names": ["only-one"]}

    with pytest.raises(ModelStoreError, match="class_names"):
        ModelStore(tmp_path).publish("pets", bad)
    assert ModelStore(tmp_path).versions("pets") == []


def test_a_number_is_never_published_twice(tmp_path):
    """Deleting the newest version's folder does not free its number: a version number names
    one model in every log line, metric and feedback record."""
    store = ModelStore(tmp_path)
    store.publish("pets", write_fake(b"one"))
    store.publish("pets", write_fake(b"two"))
    for folder in (tmp_path / "pets" / "2", tmp_path / "pets" / "1"):
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    assert store.publish("pets", write_fake(b"three")).version == 3
    assert store.last_published("pets") == 3
    (tmp_path / "pets" / ".last-version").write_text("not a number")
    assert store.publish("pets", write_fake(b"four")).version == 4  # the folders still count


def test_checking_a_store_leaves_what_was_there(tmp_path):
    """check_publishable removes only the folders it made, on the path as it resolves."""
    (tmp_path / "models" / "pets").mkdir(parents=True)
    ModelStore(tmp_path / "nowhere" / ".." / "models").check_publishable("pets")
    assert (tmp_path / "models" / "pets").is_dir() and not (tmp_path / "nowhere").exists()
    ModelStore(tmp_path / "new" / "models").check_publishable("cats")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_publish_skips_a_number_taken_meanwhile(tmp_path):
    store = ModelStore(tmp_path)
    store.publish("pets", write_fake())

    def racing(folder: Path) -> dict:
        (tmp_path / "pets" / "2").mkdir()
        (tmp_path / "pets" / "2" / "other").write_text("another publisher")
        return write_fake()(folder)

    assert store.publish("pets", racing).version == 3


@pytest.mark.parametrize("entry", ["file", "link to a file", "dangling link"])
def test_publish_passes_over_a_number_taken_by_something_not_a_folder(tmp_path, entry):
    """A stray file or link named as the next number: the publish takes the number after it
    (before: the rename onto it failed forever, a publish that never returned, or each
    publish failed with NotADirectoryError)."""
    store = ModelStore(tmp_path)
    store.publish("pets", write_fake())
    stray = tmp_path / "pets" / "2"
    if entry == "file":
        stray.write_text("not a version")
    else:
        target = tmp_path / ("elsewhere" if entry == "dangling link" else "a-file")
        if entry == "link to a file":
            target.write_text("x")
        stray.symlink_to(target)
    done = {}
    publisher = threading.Thread(
        target=lambda: done.setdefault("version", store.publish("pets", write_fake()).version),
        daemon=True,
    )
    publisher.start()
    publisher.join(10)
    assert done == {"version": 3}
    assert store.versions("pets") == [1, 3]


def test_half_written_folder_is_never_chosen(tmp_path):
    store = ModelStore(tmp_path)
    store.publish("pets", write_fake())
    half = tmp_path / "pets" / "2"
    half.mkdir()
    (half / MODEL_FILE).write_bytes(b"partial")
    statuses = store.scan("pets")
    assert [(s.version, s.valid) for s in statuses] == [(1, True), (2, False)]
    assert "no metadata.json" in statuses[1].error
    assert store.latest_valid("pets").version == 1


def test_checksum_mismatch_is_refused(tmp_path):
    store = ModelStore(tmp_path)
    store.publish("pets", write_fake())
    store.publish("pets", write_fake())
    (tmp_path / "pets" / "2" / MODEL_FILE).write_bytes(b"tampered")
    with pytest.raises(ModelStoreError) as info:
        store.check("pets", 2)
    assert info.value.code == "checksum_mismatch"
    assert store.latest_valid("pets").version == 1


def test_missing_listed_file_and_bad_json(tmp_path):
    store = ModelStore(tmp_path)
    store.publish("pets", write_fake())
    store.publish("pets", write_fake())
    os.remove(tmp_path / "pets" / "1" / "history.json")
    (tmp_path / "pets" / "2" / METADATA_FILE).write_text("{not json")
    codes = {}
    for version in (1, 2):
        with pytest.raises(ModelStoreError) as info:
            store.check("pets", version)
        codes[version] = info.value.code
    assert codes == {1: "incomplete_version", 2: "invalid_metadata"}
    assert store.latest_valid("pets") is None


def write_with_onnx(folder: Path) -> dict:
    write_fake()(folder)
    (folder / ONNX_FILE).write_bytes(b"onnx bytes")
    return dict(FIELDS)


def test_a_copy_without_its_keras_file_is_valid_where_it_has_its_onnx_file(tmp_path):
    """The serving image's copy: model.keras left out, every other file there and intact."""
    store = ModelStore(tmp_path)
    store.publish("pets", write_with_onnx)
    store.publish("pets", write_fake())  # no export: its Keras file is its only model
    for version in (1, 2):
        os.remove(tmp_path / "pets" / str(version) / MODEL_FILE)
    assert store.check("pets", 1).files.keys() >= {MODEL_FILE, ONNX_FILE}
    with pytest.raises(ModelStoreError, match=f"{MODEL_FILE} is missing") as info:
        store.check("pets", 2)
    assert info.value.code == "incomplete_version"
    assert store.latest_valid("pets").version == 1


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({MODEL_FILE: b"tampered"}, "checksum_mismatch"),  # a Keras file there is checked
        ({ONNX_FILE: b"tampered"}, "checksum_mismatch"),
        ({ONNX_FILE: None}, "incomplete_version"),  # the ONNX file itself may not be left out
        ({"history.json": None}, "incomplete_version"),  # nor any other file
    ],
)
def test_a_copy_without_its_keras_file_still_refuses_damage(tmp_path, change, code):
    store = ModelStore(tmp_path)
    store.publish("pets", write_with_onnx)
    folder = tmp_path / "pets" / "1"
    os.remove(folder / MODEL_FILE)
    for name, content in change.items():
        if content is None:
            os.remove(folder / name)
        else:
            (folder / name).write_bytes(content)
    with pytest.raises(ModelStoreError) as info:
        store.check("pets", 1)
    assert info.value.code == code
    assert store.latest_valid("pets") is None


def test_metadata_must_match_its_folder(tmp_path):
    store = ModelStore(tmp_path)
    store.publish("pets", write_fake())
    os.rename(tmp_path / "pets" / "1", tmp_path / "pets" / "7")
    with pytest.raises(ModelStoreError, match="metadata names pets v1"):
        store.check("pets", 7)


def test_non_version_folders_are_ignored(tmp_path):
    store = ModelStore(tmp_path)
    for junk in ("0", "01", "latest", ".publishing-abc", "-1"):
        (tmp_path / "pets" / junk).mkdir(parents=True)
    assert store.versions("pets") == []
    assert store.model_names() == ["pets"]


def test_version_numbers_past_nine_digits_are_versions(tmp_path):
    """TensorFlow Serving's exports are numbered by the time (`1710000000`), and a publish
    after 999999999 takes 1000000000: both are versions of the store (before: the folder was
    ignored without a word; the publish said v1000000000 and nothing ever served it)."""
    store = ModelStore(tmp_path)
    store.publish("pets", write_fake())
    os.rename(tmp_path / "pets" / "1", tmp_path / "pets" / "1710000000")
    meta = tmp_path / "pets" / "1710000000" / METADATA_FILE
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "version": 1710000000}))
    assert store.versions("pets") == [1710000000]
    assert store.latest_valid("pets").version == 1710000000
    assert store.publish("pets", write_fake()).version == 1710000001
    (tmp_path / "pets" / ".last-version").write_text("999999999999999\n")
    with pytest.raises(ModelStoreError, match="no version number left"):
        store.publish("pets", write_fake())
    assert store.versions("pets") == [1710000000, 1710000001]


@pytest.mark.parametrize("name", ["", "../etc", "a/b", ".hidden", "x" * 65, "sp ace"])
def test_model_names_cannot_be_paths(name):
    with pytest.raises(ModelStoreError) as info:
        validate_name(name)
    assert info.value.code == "invalid_model_name"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 0}, "version"),
        ({"threshold": 1.5}, "threshold"),
        ({"files": {}}, "files"),
        ({"input": {"height": 0, "width": 3}}, "input"),
        ({"input": {"height": 8.0, "width": 8}}, "input.*whole numbers"),
        ({"input": {"height": True, "width": 8}}, "input.*whole numbers"),
        ({"training": {"notes": DEEP}}, "nested deeper than 32"),
        ({"class_names": ["a", "a"]}, "class_names"),
    ],
)
def test_metadata_validation(change, message):
    data = {
        **FIELDS,
        "name": "pets",
        "version": 1,
        "files": {MODEL_FILE: "0" * 64},
        **change,
    }
    with pytest.raises(ModelStoreError, match=message):
        ModelMetadata.from_dict(data)


def test_load_gives_a_predictor_that_knows_its_metadata(tmp_path):
    publish_model(tmp_path, "pets", image_size=64, class_names=("cat", "dog"))
    predictor = load_predictor(ModelStore(tmp_path), "pets")
    assert (predictor.name, predictor.version) == ("pets", 1)
    assert predictor.spec.shape == (64, 64, 3)
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    probs = predictor.predict_proba(images)
    assert probs.shape == (3,) and ((probs >= 0) & (probs <= 1)).all()
    assert predictor.predict(images)[:, 1] == pytest.approx(probs)
    predictions = predictor.to_predictions(predictor.predict(images))
    for p, prediction in zip(probs, predictions, strict=True):
        assert prediction.probabilities["dog"] == pytest.approx(float(p))
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0)
        assert prediction.label == ("dog" if p >= 0.5 else "cat")


def test_predictor_refuses_wrong_input(tmp_path):
    publish_model(tmp_path, "pets", image_size=64)
    predictor = load_predictor(ModelStore(tmp_path), "pets")
    with pytest.raises(ValueError, match="uint8 or float32"):
        predictor.predict_proba(np.zeros((1, 64, 64, 3), dtype=np.float64))
    floats = predictor.predict_proba(np.full((1, 64, 64, 3), 7, dtype=np.float32))
    assert floats == pytest.approx(predictor.predict_proba(np.full((1, 64, 64, 3), 7, np.uint8)))
    with pytest.raises(ValueError):
        predictor.predict_proba(np.zeros((1, 32, 32, 3), dtype=np.uint8))


def test_load_refuses_a_model_whose_shape_disagrees_with_metadata(tmp_path):
    publish_model(tmp_path, "pets", image_size=64)
    meta_path = tmp_path / "pets" / "1" / METADATA_FILE
    meta = json.loads(meta_path.read_text())
    meta["input"]["height"] = meta["input"]["width"] = 80
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelStoreError) as info:
        load_predictor(ModelStore(tmp_path), "pets", 1)
    assert info.value.code == "model_shape_mismatch"


def test_unknown_model_is_model_not_found(tmp_path):
    with pytest.raises(ModelStoreError) as info:
        load_predictor(ModelStore(tmp_path), "nothing")
    assert info.value.code == "model_not_found"


# -- amending a published version's metadata --------------------------------------------------

REFERENCE = {
    "of": "validation",
    "count": 4,
    "class_mix": {"cats": 0.5, "dogs": 0.5},
    "confidence": {"edges": [0.5, 0.75, 1.0], "fractions": [0.25, 0.75]},
}


def test_amend_adds_a_drift_reference_and_changes_no_file(tmp_path):
    store = ModelStore(tmp_path)
    store.publish("pets", write_fake())
    folder = tmp_path / "pets" / "1"
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != METADATA_FILE}
    old = json.loads((folder / METADATA_FILE).read_text())
    amended = store.amend("pets", 1, {"drift_reference": REFERENCE})
    assert amended.drift_reference.class_mix == {"cats": 0.5, "dogs": 0.5}
    assert store.check("pets", 1).drift_reference == amended.drift_reference
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != METADATA_FILE} == before
    new = json.loads((folder / METADATA_FILE).read_text())
    assert {k: v for k, v in new.items() if k != "drift_reference"} == old
    assert sorted(p.name for p in folder.iterdir()) == sorted([*before, METADATA_FILE])


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"class_names": ["a", "b"]}, "cannot change after publishing"),
        ({"files": {}}, "cannot change after publishing"),
        ({"drift_reference": {**REFERENCE, "class_mix": {"a": 0.5, "b": 0.5}}}, "class_mix"),
        ({"drift_reference": {**REFERENCE, "count": 0}}, "drift_reference.count"),
    ],
)
def test_amend_refuses_other_sections_and_a_reference_that_does_not_fit(
    tmp_path, sections, message
):
    store = ModelStore(tmp_path)
    store.publish("pets", write_fake())
    text = (tmp_path / "pets" / "1" / METADATA_FILE).read_text()
    with pytest.raises(ModelStoreError, match=message):
        store.amend("pets", 1, sections)
    assert (tmp_path / "pets" / "1" / METADATA_FILE).read_text() == text


def test_amend_refuses_a_version_whose_files_do_not_match(tmp_path):
    store = ModelStore(tmp_path)
    store.publish("pets", write_fake())
    (tmp_path / "pets" / "1" / MODEL_FILE).write_bytes(b"tampered")
    with pytest.raises(ModelStoreError, match="checksum"):
        store.amend("pets", 1, {"drift_reference": REFERENCE})


def test_a_dangling_link_in_a_version_does_not_hide_its_changes(tmp_path):
    """Before: one link to nothing in the folder made its fingerprint () whatever changed, so
    a loader never noticed a repaired or replaced file there."""
    store = ModelStore(tmp_path)
    store.publish("pets", write_fake(b"one"))
    folder = tmp_path / "pets" / "1"
    (folder / "notes.txt").symlink_to(tmp_path / "nowhere")
    before = store.fingerprint("pets", 1)
    assert "notes.txt" in [entry[0] for entry in before]
    os.utime(folder / MODEL_FILE, ns=(1, 1))
    assert store.fingerprint("pets", 1) != before
