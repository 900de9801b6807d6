"""What every training command line shares: how it reports a failure."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec

from classifier.errors import ClassifierError

P = ParamSpec("P")

ERROR = 2  # argparse's exit status for a bad command line; a bad data folder or store is alike


def reports_errors(main: Callable[P, int]) -> Callable[P, int]:
    """`main`, with a ClassifierError printed as one `error: <message>` line and exit status 2."""

    @functools.wraps(main)
    def run(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except ClassifierError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return ERROR

    return run
