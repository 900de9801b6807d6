"""Options declared once: every CLI's parser is generated from dataclass fields, which check
themselves."""

import argparse
import dataclasses
import math
from pathlib import Path

import pytest

from classifier.store import default_models_dir
from training import evaluate, model_card, retrain
from training import train as train_module
from training.config import TrainConfig
from training.options import (
    FRACTION,
    POSITIVE,
    PROBABILITY,
    OptionError,
    Range,
    add_options,
    check_fields,
    flag,
    new_parser,
    option,
    option_fields,
    options,
    parse,
)
from training.scoring import VersionOptions

# The options and defaults of the command lines before they were generated: README,
# docker-compose and the shipped model's recorded command use them.
TRAIN_DEFAULTS = {
    "--data-dir": None,
    "--models-dir": default_models_dir(),  # the checkout's models/ (was the current directory's)
    "--model-name": None,  # derived from --data-dir (it was cats_vs_dogs: see test_names)
    "--epochs": 30,
    "--batch-size": 32,
    "--learning-rate": 1e-3,
    "--optimizer": "rmsprop",
    "--schedule": "constant",
    "--warmup-epochs": 0,
    "--weight-decay": 0.0,
    "--augmentation": False,
    "--rotation": 0.1,
    "--zoom": 0.2,
    "--translation": 0.1,
    "--contrast": 0.0,
    "--dropout": 0.0,
    "--precision": "float32",
    "--keep-best": False,
    "--seed": 1337,
    "--threshold": 0.5,
    "--image-size": 150,
    "--extra-data": (),
    "--calibrate": True,
    "--run-dir": None,
    "--resume": None,
}


@options
class Example:
    folder: Path = option(help="where")
    count: int = option(3, help="how many", within=Range(1))
    share: float = option(0.5, help="how much", within=FRACTION)
    mode: str = option("a", help="which", choices=("a", "b"))
    loud: bool = option(False, help="say it")
    limit: int | None = option(None, help="at most")
    note: str = dataclasses.field(default="")  # not an option

    def __post_init__(self) -> None:
        check_fields(self)


def example_parser() -> argparse.ArgumentParser:
    return new_parser("example", "An example.\n\nMore.", Example)


def actions(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.option_strings[0]: a for a in p._actions if a.option_strings[0] != "-h"}


def test_each_option_field_becomes_a_typed_option_with_help():
    found = actions(example_parser())
    assert set(found) == {"--folder", "--count", "--share", "--mode", "--loud", "--limit"}
    assert found["--folder"].required and found["--folder"].type is Path
    assert (found["--count"].type, found["--share"].type, found["--limit"].type) == (
        int, float, int
    )  # fmt: skip
    assert found["--mode"].choices == ("a", "b")
    assert isinstance(found["--loud"], argparse.BooleanOptionalAction)
    assert "(default: 3)" in found["--count"].help and "(default" not in found["--limit"].help


def test_parsing_makes_the_dataclass_with_its_defaults():
    given = parse(example_parser(), Example, ["--folder", "x", "--loud", "--limit", "4"])
    assert given == Example(folder=Path("x"), loud=True, limit=4)
    assert parse(example_parser(), Example, ["--folder", "x", "--no-loud"]).loud is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--count", "0"], "argument --count: must be at least 1, got 0"),
        (["--share", "1"], "argument --share: must lie in [0, 1), got 1.0"),
        (["--share", "nan"], "argument --share: must lie in [0, 1), got nan"),
        (["--mode", "c"], "argument --mode: invalid choice: 'c'"),
        ([], "the following arguments are required: --folder"),
    ],
)
def test_a_bad_value_exits_2_with_one_line_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        parse(example_parser(), Example, argv if not argv else ["--folder", "x", *argv])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"example: error: {message}")


def test_the_dataclass_checks_itself_outside_the_command_line_too():
    with pytest.raises(OptionError, match=r"--count must be at least 1") as info:
        Example(folder=Path("x"), count=0)
    assert (info.value.name, isinstance(info.value, ValueError)) == ("count", True)
    with pytest.raises(OptionError, match="must be one of a, b, got 'c'"):
        Example(folder=Path("x"), mode="c")
    with pytest.raises(dataclasses.FrozenInstanceError):
        Example(folder=Path("x")).count = 0  # checked once: it cannot change afterwards


def test_ranges_say_what_they_allow():
    assert (0.0 in FRACTION, 0.99 in FRACTION, 1.0 in FRACTION, -0.1 in FRACTION) == (
        True, True, False, False
    )  # fmt: skip
    assert (0.0 in POSITIVE, 1e-9 in POSITIVE, 1.0 in PROBABILITY) == (False, True, True)
    assert math.nan not in Range(0) and math.nan not in Range(high=1)
    assert FRACTION.describe() == "must lie in [0, 1)"
    assert PROBABILITY.describe() == "must lie in [0, 1]"
    assert POSITIVE.describe() == "must be greater than 0"
    assert Range(high=5, high_open=True).describe() == "must be less than 5"


def test_options_without_a_command_line_conversion_are_refused():
    @options
    class Odd:
        pairs: tuple = option((1, 2), help="no text form")

    with pytest.raises(TypeError, match="no command-line conversion"):
        add_options(argparse.ArgumentParser(), Odd)


