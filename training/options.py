"""Options declared once, as dataclass fields: the command line is generated from them.

A class decorated with `@options` is a frozen dataclass whose fields made with `option(...)`
carry their default, help text, choices and bounds; the type is the field's annotation.
`add_options` turns each into `--field-name` (a bool into `--x/--no-x`), `check_fields`
enforces the declared choices and bounds (the class calls it from `__post_init__`, next to
its cross-field rules), and `build` makes the class from parsed values, refusing a bad one
as argparse refuses any: one line naming the option, exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass(frozen=True)
class Range:
    """Allowed values from `low` to `high`; an end is included unless marked open, None is none."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = self.low is None or value > self.low or (value == self.low and not self.low_open)
        below = (
            self.high is None or value < self.high or (value == self.high and not self.high_open)
        )
        return above and below

    def describe(self) -> str:
        """The rule as an error message says it: `must lie in [0, 1)`, `must be at least 1`."""
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"must lie in {left}{_number(self.low)}, {_number(self.high)}{right}"
        if self.low is not None:
            return f"must be {'greater than' if self.low_open else 'at least'} {_number(self.low)}"
        return f"must be {'less than' if self.high_open else 'at most'} {_number(self.high)}"


def _number(value: float) -> str:
    """A bound as written: 4294967295, not 4.29497e+09; 0.5 as 0.5."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


AT_LEAST_ONE = Range(1)
NOT_NEGATIVE = Range(0)
POSITIVE = Range(0, low_open=True)
FRACTION = Range(0, 1, high_open=True)  # a share that never reaches the whole
PROBABILITY = Range(0, 1)


class OptionError(ValueError):
    """An option's value is out of its bounds or does not fit another option's."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{flag(name)} {message}")
        self.name = name
        self.message = message


def option(
    default: Any = MISSING,
    *,
    help: str,
    choices: tuple | None = None,
    within: Range | None = None,
    recorded: bool = True,
) -> Any:
    """A dataclass field that is also the option `--field-name`; no default makes it required.

    `recorded=False` keeps it out of what a run records about itself (`recorded_options`).
    """
    metadata = {"help": help, "choices": choices, "within": within, "recorded": recorded}
    return dataclasses.field(default=default, metadata=metadata)


@dataclass_transform(frozen_default=True, field_specifiers=(option,))
def options(cls: type[T]) -> type[T]:
    """A frozen dataclass of options: checked once when made, never changed afterwards."""
    return dataclass(frozen=True)(cls)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def option_fields(cls_or_obj) -> list[dataclasses.Field]:
    """The fields that are options (made with `option`), in declaration order."""
    return [f for f in dataclasses.fields(cls_or_obj) if "help" in f.metadata]


def check_fields(obj) -> None:
    """Raise OptionError for the first option outside its declared choices or bounds."""
    for f in option_fields(obj):
        value, choices, within = getattr(obj, f.name), f.metadata["choices"], f.metadata["within"]
        if value is None and f.default is None:
            continue
        if choices is not None and value not in choices:
            raise OptionError(f.name, f"must be one of {', '.join(choices)}, got {value!r}")
        if within is not None and value not in within:
            raise OptionError(f.name, f"{within.describe()}, got {value}")
        if isinstance(value, float) and not math.isfinite(value):  # `inf` passes `at least 0`
            raise OptionError(f.name, f"must be a finite number, got {value}")


def recorded_options(obj) -> dict:
    """The options a run records about itself, by field name."""
    return {f.name: getattr(obj, f.name) for f in option_fields(obj) if f.metadata["recorded"]}


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add `--field-name` for every option of `cls`; only the options given end up parsed."""
    hints = typing.get_type_hints(cls)
    for f in option_fields(cls):
        hint = hints[f.name]
        repeated = typing.get_origin(hint) is tuple
        kind = _plain_type(typing.get_args(hint)[0] if repeated else hint)
        help_text = f.metadata["help"].replace("%", "%%")
        if f.default not in (MISSING, None, ()):
            help_text += f" (default: {f.default})"
        settings: dict[str, Any] = {"help": help_text, "default": argparse.SUPPRESS}
        if kind is bool:
            settings["action"] = argparse.BooleanOptionalAction
        elif repeated:  # `tuple[Path, ...]`: the option may be given several times
            settings["action"] = "append"
            settings["type"] = kind
        else:
            settings["type"] = kind
        if f.metadata["choices"] is not None:
            settings["choices"] = f.metadata["choices"]
        if f.default is MISSING:
            settings["required"] = True
        parser.add_argument(flag(f.name), **settings)


def new_parser(
    prog: str, doc: str, *option_classes: type, epilog: str | None = None
) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of `doc`, with the options of each class."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0], epilog=epilog)
    for cls in option_classes:
        add_options(parser, cls)
    return parser


def parse(parser: argparse.ArgumentParser, cls: type[T], argv: list[str] | None = None) -> T:
    """Parse `argv` (default: sys.argv) into `cls`; a bad command line exits 2."""
    return build(parser, cls, vars(parser.parse_args(argv)))


def build(parser: argparse.ArgumentParser, cls: type[T], values: dict) -> T:
    """`cls` from the values of its options (others are ignored); a refused value exits 2."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in fields}
    try:
        return cls(**given)
    except OptionError as exc:
        parser.error(f"argument {flag(exc.name)}: {exc.message}")


def _plain_type(hint) -> type:
    """`int` for `int | None`; the type argparse converts the text to."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        [hint] = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if hint not in (bool, int, float, str, Path):
        raise TypeError(f"no command-line conversion for {hint!r}")
    return hint
