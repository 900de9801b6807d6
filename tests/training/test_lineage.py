"""Lineage: every version lists the photos it was trained and validated on, and is never
scored on photos it was trained on."""

import hashlib
import json
from pathlib import Path

import pytest

from classifier.store import ModelStore
from tests.helpers import make_dataset
from training import evaluate, model_card
from training import train as train_module
from training.config import TrainConfig
from training.lineage import MANIFEST_FILE, read_manifest


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, Path]:
    data = make_dataset(tmp_path_factory.mktemp("data"), per_class=6, val_per_class=3)
    models = tmp_path_factory.mktemp("models")
    config = TrainConfig(
        data_dir=data, models_dir=models, model_name="toy", epochs=1, batch_size=8, image_size=48
    )
    train_module.train(config)
    return data, models


def test_the_manifest_lists_every_photo_with_its_class_and_sha256(published):
    data, models = published
    folder = models / "toy" / "1"
    rows = read_manifest(folder)
    assert len(rows) == 12 + 6
    for row in rows:
        assert row["source"] == data.name
        assert row["path"].split("/")[:2] == [row["split"], row["class"]]
        assert row["sha256"] == hashlib.sha256((data / row["path"]).read_bytes()).hexdigest()
    metadata = ModelStore(models).check("toy", 1)
    record = metadata.training["data_manifest"]
    assert record["sha256"] == metadata.files[MANIFEST_FILE]
    assert record["sha256"] == hashlib.sha256((folder / MANIFEST_FILE).read_bytes()).hexdigest()
    assert record["counts"] == {
        "train": {data.name: {"cats": 6, "dogs": 6}},
        "validation": {data.name: {"cats": 3, "dogs": 3}},
    }


def test_evaluate_refuses_photos_the_version_was_trained_on(published, tmp_path, capsys):
    data, models = published
    common = ["--models-dir", str(models), "--model-name", "toy", "--output", str(tmp_path)]
    assert evaluate.main(["--data-dir", str(data / "train"), *common]) == 2
    err = capsys.readouterr().err
    assert "12 of the 12 photos" in err and "training data of model toy v1" in err
    assert not (tmp_path / "report.json").exists()
    assert evaluate.main(["--data-dir", str(data), *common]) == 0  # its validation split


def test_a_copy_under_another_name_is_still_refused(published, tmp_path, capsys):
    """Photos are known by their bytes, not their names."""
    data, models = published
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
    source = data / "train" / "dogs" / "dogs.0.jpg"
    (tmp_path / "dogs" / "renamed.jpg").write_bytes(source.read_bytes())
    for name, photo in (("cats", "cats.0.jpg"), ("dogs", "dogs.0.jpg")):
        (tmp_path / name / "new.jpg").write_bytes((data / "validation" / name / photo).read_bytes())
    argv = ["--data-dir", str(tmp_path), "--models-dir", str(models), "--model-name", "toy"]
    assert evaluate.main(argv) == 2
    assert "1 of the 3 photos" in capsys.readouterr().err


def test_the_model_card_shows_counts_per_class_and_source(published, tmp_path, capsys):
    data, models = published
    argv = [
        "--data-dir", str(data), "--models-dir", str(models), "--model-name", "toy",
        "--output", str(tmp_path),
    ]  # fmt: skip
    assert model_card.main(argv) == 0
    out = capsys.readouterr().out
    assert f"| train | {data.name} | cats | 6 |" in out
    assert f"| validation | {data.name} | dogs | 3 |" in out
    assert "Temperature scaling: T = " in out


