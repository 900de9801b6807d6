"""The serving image's copy of a model store (classifier.serving_copy), on the shipped models."""

import shutil

import pytest

from classifier.errors import ModelStoreError
from classifier.metadata import MODEL_FILE, ONNX_FILE
from classifier.predictor import load_predictor
from classifier.serving_copy import copy_for_serving, main
from classifier.store import ModelStore
from tests.helpers import SHIPPED_MODELS


def test_copies_the_versions_with_an_onnx_file_without_their_keras_files(tmp_path):
    copied = copy_for_serving(SHIPPED_MODELS, tmp_path)
    shipped = ModelStore(SHIPPED_MODELS)
    expected = [
        f"{name}/{s.version}"
        for name in shipped.model_names()
        for s in shipped.scan(name)
        if s.valid and ONNX_FILE in s.metadata.files
    ]
    assert copied == expected and copied
    store = ModelStore(tmp_path)
    for entry in copied:
        name, version = entry.split("/")
        folder = store.model_dir(name) / version
        listed = store.check(name, int(version)).files  # valid, as the store will serve it
        assert {p.name for p in folder.iterdir()} == (listed.keys() - {MODEL_FILE}) | {
            "metadata.json"
        }
    newest = load_predictor(store, "cats_vs_dogs")
    assert newest.runtime.name in ("onnx", "openvino")


def test_refuses_a_store_with_nothing_servable(tmp_path, capsys):
    """A version without its ONNX file (here: one listed but gone) is never copied."""
    shipped = ModelStore(SHIPPED_MODELS)
    newest = shipped.latest_valid("cats_vs_dogs").version
    source = tmp_path / "source" / "cats_vs_dogs" / str(newest)
    shutil.copytree(shipped.model_dir("cats_vs_dogs") / str(newest), source)
    (source / ONNX_FILE).unlink(missing_ok=True)
    with pytest.raises(ModelStoreError, match=f"no valid version with a {ONNX_FILE}"):
        copy_for_serving(tmp_path / "source", tmp_path / "copy")
    assert main([str(tmp_path / "source"), str(tmp_path / "again")]) == 1
    assert ONNX_FILE in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main([])
    assert usage.value.code == 2


def test_the_newest_only_is_what_the_default_policy_serves(tmp_path):
    """The serving image ships the newest servable version of each model."""
    copied = copy_for_serving(SHIPPED_MODELS, tmp_path, versions="newest")
    newest = ModelStore(SHIPPED_MODELS).latest_valid("cats_vs_dogs").version
    assert copied == [f"cats_vs_dogs/{newest}"]
    assert ModelStore(tmp_path).versions("cats_vs_dogs") == [newest]


def test_a_rerun_into_the_same_target_is_one_line(tmp_path, capsys):
    """Before: a FileExistsError traceback."""
    target = tmp_path / "copy"
    assert main(["--versions", "newest", str(SHIPPED_MODELS), str(target)]) == 0
    assert main(["--versions", "newest", str(SHIPPED_MODELS), str(target)]) == 1
    err = capsys.readouterr().err
    assert err.strip().endswith("exists: the copy goes into a new TARGET")
    assert "Traceback" not in err
