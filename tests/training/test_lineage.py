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


def test_training_photos_that_are_held_out_photos_are_left_out(tmp_path, capsys):
    """The same bytes in train/ and in validation/ or test/ (Kaggle's set has such pairs)
    would calibrate, keep-best and gate a model on photos it has seen."""
    from training import retrain

    data = make_dataset(tmp_path / "data", per_class=6, val_per_class=3)
    validation_cat = data / "validation" / "cats" / "cats.0.jpg"
    (data / "train" / "cats" / "copy.jpg").write_bytes(validation_cat.read_bytes())
    for name in ("cats", "dogs"):
        (data / "test" / name).mkdir(parents=True)
        for photo in sorted((data / "validation" / name).iterdir())[1:]:
            (data / "test" / name / photo.name).write_bytes(photo.read_bytes())
    trained_dog = data / "train" / "dogs" / "dogs.0.jpg"
    (data / "test" / "dogs" / "also-trained.jpg").write_bytes(trained_dog.read_bytes())
    argv = [
        "--data-dir", str(data), "--models-dir", str(tmp_path / "models"), "--model-name", "toy",
        "--epochs", "1", "--batch-size", "8", "--image-size", "48",
    ]  # fmt: skip
    assert retrain.main(argv) == 0
    err = capsys.readouterr().err
    assert f"{data / 'train'}: 2 photos left out, they are held-out photos of data" in err
    rows = read_manifest(tmp_path / "models" / "toy" / "1")
    trained = {r["path"] for r in rows if r["split"] == "train"}
    assert len(trained) == 13 - 2
    assert "train/cats/copy.jpg" not in trained and "train/dogs/dogs.0.jpg" not in trained
    report = json.loads((tmp_path / "models" / "toy" / "1" / "report.json").read_text())
    assert report["models"]["challenger"]["scores"]["count"] == 5  # scored on test/


def test_a_class_with_only_held_out_photos_to_train_on_is_refused(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", per_class=2, val_per_class=2)
    for photo in (data / "train" / "cats").iterdir():
        photo.write_bytes((data / "validation" / "cats" / photo.name).read_bytes())
    argv = ["--data-dir", str(data), "--models-dir", str(tmp_path / "models"), "--epochs", "1"]
    assert train_module.main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        "error: no photo of ['cats'] is left to train on: each is also a held-out photo "
        "(validation or test) of data"
    )


ODD_NAMES = ["tab\there.jpg", "line\nbreak.jpg", "carriage\rreturn.jpg", "back\\t.jpg"]


def test_any_file_name_keeps_its_own_manifest_line(tmp_path, capsys):
    """A tab, a line break, a backslash or bytes that are not UTF-8 in a photo's name: the
    version's manifest still reads back, and evaluate and the model card work on it."""
    import os

    data = make_dataset(tmp_path / "data", per_class=6, val_per_class=3)
    cats = sorted((data / "train" / "cats").iterdir())
    names = [*ODD_NAMES, os.fsdecode(b"not-utf8-\xff.jpg"), "line\u2028separator.jpg"]
    for photo, name in zip(cats, names, strict=True):
        photo.rename(photo.with_name(name))
    models = tmp_path / "models"
    config = TrainConfig(
        data_dir=data, models_dir=models, model_name="toy", epochs=1, batch_size=8, image_size=48
    )
    train_module.train(config)
    rows = read_manifest(models / "toy" / "1")
    assert sorted(r["path"] for r in rows if r["class"] == "cats" and r["split"] == "train") == (
        sorted(f"train/cats/{name}" for name in names)
    )
    for row in rows:
        assert row["sha256"] == hashlib.sha256((data / row["path"]).read_bytes()).hexdigest()
    common = ["--models-dir", str(models), "--model-name", "toy", "--output", str(tmp_path / "o")]
    assert evaluate.main(["--data-dir", str(data), *common]) == 0
    assert model_card.main(["--data-dir", str(data), *common]) == 0
    assert evaluate.main(["--data-dir", str(data / "train"), *common]) == 2
    assert "12 of the 12 photos" in capsys.readouterr().err
