"""Result types, and the JSONL and CSV files they are written to and resumed from."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

Format = Literal["jsonl", "csv"]
FORMATS: tuple[Format, ...] = ("jsonl", "csv")
SUFFIXES: dict[str, Format] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}

# Failures worth trying again on a later run: the server was busy, down or unreachable.
TRANSIENT_CODES = frozenset(
    {
        "connection_error",
        "timeout",
        "rate_limited",
        "upstream_unavailable",  # nginx's 502: no replica reachable behind it
        "http_429",  # a rate limit without this service's error body
        "queue_full",
        "model_not_ready",
        "deadline_exceeded",
        "inference_failed",
        "internal_error",
        "client_error",
    }
)

CSV_HEAD = ("file", "label")
CSV_TAIL = ("model", "version", "error", "message")


@dataclass(frozen=True)
class Prediction:
    """One image the model classified; `top` (with top_k) its k best classes, best first."""

    file: str
    label: str
    probabilities: dict[str, float]
    model: str
    version: int
    top: tuple[tuple[str, float], ...] | None = None

    ok = True


@dataclass(frozen=True)
class Failure:
    """One image that got no prediction, with a stable error code and a readable message."""

    file: str
    code: str
    message: str

    ok = False

    @property
    def transient(self) -> bool:
        """Whether a rerun should send the file again (a busy or unreachable server)."""
        return self.code in TRANSIENT_CODES or self.code.startswith("http_5")


Result = Prediction | Failure


# A file name that is not UTF-8 (Python's surrogate escapes) is written as its own bytes and
# read back the same, so that a rerun knows it: JSONL escapes it anyway (\udcff), CSV keeps it.
ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}


class OutputError(Exception):
    """The output file exists but cannot be read back as results of this format."""


def file_key(file: str) -> str:
    """The identity of a file across runs: its absolute path, whatever form it was given in."""
    return os.path.abspath(file)


def choose_format(output: Path | None, fmt: str | None) -> Format:
    """The format asked for, else the output's suffix; JSONL on stdout."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
        return fmt  # type: ignore[return-value]
    if output is None:
        return "jsonl"
    try:
        return SUFFIXES[output.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"cannot tell the format from {output.name!r}; use --format jsonl|csv "
            f"or a suffix among {', '.join(SUFFIXES)}"
        ) from None


# -- JSONL ---------------------------------------------------------------------------------


def to_record(result: Result) -> dict:
    """The JSON object of one result (one JSONL line)."""
    if isinstance(result, Prediction):
        record = {
            "file": result.file,
            "label": result.label,
            "probabilities": result.probabilities,
            "model": result.model,
            "version": result.version,
        }
        if result.top is not None:
            record["top"] = [{"label": label, "probability": p} for label, p in result.top]
        return record
    return {"file": result.file, "error": {"code": result.code, "message": result.message}}


def from_record(record: dict) -> Result:
    """A result back from its JSON object; raises KeyError/TypeError/ValueError when off."""
    if "error" in record:
        error = record["error"]
        return Failure(str(record["file"]), str(error["code"]), str(error["message"]))
    return Prediction(
        str(record["file"]),
        str(record["label"]),
        {str(k): float(v) for k, v in record["probabilities"].items()},
        str(record["model"]),
        int(record["version"]),
        top_of(record.get("top")),
    )


def top_of(entries: list[dict] | None) -> tuple[tuple[str, float], ...] | None:
    """The `top` list of an answer or a record, as (label, probability) pairs."""
    if entries is None:
        return None
    return tuple((str(e["label"]), float(e["probability"])) for e in entries)


def read_jsonl(text: str) -> list[Result]:
    """Every line's result."""
    results = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            results.append(from_record(json.loads(line)))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise OutputError(f"line {number} is not a result record") from None
    return results


# -- CSV -----------------------------------------------------------------------------------


def csv_columns(class_names: Iterable[str]) -> list[str]:
    """file, label, one `p_<class>` column per class, then model, version, error, message."""
    return [*CSV_HEAD, *(f"p_{name}" for name in class_names), *CSV_TAIL]


def class_columns(columns: Iterable[str]) -> list[str]:
    """The class names of a CSV header's probability columns, in order."""
    return [c[2:] for c in columns if isinstance(c, str) and c.startswith("p_")]


def to_row(result: Result) -> dict[str, str]:
    """One CSV row; a class the header lacks is left out by the writer."""
    if isinstance(result, Failure):
        return {"file": result.file, "error": result.code, "message": result.message}
    row = {"file": result.file, "label": result.label, "model": result.model}
    row["version"] = str(result.version)
    row.update({f"p_{name}": repr(p) for name, p in result.probabilities.items()})
    return row


