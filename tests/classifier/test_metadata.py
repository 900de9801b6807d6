"""metadata.json: one typed model; every shipped version still loads and fits its schema."""

import json

import jsonschema
import pytest

from classifier.errors import ModelStoreError
from classifier.metadata import ModelMetadata, json_schema
from classifier.store import ModelStore
from tests.helpers import SHIPPED_MODELS


@pytest.mark.parametrize("version", ModelStore(SHIPPED_MODELS).versions("cats_vs_dogs"))
def test_every_shipped_version_loads_and_fits_the_schema(version):
    path = SHIPPED_MODELS / "cats_vs_dogs" / str(version) / "metadata.json"
    data = json.loads(path.read_text())
    jsonschema.validate(data, json_schema())
    metadata = ModelStore(SHIPPED_MODELS).check("cats_vs_dogs", version)
    assert metadata.raw == data and metadata.class_names == ("cats", "dogs")


def test_versions_before_draft_decoding_decode_at_full_size():
    data = json.loads((SHIPPED_MODELS / "cats_vs_dogs" / "3" / "metadata.json").read_text())
    del data["input"]["jpeg_draft_gap"]
    assert ModelMetadata.from_dict(data).input_spec.jpeg_draft_gap == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"files": {"model.keras": "xyz"}}, "files.model.keras"),
        ({"files": {"model.keras": "0" * 64, "../x": "0" * 64}}, "files"),
        ({"files": {"model.keras": "0" * 64, "x\x00y": "0" * 64}}, "files"),
        ({"threshold": float("nan")}, "threshold"),
        ({"class_names": ["cats"]}, "class_names"),
        ({"class_names": ["cats", ""]}, "class_names.1"),
        # class names are folder names too (training's, feedback's): none may leave its folder
        ({"class_names": ["cats", ".."]}, "class_names': \\['\\.\\.'\\] cannot be folder names"),
        ({"class_names": ["a/b", "dogs"]}, "class_names': \\['a/b'\\] cannot be folder names"),
        ({"class_names": [".hidden", "dogs"]}, "class_names"),
        ({"name": 3}, "name"),
        # before, each was taken: "0.5" and true as numbers, a newer layout as this one, and
        # any activation but sigmoid as softmax
        ({"threshold": "0.5"}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"schema_version": 2}, "schema_version"),
        ({"output": {"activation": "relu"}}, "metadata': output.activation must be one of"),
        ({"output": {"activation": None}}, "metadata': output.activation must be one of"),
    ],
)
def test_a_bad_field_is_named(change, field):
    data = json.loads((SHIPPED_MODELS / "cats_vs_dogs" / "3" / "metadata.json").read_text())
    with pytest.raises(ModelStoreError, match=f"metadata field '{field}") as info:
        ModelMetadata.from_dict({**data, **change})
    assert info.value.code == "invalid_metadata"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"temperature": 0}, "calibration.temperature"),
        ({"temperature": -1.5}, "calibration.temperature"),
        ({"temperature": float("inf")}, "calibration.temperature"),
        ({"temperature": None}, "calibration.temperature"),
        ({"fitted_on": 7}, "calibration.fitted_on"),
        ({"expected_calibration_error": {"before": 0.1}}, "calibration.expected_calibration_error"),
    ],
)
def test_a_calibration_record_that_says_nothing_sound_is_refused(change, field):
    """The model card and retrain report read the temperature and its errors: a version
    whose record lacks them, or holds a temperature no model could be divided by, is not
    published or served."""
    data = json.loads((SHIPPED_MODELS / "cats_vs_dogs" / "4" / "metadata.json").read_text())
    calibration = {**data["calibration"], **change}
    with pytest.raises(ModelStoreError, match=f"metadata field '{field}"):
        ModelMetadata.from_dict({**data, "calibration": calibration})
    del calibration["temperature"]
    with pytest.raises(ModelStoreError, match=r"metadata field 'calibration\.temperature': Field"):
        ModelMetadata.from_dict({**data, "calibration": calibration})
    assert (
        ModelMetadata.from_dict(data).calibration.temperature == data["calibration"]["temperature"]
    )


def test_a_file_name_with_a_nul_makes_its_version_invalid_not_the_scan_fail(tmp_path):
    """Opening such a path raises ValueError: it made scan() (so latest_valid, load_predictor)
    fail for every version, not refuse this one."""
    data = json.loads((SHIPPED_MODELS / "cats_vs_dogs" / "3" / "metadata.json").read_text())
    folder = tmp_path / "cats_vs_dogs" / "3"
    folder.mkdir(parents=True)
    files = {"x\x00y": "0" * 64, **data["files"]}
    (folder / "metadata.json").write_text(json.dumps({**data, "files": files}))
    [status] = ModelStore(tmp_path).scan("cats_vs_dogs")
    assert not status.valid and "names an invalid file" in status.error
