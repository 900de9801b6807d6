"""What the training command lines share: one error report, one plotting backend."""

import pytest

from classifier.errors import ModelStoreError
from training import evaluate, model_card, retrain
from training import train as train_module
from training.cli import ERROR, reports_errors
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
