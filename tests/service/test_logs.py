"""The worker's log writer thread: lines queued together are written together, in order, each
handler's level kept, nothing left behind at stop."""

from __future__ import annotations

import io
import json
import logging
import queue

from service.logs import JsonFormatter, _LineWriter


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


class Kept(logging.Handler):
    """A handler that is not a stream's: given each record as before."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def record(n: int, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("service.access", level, __file__, 1, "line %d", (n,), None)


def stream_handler(level: int = logging.NOTSET) -> tuple[logging.StreamHandler, CountingStream]:
    stream = CountingStream()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(level)
    return handler, stream


def test_a_burst_of_records_is_written_in_order_in_few_writes():
    records: queue.SimpleQueue = queue.SimpleQueue()
    everything, all_lines = stream_handler()
    warnings, warning_lines = stream_handler(logging.WARNING)
    kept = Kept()
    for n in range(300):  # queued before the thread starts: one burst
        records.put(record(n, logging.WARNING if n % 100 == 0 else logging.INFO))
    writer = _LineWriter(records, everything, warnings, kept)
    writer.start()
    writer.stop()
    messages = [json.loads(line)["message"] for line in all_lines.getvalue().splitlines()]
    assert messages == [f"line {n}" for n in range(300)]
    assert all_lines.writes <= 2  # LINES_AT_ONCE = 256: two writes, not 300
    assert [json.loads(line)["message"] for line in warning_lines.getvalue().splitlines()] == [
        "line 0", "line 100", "line 200",
    ]  # fmt: skip
    assert [r.getMessage() for r in kept.records] == [f"line {n}" for n in range(300)]


def test_a_record_that_cannot_be_formatted_leaves_the_others_written(capsys):
    records: queue.SimpleQueue = queue.SimpleQueue()
    handler, lines = stream_handler()
    bad = logging.LogRecord("service.access", logging.INFO, __file__, 1, "%d", ("x",), None)
    for item in (record(1), bad, record(2)):
        records.put(item)
    writer = _LineWriter(records, handler)
    writer.start()
    writer.stop()
    assert [json.loads(line)["message"] for line in lines.getvalue().splitlines()] == [
        "line 1", "line 2",
    ]  # fmt: skip
    assert "Logging error" in capsys.readouterr().err
