"""What the training command lines share: one error report, one plotting backend."""

import pytest

from classifier.errors import ModelStoreError
from tests.helpers import make_dataset, publish_model
from training import evaluate, model_card, retrain
from training import train as train_module
from training.cli import ERROR, Exit, reports_errors
from training.data import DatasetError
from training.plots import pyplot


@reports_errors
def command(error: Exception | None = None, status: int = 0) -> int:
    """A command line that fails with `error`, or ends with `status`."""
    if error is not None:
        raise error
    return status


def test_a_classifier_error_is_one_line_on_stderr_and_exit_2(capsys):
    assert command(DatasetError("no such folder: x")) == ERROR == 2
    assert capsys.readouterr().err == "error: no such folder: x\n"
    assert command(ModelStoreError("bad", code="checksum_mismatch")) == 2
    assert capsys.readouterr().err == "error: bad\n"


def test_a_file_error_is_one_line_naming_the_path_and_exit_4(capsys):
    assert command(PermissionError(13, "Permission denied", "models/toy")) == Exit.FILES == 4
    assert capsys.readouterr().err == "error: Permission denied: models/toy\n"
    assert command(OSError(28, "No space left on device")) == 4
    assert capsys.readouterr().err == "error: No space left on device\n"


def test_a_store_that_cannot_be_written_stops_training_before_any_photo_is_decoded(
    tmp_path, capsys, monkeypatch
):
    """Found at publish, it would have cost the whole training."""
    data = make_dataset(tmp_path / "data", per_class=2, val_per_class=1)
    (tmp_path / "store").write_text("a file, not a folder")

    def decoded(*args, **kwargs):
        raise AssertionError("photos were decoded before the store was checked")

    monkeypatch.setattr(train_module, "load_split", decoded)
    for module in (train_module, retrain):
        code = module.main(["--data-dir", str(data), "--models-dir", str(tmp_path / "store")])
        assert code == Exit.FILES
        err = capsys.readouterr().err
        assert err == f"error: Not a directory: {tmp_path / 'store' / 'data'}\n"


def test_a_report_folder_that_is_a_file_is_one_line_and_exit_4(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", per_class=1, val_per_class=2)
    publish_model(tmp_path / "models")
    (tmp_path / "out").write_text("taken")
    common = ["--data-dir", str(data), "--models-dir", str(tmp_path / "models")]
    for module in (evaluate, model_card):
        code = module.main([*common, "--model-name", "pets", "--output", str(tmp_path / "out")])
        assert code == 4
        err = capsys.readouterr().err
        assert err.splitlines()[-1] == f"error: File exists: {tmp_path / 'out'}"
        assert "Traceback" not in err


@pytest.mark.parametrize("module", [train_module, retrain, evaluate, model_card])
def test_every_cli_lists_its_exit_statuses_in_its_help(module, capsys):
    with pytest.raises(SystemExit):
        module.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0 done; 2 a bad option, data folder or model store;" in text
    assert "4 a file or folder could not be read or written." in text
    assert ("3 (retrain) the challenger was not published" in text) == (module is retrain)


def test_other_outcomes_pass_through(capsys):
    assert command(status=3) == 3
    with pytest.raises(ValueError):
        command(ValueError("a bug is not a user error"))
    with pytest.raises(SystemExit):
        command(SystemExit(2))  # argparse's own refusals keep their exit
    assert capsys.readouterr().err == ""
    assert command.__name__ == "command"  # still itself to --help and tracebacks


@pytest.mark.parametrize("module", [train_module, retrain, evaluate, model_card])
def test_every_cli_reports_errors_the_same_way(module, tmp_path, capsys):
    assert module.main.__wrapped__  # decorated with reports_errors
    code = module.main(["--data-dir", str(tmp_path / "missing"), "--models-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_figures_are_drawn_off_screen():
    assert pyplot().get_backend().lower() == "agg"
