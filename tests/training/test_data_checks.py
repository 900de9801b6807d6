"""Data a model cannot be trained on is refused with one clear line before anything trains,
and a model's name comes from --model-name or its data folder, never a default of its own."""

import shutil
from pathlib import Path

import pytest

from tests.training.multiclass import make_three_class_dataset
from training import train as train_module
from training.config import TrainConfig, derived_model_name
from training.options import OptionError


@pytest.fixture
def data(tmp_path) -> Path:
    return make_three_class_dataset(tmp_path / "colours", per_class=2, val_per_class=1)


@pytest.fixture
def nothing_trains(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was built from data that should have been refused")

    monkeypatch.setattr(train_module, "build_model", refuse)


def refused(data: Path, capsys, *extra: str) -> str:
    """Run the training command line on `data`; it must exit 2, write nothing, and say why
    in one line."""
    models = data.parent / "models"
    code = train_module.main(["--data-dir", str(data), "--models-dir", str(models), *extra])
    assert code == 2
    assert not models.exists()
    [line] = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert line.startswith("error: ")
    return line


def test_one_class_is_refused(data, capsys, nothing_trains):
    for name in ("green", "rouge été"):
        shutil.rmtree(data / "train" / name)
    message = refused(data, capsys)
    assert "train must hold at least two class folders (one per class); found 1" in message


def test_an_empty_class_folder_is_refused(data, capsys, nothing_trains):
    for path in (data / "train" / "green").iterdir():
        path.unlink()
    (data / "train" / "green" / ".DS_Store").write_bytes(b"hidden files are not images")
    assert "train has empty class folders: ['green']" in refused(data, capsys)


def test_a_class_folder_with_no_readable_image_is_refused(data, capsys, nothing_trains):
    for path in (data / "train" / "blue sky").iterdir():
        path.write_bytes(b"not an image")
    message = refused(data, capsys)
    assert f"no readable image in {data / 'train' / 'blue sky'} (2 files skipped" in message


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        (lambda v: (v / "green").rename(v / "greenish"), "missing ['green']; not in train: ['greenish']"),
        (lambda v: shutil.rmtree(v / "green"), "(missing ['green'])"),
        (lambda v: shutil.copytree(v / "green", v / "violet"), "(not in train: ['violet'])"),
    ],
)  # fmt: skip
def test_validation_classes_other_than_train_are_refused(
    data, capsys, nothing_trains, change, difference
):
    change(data / "validation")
    message = refused(data, capsys)
    assert f"{data / 'validation'} has classes [" in message
    assert "train has ['blue sky', 'green', 'rouge été']" in message and difference in message


def test_a_threshold_with_more_than_two_classes_is_refused(data, capsys, nothing_trains):
    message = refused(data, capsys, "--threshold", "0.7")
    assert "--threshold is for two classes" in message and "has 3" in message


@pytest.mark.parametrize(
    ("folder", "name"),
    [
        ("cats_vs_dogs", "cats_vs_dogs"),
        ("cat_breeds", "cat_breeds"),
        ("my photos", "my_photos"),
        ("Chats été (2024)", "Chats_ete_2024"),
        (".hidden-set", "hidden-set"),
        ("v1.2", "v1.2"),
        ("x" * 80, "x" * 64),
    ],
)
def test_the_model_name_is_derived_from_the_data_folder(tmp_path, folder, name):
    assert derived_model_name(tmp_path / folder) == name
    assert TrainConfig(data_dir=tmp_path / folder).model_name == name
    assert TrainConfig(data_dir=tmp_path / folder / "..." / "..").model_name == name


def test_a_given_model_name_wins_and_the_shipped_name_is_never_a_default(tmp_path):
    assert TrainConfig(data_dir=tmp_path / "cat_breeds").model_name == "cat_breeds"
    given = TrainConfig(data_dir=tmp_path / "cat_breeds", model_name="breeds")
    assert given.model_name == "breeds"
    assert TrainConfig(data_dir=Path("../shared/data/cats_vs_dogs")).model_name == "cats_vs_dogs"


def test_a_folder_name_that_gives_no_model_name_is_refused(tmp_path, capsys):
    folder = tmp_path / "日本の猫"
    with pytest.raises(OptionError, match="--model-name is needed"):
        TrainConfig(data_dir=folder)
    assert TrainConfig(data_dir=folder, model_name="neko").model_name == "neko"
    with pytest.raises(SystemExit) as info:
        train_module.main(["--data-dir", str(folder)])
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("python -m training.train: error: argument --model-name: is needed")
    assert "'日本の猫' gives no model name" in last


@pytest.mark.parametrize("bad", ["../x", "a/b", "-x", "", "x" * 65])
def test_an_invalid_model_name_is_refused_before_training(tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as info:
        train_module.main(["--data-dir", str(tmp_path), f"--model-name={bad}"])
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument --model-name: {bad!r} is not a model name" in last
