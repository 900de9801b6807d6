"""`classify-images`: classify files and folders through the service, or with the model here."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from classifier.errors import ClassifierError
from classifier.store import MODELS_DIR_VARIABLE
from client.base import AccessRefused, BadParameter, BaseClient, NotThere
from client.files import find_images
from client.remote import API_KEY_VARIABLE, Client, RetryPolicy, check_url
from client.results import FORMATS, OutputError, Result, Sink, choose_format, file_key, open_output


class Exit(IntEnum):
    """classify-images' exit statuses; --help lists them from here."""

    OK = 0
    SOME_FAILED = 1
    USAGE = 2
    REFUSED = 3
    UNWRITABLE = 4
    INTERRUPTED = 130


EXIT_MEANINGS = {
    Exit.OK: "every image has a prediction",
    Exit.SOME_FAILED: "some images have error records (the others have predictions)",
    Exit.USAGE: "bad usage, an --output that is not a results file, no such model or "
    "version (404, or --local: not in the store), a --top-k beyond the model's classes",
    Exit.REFUSED: "the server refused the API key (401/403): stopped at the first refusal",
    Exit.UNWRITABLE: "--output could not be written (a full disk, say): rerun to go on",
    Exit.INTERRUPTED: "interrupted (Ctrl-C); rerun with the same --output to go on",
}