def from_row(row: dict[str, str]) -> Result:
    """A result back from its CSV row; raises ValueError when off."""
    if row.get("error"):
        return Failure(row["file"], row["error"], row.get("message") or "")
    probabilities = {
        name: float(row[f"p_{name}"]) for name in class_columns(row) if row[f"p_{name}"]
    }
    return Prediction(row["file"], row["label"], probabilities, row["model"], int(row["version"]))


def read_csv(text: str) -> tuple[list[str], list[Result]]:
    """The header and every row's result."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = list(reader.fieldnames or [])
    if columns[:2] != list(CSV_HEAD) or not set(CSV_TAIL) <= set(columns):
        raise OutputError(f"the header {columns} is not that of a results file")
    try:
        return columns, [from_row(row) for row in reader]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OutputError(f"row {reader.line_num}: {exc}") from None


# -- writing -------------------------------------------------------------------------------


class Sink:
    """Writes results as they arrive, flushed one by one, so an interrupted run can resume.

    CSV needs the class names for its header: failures wait for the first prediction, and a
    file whose header lacks a class is rewritten with a wider one.
    """

    def __init__(self, fmt: Format, path: Path | None = None, columns: list[str] | None = None):
        self.fmt = fmt
        self.path = path
        self.columns = columns  # CSV: the header in the file (None: none written yet)
        self._held: list[Failure] = []
        self.stream: IO[str] = self._open() if path is not None else sys.stdout

    def write(self, result: Result) -> None:
        if self.fmt == "jsonl":
            self.stream.write(json.dumps(to_record(result)) + "\n")
        elif isinstance(result, Failure) and self.columns is None:
            self._held.append(result)
            return
        else:
            if isinstance(result, Prediction):
                self._fit(list(result.probabilities))
            self._write_rows([result])
        self.stream.flush()

    def close(self) -> None:
        """Write the failures still held (no prediction came), then close a file."""
        if self._held:
            self._fit([])
        self.stream.flush()
        if self.path is not None:
            self.stream.close()

    def _open(self) -> IO[str]:
        assert self.path is not None
        return self.path.open("a", newline="" if self.fmt == "csv" else None, **ENCODING)

    def _fit(self, class_names: list[str]) -> None:
        """Make the CSV header hold these classes: write it, or widen the file's."""
        if self.columns is None:
            self.columns = csv_columns(class_names)
            csv.writer(self.stream).writerow(self.columns)
        missing = [name for name in class_names if name not in class_columns(self.columns)]
        if missing and self.path is not None:  # stdout cannot be rewritten: extras left out
            self.stream.close()
            self.columns = csv_columns([*class_columns(self.columns), *missing])
            _, results = read_csv(self.path.read_text(**ENCODING))
            write_all(self.path, "csv", results, self.columns)
            self.stream = self._open()
        held, self._held = self._held, []
        self._write_rows(held)

    def _write_rows(self, results: Iterable[Result]) -> None:
        writer = csv.DictWriter(self.stream, self.columns or [], extrasaction="ignore")
        writer.writerows(to_row(r) for r in results)


def write_all(path: Path, fmt: Format, results: list[Result], columns: list[str] | None) -> None:
    """Replace `path` atomically with these results (a temporary file, then a rename)."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="" if fmt == "csv" else None, **ENCODING) as stream:
            if fmt == "jsonl":
                stream.writelines(json.dumps(to_record(r)) + "\n" for r in results)
            else:
                csv.writer(stream).writerow(columns or csv_columns([]))
                writer = csv.DictWriter(stream, columns or csv_columns([]), extrasaction="ignore")
                writer.writerows(to_row(r) for r in results)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def open_output(path: Path | None, fmt: Format) -> tuple[Sink, dict[str, Result]]:
    """A sink on stdout, or on `path` to append to, with the results it already holds (by file
    key) so that a rerun skips their files."""
    if path is None:
        return Sink(fmt), {}
    columns, kept = resume(path, fmt)
    return Sink(fmt, path, columns), {file_key(r.file): r for r in kept}


def resume(path: Path, fmt: Format) -> tuple[list[str] | None, list[Result]]:
    """The results worth keeping: the last one per file, transient failures dropped (their
    files are sent again); the file is rewritten when that removes anything."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, []
    except OSError as exc:
        raise OutputError(f"cannot read {path}: {exc}") from None
    # A last line without its newline was cut short, maybe inside a character: left out.
    complete = data[: data.rfind(b"\n") + 1].decode(**ENCODING)
    if not complete.strip():
        if data.strip():
            raise OutputError(f"{path} holds no complete line: not a results file")
        return None, []
    columns, results = read_csv(complete) if fmt == "csv" else (None, read_jsonl(complete))
    latest = {file_key(r.file): r for r in results}
    kept = [r for r in latest.values() if not (isinstance(r, Failure) and r.transient)]
    if len(kept) != len(results) or len(complete.encode(**ENCODING)) != len(data):
        write_all(path, fmt, kept, columns)
    return columns, kept
