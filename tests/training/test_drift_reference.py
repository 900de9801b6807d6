"""python -m training.drift_reference: a version published without a drift reference gets one,
computed from its validation photos as it is served, with none of its files changed."""

import json

import pytest

from classifier.metadata import METADATA_FILE
from classifier.store import ModelStore
from tests.helpers import make_dataset, publish_model
from training import drift_reference
from training import train as train_module
from training.config import TrainConfig


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A version trained by this code: it has a data manifest and a reference already."""
    data = make_dataset(tmp_path_factory.mktemp("data"), per_class=6, val_per_class=4)
    models = tmp_path_factory.mktemp("models")
    config = TrainConfig(
        data_dir=data, models_dir=models, model_name="toy", epochs=1, batch_size=8, image_size=48
    )
    train_module.train(config)
    return data, models


def run(capsys, *argv: str) -> tuple[int, str]:
    code = drift_reference.main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_an_old_version_gets_a_reference_and_keeps_its_files(tmp_path, capsys):
    models = tmp_path / "models"
    publish_model(models, "pets")  # as v1-v3 were published: no reference
    data = make_dataset(tmp_path / "data", per_class=1, val_per_class=5)
    folder = models / "pets" / "1"
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != METADATA_FILE}
    code, out = run(capsys, "--data-dir", str(data), "--models-dir", str(models),
                    "--model-name", "pets")  # fmt: skip
    assert code == 0, out
    assert "pets v1 from 10 validation photos" in out
    metadata = ModelStore(models).check("pets", 1)  # still valid, checksums and all
    reference = metadata.drift_reference
    assert reference.count == 10 and reference.recorded_by == drift_reference.RECORDED_BY
    assert sum(reference.class_mix.values()) == pytest.approx(1)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != METADATA_FILE} == files
    code, out = run(capsys, "--data-dir", str(data), "--models-dir", str(models),
                    "--model-name", "pets")  # fmt: skip
    assert code == 2 and "already has a drift reference" in out


def test_recomputing_agrees_with_training_and_other_photos_are_refused(trained, capsys):
    data, models = trained
    recorded = ModelStore(models).check("toy", 1).drift_reference
    assert recorded.recorded_by == "training"
    common = ["--models-dir", str(models), "--model-name", "toy", "--replace"]
    code, out = run(capsys, "--data-dir", str(data / "train"), *common)
    assert code == 2 and "not among the 8 validation photos" in out  # the data manifest
    assert ModelStore(models).check("toy", 1).drift_reference == recorded
    code, out = run(capsys, "--data-dir", str(data), *common)
    assert code == 0, out
    again = json.loads((models / "toy" / "1" / METADATA_FILE).read_text())["drift_reference"]
    assert again["class_mix"] == dict(recorded.class_mix) and again["count"] == 8
    assert again["confidence"]["fractions"] == pytest.approx(
        list(recorded.confidence.fractions), abs=1 / 8 + 1e-9
    )