EPILOG = f"""\
Each image gives one record: file, label, every class's probability, model and version
(CSV: columns file, label, p_<class>..., model, version, error, message; with --top-k,
JSONL records also list the k best classes as "top"); an image that cannot be read or
decoded, or a folder that cannot be listed, gives one error record (file, code, message) and
the run goes on. Records come in the order of the inputs (folders searched in sorted order),
whatever --concurrency.
Rerunning with the same --output skips the files it already holds and appends the rest
(files that failed because the server was busy or unreachable are tried again).

exit status:
{chr(10).join(f"  {int(code):<4}{meaning}" for code, meaning in EXIT_MEANINGS.items())}"""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Every option, with its help (`classify-images --help`)."""
    p = argparse.ArgumentParser(
        prog="classify-images",
        description="Classify image files (folders are searched recursively) with the service\n"
        "or with the model in this process.",
        epilog=EPILOG,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=100),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--url",
        action="append",
        metavar="URL",
        help="a host of the service, e.g. http://127.0.0.1:8000; repeat for several "
        "(requests take turns, a retry goes to the next)",
    )
    source.add_argument(
        "--local", action="store_true", help="load the model in this process, no server"
    )
    p.add_argument(
        "--models-dir",
        type=Path,
        help=f"--local: the model store (default: the service's: ${MODELS_DIR_VARIABLE}, else "
        "the models/ folder of the checkout this command runs from, whatever the current "
        "directory)",
    )
    p.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"the service's API key, sent as Authorization: Bearer KEY (default: "
        f"${API_KEY_VARIABLE}; the environment keeps it out of the process list)",
    )
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra HTTP header for every request (e.g. for a proxy); repeat for several",
    )
    p.add_argument(
        "--top-k",
        type=positive_int,
        metavar="K",
        help="also list each image's K most probable classes, best first (JSONL: top)",
    )
    p.add_argument(
        "--model-name",
        help="the model (default: the server's default model; with --local, the service's "
        "default MODEL_NAME)",
    )
    p.add_argument("--version", type=positive_int, help="a model version (default: the newest)")
    p.add_argument(
        "--concurrency",
        type=positive_int,
        default=4,
        help="threads sending requests (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=1,
        help="images per request (default: %(default)s)",
    )
    p.add_argument("--output", type=Path, help="results file, appended to (default: stdout)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        help="output format (default: from the suffix of --output, .jsonl/.ndjson or .csv; jsonl on stdout)",
    )
    p.add_argument(
        "--tries",
        type=positive_int,
        default=5,
        help="most tries of one request (default: %(default)s); until some request of the run "
        "is answered, those after one that could not connect get one try each",
    )
    p.add_argument(
        "--retry-time",
        type=positive_float,
        default=60.0,
        help="most seconds one request is tried, waits included (default: %(default)s)",
    )
    p.add_argument(
        "--backoff",
        type=positive_float,
        default=0.5,
        help="first wait between tries, then doubled; a 429/503/504's Retry-After "
        "is used instead (default: %(default)s)",
    )
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=30.0,
        help="seconds one try may take, from its start to the end of the answer (one read "
        "in progress may add as much again) (default: %(default)s)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="show a progress bar on stderr (default: when stderr is a terminal)",
    )
    return p


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options, checked together; exits with status 2 (argparse's) when they do not fit."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.format = choose_format(args.output, args.format)
        args.url = [check_url(url) for url in args.url or []]
    except ValueError as exc:
        parser.error(str(exc))
    if args.url and args.version is not None and args.model_name is None:
        parser.error("--version needs --model-name")
    if args.output is not None:
        if args.output.exists() and not args.output.is_file():
            parser.error(f"--output {args.output} is not a regular file (stdout: no --output)")
        if not args.output.absolute().parent.is_dir():
            parser.error(f"--output {args.output}: no folder {args.output.absolute().parent}")
    if args.local and (args.api_key is not None or args.header):
        parser.error("--api-key and --header are for --url (--local sends nothing)")
    try:
        args.header = dict(parse_header(text) for text in args.header)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def parse_header(text: str) -> tuple[str, str]:
    """'Name: value' -> (name, value); ValueError when it is not a header."""
    name, colon, value = text.partition(":")
    if not colon or not name.strip() or any(c in name for c in " \t\r\n"):
        raise ValueError(f"--header {text!r} is not 'Name: value'")
    if "\n" in value or "\r" in value:
        raise ValueError(f"--header {name.strip()!r} has a line break in its value")
    return name.strip(), value.strip()


def make_client(args: argparse.Namespace) -> BaseClient:
    """The HTTP client, or the in-process one (which loads the model now)."""
    common = {
        "concurrency": args.concurrency,
        "batch_size": args.batch_size,
        "top_k": args.top_k,
        "timeout_s": args.timeout,
    }
    if args.local:
        from classifier.store import DEFAULT_MODEL
        from client.local import LocalClient

        name = args.model_name or DEFAULT_MODEL
        return LocalClient(args.models_dir, name, args.version, **common)
    policy = RetryPolicy(tries=args.tries, total_s=args.retry_time, backoff_s=args.backoff)
    return Client(
        args.url,
        args.model_name,
        args.version,
        api_key=args.api_key,
        headers=args.header,
        retry=policy,
        **common,
    )


def run(client: BaseClient, paths: list[Path], sink: Sink, progress: bool) -> list[Result]:
    """Send every file, writing each result as it comes back; returns them all."""
    results: list[Result] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[errors]} failed"),
        TimeRemainingColumn(),
    )
    errors = 0
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("classifying", total=len(paths), errors=0)
        for result in client.iter_predict(paths):
            sink.write(result)
            results.append(result)
            errors += not result.ok
            bar.update(task, advance=1, errors=errors)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """The console script; returns the exit status (Exit: --help lists them)."""
    try:
        args = parse(argv)
    except SystemExit as exc:  # --help (0) or bad usage (2)
        return exc.code if isinstance(exc.code, int) else Exit.USAGE
    if args.output is None and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")  # file names that are not UTF-8
    try:
        sink, done = open_output(args.output, args.format)
    except OutputError as exc:
        print(f"classify-images: error: {exc}", file=sys.stderr)
        return Exit.USAGE
    except OSError as exc:
        return unwritable(args.output, exc)
    try:
        return _classify(args, sink, done)
    except NotThere as exc:
        print(
            f"classify-images: error: {exc.url} answered {exc.status} {exc.code}: "
            f"{exc.message.rstrip('.')}; stopped: check --url, --model-name and --version",
            file=sys.stderr,
        )
        return Exit.USAGE
    except BadParameter as exc:
        print(
            f"classify-images: error: {exc.url} answered {exc.status} {exc.code}: "
            f"{exc.message.rstrip('.')}; stopped: check --top-k",
            file=sys.stderr,
        )
        return Exit.USAGE
    except OSError as exc:  # writing a result: nothing after it was lost, a rerun goes on
        return unwritable(args.output, exc)
    except AccessRefused as exc:
        print(
            f"classify-images: error: {exc.url} refused this client ({exc.status} {exc.code}: "
            f"{exc.message.rstrip('.')}); stopped at the first refusal: give a valid key with "
            f"--api-key or {API_KEY_VARIABLE}",
            file=sys.stderr,
        )
        return Exit.REFUSED
    except KeyboardInterrupt:
        print("interrupted; rerun with the same --output to go on", file=sys.stderr)
        return Exit.INTERRUPTED
    finally:
        with contextlib.suppress(OSError):  # a full disk was said already
            sink.close()


def unwritable(output: Path | None, exc: OSError) -> int:
    """One line for an output that cannot be written; none for stdout's reader gone (`| head`
    read what it wanted), whose rest is dropped so that the exit does not complain again."""
    if output is None and isinstance(exc, BrokenPipeError):
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return Exit.UNWRITABLE
    where = output if output is not None else "stdout"
    hint = (
        "rerun with the same --output to go on"
        if output is not None
        else "write them with --output"
    )
    print(
        f"classify-images: error: cannot write {where}: {exc.strerror or exc}; the results "
        f"before it are kept: {hint}",
        file=sys.stderr,
    )
    return Exit.UNWRITABLE


def console() -> None:
    """The `classify-images` command: main's status; interrupted, at once (a thread still
    waiting on a server is not waited for: its file is sent again on the next run)."""
    status = main()
    if status == Exit.INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def _classify(args: argparse.Namespace, sink: Sink, done: dict[str, Result]) -> int:
    """Send the files not done yet; the status counts earlier errors too."""
    paths = find_images(args.paths)
    earlier = [done[file_key(str(p))] for p in paths if file_key(str(p)) in done]
    todo = [p for p in paths if file_key(str(p)) not in done]
    results: list[Result] = []
    if todo:
        try:
            client = make_client(args)
        except ClassifierError as exc:  # e.g. no such model in the store: say where it looked
            hint = "" if args.url else f" (--models-dir or {MODELS_DIR_VARIABLE} name another)"
            print(f"classify-images: error: {exc.message}{hint}", file=sys.stderr)
            return Exit.USAGE
        except ValueError as exc:
            print(f"classify-images: error: {exc}", file=sys.stderr)
            return Exit.USAGE
        progress = sys.stderr.isatty() if args.progress is None else args.progress
        with client:
            results = run(client, todo, sink, progress)
    errors = sum(not r.ok for r in results)
    failed = errors + sum(not r.ok for r in earlier)
    print(
        f"{len(results) - errors} predicted, {errors} failed, {len(earlier)} already in the "
        f"output ({failed} failed in all)",
        file=sys.stderr,
    )
    return Exit.SOME_FAILED if failed else Exit.OK
