"""What every training command line shares: its exit statuses and how it reports a failure."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from enum import IntEnum
from typing import ParamSpec

from classifier.errors import ClassifierError

P = ParamSpec("P")


class Exit(IntEnum):
    """The training commands' exit statuses; their --help lists them from here."""

    OK = 0
    USAGE = 2  # argparse's status for a bad command line; a bad data folder or store is alike
    NOT_PROMOTED = 3  # training.retrain only
    FILES = 4


EXIT_MEANINGS = {
    Exit.OK: "done",
    Exit.USAGE: "a bad option, data folder or model store",
    Exit.NOT_PROMOTED: "(retrain) the challenger was not published",
    Exit.FILES: "a file or folder could not be read or written",
}

ERROR = Exit.USAGE


def epilog(*statuses: Exit) -> str:
    """--help's last paragraph: the exit statuses a command can end with."""
    listed = "; ".join(f"{int(s)} {EXIT_MEANINGS[s]}" for s in statuses)
    return f"Exit status: {listed}. A failure prints one line, `error: ...`, on stderr."


EPILOG = epilog(Exit.OK, Exit.USAGE, Exit.FILES)


def describe(exc: OSError) -> str:
    """An OSError as one line: what went wrong and on which path."""
    what = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{what}: {' -> '.join(paths)}" if paths else what


def reports_errors(main: Callable[P, int]) -> Callable[P, int]:
    """`main`, with a ClassifierError printed as one `error: <message>` line and exit status 2,
    and an OSError (a folder that cannot be read, a store that cannot be written) as one line
    and exit status 4: never a traceback."""

    @functools.wraps(main)
    def run(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except ClassifierError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return Exit.USAGE
        except OSError as exc:
            print(f"error: {describe(exc)}", file=sys.stderr)
            return Exit.FILES

    return run