def test_extra_data_trains_with_feedback_and_the_manifest_and_report_say_so(
    published, tmp_path, capsys
):
    """`retrain --extra-data FOLDER` (labelled feedback: some classes only) adds its photos to
    training, never to validation; the manifest lists them with their source, the report
    counts them per class."""
    from training import retrain

    data, models = published
    feedback = tmp_path / "feedback" / "toy"
    (feedback / "dogs").mkdir(parents=True)
    for i, photo in enumerate(sorted((data / "train" / "dogs").iterdir())[:2]):
        # other bytes than the training photos: a re-encoded copy, as a user's upload is
        (feedback / "dogs" / f"{i}.png").write_bytes(reencode(photo.read_bytes()))
    (feedback / "feedback.jsonl").write_text("{}\n")  # files beside the class folders: ignored
    argv = [
        "--data-dir", str(data), "--models-dir", str(models), "--model-name", "toy",
        "--epochs", "1", "--batch-size", "8", "--image-size", "48", "--force",
        "--extra-data", str(feedback),
    ]  # fmt: skip
    assert retrain.main(argv) == 0
    out = capsys.readouterr().out
    assert "training photos from feedback/toy: dogs 2" in out
    assert f"training photos from {data.name}: cats 6, dogs 6" in out
    folder = models / "toy" / "2"
    extra = [r for r in read_manifest(folder) if r["source"] == "feedback/toy"]
    assert [(r["split"], r["class"], r["path"]) for r in extra] == [
        ("train", "dogs", "dogs/0.png"),
        ("train", "dogs", "dogs/1.png"),
    ]
    counts = ModelStore(models).check("toy", 2).training["data_manifest"]["counts"]
    assert counts["train"]["feedback/toy"] == {"dogs": 2}
    assert counts["validation"] == {data.name: {"cats": 3, "dogs": 3}}
    report = json.loads((folder / "report.json").read_text())
    assert report["training_photos"]["feedback/toy"] == {"dogs": 2}
    assert "Training photos of the challenger, by source" in (folder / "report.html").read_text()


def test_extra_data_with_a_class_the_model_lacks_is_refused_before_training(
    published, tmp_path, capsys
):
    data, models = published
    (tmp_path / "extra" / "birds").mkdir(parents=True)
    (tmp_path / "extra" / "birds" / "a.jpg").write_bytes(
        (data / "train" / "cats" / "cats.0.jpg").read_bytes()
    )
    argv = [
        "--data-dir", str(data), "--models-dir", str(models), "--model-name", "toy",
        "--epochs", "1", "--extra-data", str(tmp_path / "extra"),
    ]  # fmt: skip
    assert train_module.main(argv) == 2
    err = capsys.readouterr().err
    assert "['birds'] that are not among the model's classes ['cats', 'dogs']" in err


def test_extra_data_leaves_out_held_out_photos_and_an_empty_folder_adds_nothing(
    published, tmp_path, capsys
):
    """Feedback on a validation photo (the same bytes) never reaches training, where the gate
    would judge the challenger on a photo it has seen; a feedback folder with no photo yet (a
    weekly retrain before any feedback), or none yet, adds nothing instead of stopping the
    run."""
    data, _ = published
    feedback, empty = tmp_path / "feedback" / "toy", tmp_path / "empty" / "toy"
    missing = tmp_path / "not-yet" / "toy"
    (feedback / "dogs").mkdir(parents=True)
    (empty / "cats").mkdir(parents=True)
    validation = sorted((data / "validation" / "dogs").iterdir())[0]
    (feedback / "dogs" / "seen.jpg").write_bytes(validation.read_bytes())
    (feedback / "dogs" / "new.png").write_bytes(
        reencode(sorted((data / "train" / "dogs").iterdir())[0].read_bytes())
    )
    argv = [
        "--data-dir", str(data), "--models-dir", str(tmp_path / "models"), "--model-name", "toy",
        "--epochs", "1", "--batch-size", "8", "--image-size", "48",
        "--extra-data", str(feedback), "--extra-data", str(empty), "--extra-data", str(missing),
    ]  # fmt: skip
    assert train_module.main(argv) == 0
    err = capsys.readouterr().err
    assert f"{feedback}: 1 photos left out, they are held-out photos" in err
    assert f"{empty} holds no photo (yet): nothing added from it" in err
    assert f"{missing} holds no photo (yet): nothing added from it" in err
    rows = read_manifest(tmp_path / "models" / "toy" / "1")
    assert [r["path"] for r in rows if r["source"] == "feedback/toy"] == ["dogs/new.png"]


def reencode(data: bytes) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(data)).save(out, format="PNG")
    return out.getvalue()
