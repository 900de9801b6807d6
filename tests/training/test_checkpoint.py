"""Resumable training: a run killed mid-way and resumed ends exactly where an uninterrupted
run does; a resume with other options or data is refused."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from classifier.store import ModelStore
from tests.helpers import make_dataset
from training import train as train_module
from training.checkpoint import RunDir
from training.config import TrainConfig
from training.data import DatasetError

# Augmentation, dropout and a schedule: every piece of state a resume must restore.
OPTIONS = [
    "--model-name", "toy", "--epochs", "5", "--batch-size", "8", "--image-size", "48",
    "--augmentation", "--contrast", "0.2", "--dropout", "0.3", "--optimizer", "adamw",
    "--weight-decay", "0.01", "--schedule", "cosine", "--warmup-epochs", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    # Close colours (noise over a small lift): the loss stays far from zero for 5 epochs,
    # so every step moves the weights.
    return make_dataset(tmp_path_factory.mktemp("data"), per_class=24, lift=30)


def train_command(dataset: Path, models: Path, *more: str) -> list[str]:
    return [
        sys.executable, "-m", "training.train", "--data-dir", str(dataset),
        "--models-dir", str(models), *OPTIONS, *more,
    ]  # fmt: skip


def weights(models: Path) -> list[np.ndarray]:
    return keras.models.load_model(models / "toy" / "1" / "model.keras").get_weights()


def test_a_run_killed_mid_way_and_resumed_ends_as_an_uninterrupted_one(dataset, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run(train_command(dataset, whole), check=True, capture_output=True)

    run = tmp_path / "run"
    process = subprocess.Popen(
        train_command(dataset, cut, "--run-dir", str(run)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while not (run / "epoch-0002").is_dir():
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint came"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (cut / "toy").exists()  # nothing was published

    # Resumed where `auto` resolves to the other precision (AMX or a GPU there, not here, or
    # the reverse): it goes on in the one it began with (before, it switched, and ended
    # elsewhere than the uninterrupted run).
    # (The precision is flipped from what this machine resolves, which is what the run began
    # with: before, the flip was from what `auto` resolves to, and on a host with bfloat16
    # the run, begun in the default float32, "resumed elsewhere" in float32 too.)
    other = (
        "from training import train; import sys; "
        "here = train.resolve_precision; "
        "train.resolve_precision = lambda p: "
        "{'float32': 'mixed_bfloat16', 'mixed_bfloat16': 'float32'}[here(p)]; "
        "sys.exit(train.main(sys.argv[1:]))"
    )
    command = train_command(dataset, cut, "--resume", str(run))
    resumed = subprocess.run(
        [sys.executable, "-c", other, *command[3:]], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming the run in {run}" in resumed.stderr
    assert "this run began in " in resumed.stderr and ": it goes on in " in resumed.stderr
    epochs = [line.split()[1] for line in resumed.stdout.splitlines() if line.startswith("epoch ")]
    assert epochs[0] in ("3/5", "4/5") and epochs[-1] == "5/5"

    assert all(np.array_equal(a, b) for a, b in zip(weights(whole), weights(cut), strict=True))
    history = [json.loads((m / "toy/1/history.json").read_text()) for m in (whole, cut)]
    assert history[0] == history[1]
    assert (run / "run.json").is_file()  # a folder named by --run-dir is kept


def test_progress_shows_epoch_images_per_second_and_time_left(dataset, tmp_path):
    done = subprocess.run(
        train_command(dataset, tmp_path, "--epochs", "2"), capture_output=True, text=True
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    assert all(" images/s, " in line and line.endswith(" left") for line in lines)
    assert lines[-1].endswith("0:00:00 left")
    assert not (tmp_path / ".runs").exists()  # the default run folder goes once published


def test_resuming_with_other_options_is_refused_naming_them(dataset, tmp_path):
    config = TrainConfig(data_dir=dataset, models_dir=tmp_path, model_name="toy", epochs=3)
    run = RunDir.start(tmp_path / "run", train_module.run_identity(config))
    other = {**train_module.run_identity(config), "epochs": 4}
    with pytest.raises(DatasetError, match=r"epochs 3 -> 4"):
        RunDir.resume(run.path, other)
    with pytest.raises(DatasetError, match="already holds a run"):
        RunDir.start(run.path, other)
    with pytest.raises(DatasetError, match="no run to resume"):
        RunDir.resume(tmp_path / "nothing", other)


def test_resuming_on_other_data_is_refused(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--data-dir", str(dataset), "--models-dir", str(tmp_path), "--model-name", "toy"]
    assert (
        train_module.main([*common, "--epochs", "1", "--image-size", "48", "--run-dir", str(run)])
        == 0
    )
    # as if its publish had failed (nothing in the store, no published.json): it may be resumed
    (run / "published.json").unlink()
    shutil.rmtree(tmp_path / "toy" / "1")
    (dataset / "train" / "cats" / "cats.0.jpg").rename(tmp_path / "moved.jpg")
    try:
        code = train_module.main(
            [*common, "--epochs", "1", "--image-size", "48", "--resume", str(run)]
        )
    finally:
        (tmp_path / "moved.jpg").rename(dataset / "train" / "cats" / "cats.0.jpg")
    assert code == 2
    assert "data_sha256" in capsys.readouterr().err


def test_only_the_newest_epoch_is_kept(dataset, tmp_path):
    config = TrainConfig(
        data_dir=dataset, models_dir=tmp_path, model_name="toy", epochs=3, batch_size=8,
        image_size=48, run_dir=tmp_path / "run",
    )  # fmt: skip
    train_module.fit(config)
    assert RunDir(config.run_dir, {}).epochs() == [3]
    assert not [p for p in config.run_dir.iterdir() if p.name.startswith(".")]


def test_a_new_default_run_removes_all_but_the_two_newest_interrupted_ones(dataset, tmp_path):
    """Runs killed and never resumed would fill the store a scheduled retrain writes to."""
    runs = tmp_path / ".runs"
    for name in (
        "toy-20260101T000000Z", "toy-20260102T000000Z", "toy-20260103T000000Z",
        "toy-notes", "other-20250101T000000Z",
    ):  # fmt: skip
        (runs / name).mkdir(parents=True)
    config = TrainConfig(
        data_dir=dataset, models_dir=tmp_path, model_name="toy", epochs=1, batch_size=8,
        image_size=48,
    )  # fmt: skip
    train_module.train(config)
    assert sorted(p.name for p in runs.iterdir()) == [
        "other-20250101T000000Z", "toy-20260102T000000Z", "toy-20260103T000000Z", "toy-notes",
    ]  # fmt: skip


def test_a_finished_run_is_not_resumed_to_publish_again(tmp_path, capsys):
    """A run folder kept with --run-dir records what it published: resuming it (or starting
    in it again) is refused instead of publishing the same model as a new version."""
    data = make_dataset(tmp_path / "data", per_class=4, val_per_class=2)
    models, run = tmp_path / "models", tmp_path / "run"
    common = ["--data-dir", str(data), "--models-dir", str(models), "--model-name", "toy",
              "--epochs", "1", "--batch-size", "8", "--image-size", "48"]  # fmt: skip
    assert train_module.main([*common, "--run-dir", str(run)]) == 0
    assert json.loads((run / "published.json").read_text()) == {"name": "toy", "version": 1}
    capsys.readouterr()
    for flag in ("--resume", "--run-dir"):
        assert train_module.main([*common, flag, str(run)]) == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"error: {flag} {run}: this run is finished, it published toy v1; train again "
            "with a new --run-dir (or none)"
        )
    assert ModelStore(models).versions("toy") == [1]


def test_a_run_whose_published_file_was_not_written_is_found_in_the_store(tmp_path, capsys):
    """published.json can fail to be written after the publish (a full disk: a warning says
    not to resume): the version's metadata holds the run's id, so the resume is refused all
    the same; before, it trained on and published the same model as v2."""
    data = make_dataset(tmp_path / "data", per_class=4, val_per_class=2)
    models, run = tmp_path / "models", tmp_path / "run"
    common = ["--data-dir", str(data), "--models-dir", str(models), "--model-name", "toy",
              "--epochs", "1", "--batch-size", "8", "--image-size", "48"]  # fmt: skip
    assert train_module.main([*common, "--run-dir", str(run)]) == 0
    (run / "published.json").unlink()
    run_id = json.loads((run / "run-id.json").read_text())["id"]
    assert ModelStore(models).check("toy", 1).training["run_id"] == run_id
    capsys.readouterr()
    assert train_module.main([*common, "--resume", str(run)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: --resume {run}: this run is finished, it published toy v1; train again "
        "with a new --run-dir (or none)"
    )
    assert ModelStore(models).versions("toy") == [1]


@pytest.mark.parametrize("text", ["{", "[]", '{"precison": "float32"}', '{"precision": "fp8"}'])
def test_a_damaged_precision_file_is_refused_in_one_line(dataset, tmp_path, text):
    """Before: a traceback (JSONDecodeError, TypeError, KeyError), or "fp8" taken as it was."""
    config = TrainConfig(data_dir=dataset, models_dir=tmp_path, model_name="toy", epochs=3)
    run = RunDir.start(tmp_path / "run", train_module.run_identity(config))
    (run.path / "precision.json").write_text(text)
    with pytest.raises(
        DatasetError, match=r'precision.json: .*; it holds \{"precision": "float32"\}'
    ):
        run.precision("float32")
    (run.path / "precision.json").write_text('{"precision": "mixed_bfloat16"}')
    assert run.precision("float32") == "mixed_bfloat16"