def test_training_options_keep_their_names_and_defaults():
    found = {
        flag(f.name): None if f.default is dataclasses.MISSING else f.default
        for f in option_fields(TrainConfig)
    }
    assert found == TRAIN_DEFAULTS
    generated = actions(train_module.parser())
    assert set(generated) == {"--recipe", *TRAIN_DEFAULTS}
    assert all(action.help for action in generated.values())
    assert {f.name for f in dataclasses.fields(TrainConfig)} - {
        f.name for f in option_fields(TrainConfig)
    } == {"command", "started"}  # not options: the command line that ran, and when


def test_every_training_option_is_listed_by_help(capsys):
    with pytest.raises(SystemExit) as info:
        train_module.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for name in ("--recipe", *TRAIN_DEFAULTS):
        assert name in text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "--epochs must be at least 1"),
        ({"batch_size": 0}, "--batch-size must be at least 1"),
        ({"epochs": 3, "warmup_epochs": 3}, "--warmup-epochs must be less than --epochs (3)"),
        ({"warmup_epochs": -1}, "--warmup-epochs must be at least 0"),
        ({"weight_decay": 0.1}, "--weight-decay needs --optimizer adamw"),
        ({"optimizer": "adamw", "weight_decay": -0.1}, "--weight-decay must be at least 0"),
        ({"rotation": 1.0}, "--rotation must lie in [0, 1)"),
        ({"zoom": -0.1}, "--zoom must lie in [0, 1)"),
        ({"translation": 2.0}, "--translation must lie in [0, 1)"),
        ({"contrast": 1.0}, "--contrast must lie in [0, 1)"),
        ({"dropout": 1.0}, "--dropout must lie in [0, 1)"),
        ({"learning_rate": 0.0}, "--learning-rate must be greater than 0"),
        # taken before: every weight became NaN, and the run ended in a traceback
        ({"learning_rate": math.inf}, "--learning-rate must be a finite number, got inf"),
        ({"optimizer": "adamw", "weight_decay": math.inf}, "--weight-decay must be a finite"),
        ({"optimizer": "sgd"}, "--optimizer must be one of rmsprop, adamw"),
        ({"schedule": "step"}, "--schedule must be one of constant, cosine"),
        ({"precision": "float16"}, "--precision must be one of auto, float32, mixed_bfloat16"),
        ({"threshold": 1.5}, "--threshold must lie in [0, 1]"),
        ({"seed": -1}, "--seed must lie in [0, 4294967295], got -1"),
        # NumPy's seeding takes no more: it was a traceback once the photos were decoded
        ({"seed": 2**32}, "--seed must lie in [0, 4294967295], got 4294967296"),
        ({"image_size": 45}, "--image-size must be at least 46"),
    ],
)
def test_train_config_refuses_bad_values(change, message):
    with pytest.raises(OptionError) as info:
        TrainConfig(data_dir=Path("data"), **change)
    assert message in str(info.value)


def test_train_config_accepts_the_edges():
    TrainConfig(
        data_dir=Path("data"), epochs=1, warmup_epochs=0, optimizer="adamw", weight_decay=0.5,
        rotation=0.0, dropout=0.99, threshold=1.0, seed=0, image_size=46,
    )  # fmt: skip
    TrainConfig(data_dir=Path("data"), seed=2**32 - 1)
    TrainConfig(data_dir=Path("data"), epochs=4, warmup_epochs=3, schedule="cosine")


def test_retrain_adds_the_gate_options_to_the_training_ones():
    p = retrain.parser()
    found = actions(p)
    assert {"--tolerance", "--force", "--class-recall-tolerance", *TRAIN_DEFAULTS} <= set(found)
    assert all(action.help for action in found.values())
    argv = ["--data-dir", "data", "--force", "--tolerance", "0.05", "--epochs", "2"]
    args = train_module.parse_args(p, argv)
    assert retrain.build(p, retrain.GateOptions, vars(args)) == retrain.GateOptions(0.05, True)
    assert train_module.config_from(p, args, argv).epochs == 2
    assert retrain.GateOptions() == retrain.GateOptions(
        tolerance=0.01, force=False, class_recall_tolerance=0.05
    )


def test_evaluate_and_model_card_share_one_declaration():
    shared = ["--data-dir", "--models-dir", "--model-name", "--version"]
    for cls in (evaluate.EvaluateOptions, model_card.CardOptions):
        assert issubclass(cls, VersionOptions)
        assert [flag(f.name) for f in option_fields(cls)] == [*shared, "--output"]
    assert evaluate.EvaluateOptions(data_dir=Path("d")).output is None
    assert model_card.CardOptions(data_dir=Path("d")).output is None
    with pytest.raises(OptionError, match="--version must be at least 1"):
        VersionOptions(data_dir=Path("d"), version=0)


def test_every_command_that_reads_a_version_reads_the_services_store_and_model():
    """MODELS_DIR, else the checkout's models/, whatever the current directory; the service's
    default model (training.train derives its name from --data-dir instead)."""
    from classifier.store import DEFAULT_MODEL
    from training.drift_reference import ReferenceOptions

    for cls in (VersionOptions, ReferenceOptions):
        options = cls(data_dir=Path("d"))
        assert options.models_dir == default_models_dir(), cls
        assert options.model_name == DEFAULT_MODEL, cls


@pytest.mark.parametrize("module", [evaluate, model_card])
def test_evaluate_and_model_card_refuse_a_bad_version(module, capsys):
    with pytest.raises(SystemExit) as info:
        module.main(["--data-dir", "d", "--version", "0"])
    assert info.value.code == 2
    assert "argument --version: must be at least 1, got 0" in capsys.readouterr().err
