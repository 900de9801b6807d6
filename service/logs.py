"""JSON logging for every process of the service: one JSON object per line on stderr, gunicorn's
own lines included, written by one thread per worker."""

from __future__ import annotations

import atexit
import json
import logging
import logging.config
import logging.handlers
import queue
from datetime import datetime

from gunicorn import glogging


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra={"fields": {...}}` adds fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """RFC 3339 in local time, to the millisecond: lines a moment apart keep their order
        once collected, and the offset parses as RFC 3339 (`+00:00`, as nginx's lines)."""
        moment = datetime.fromtimestamp(record.created).astimezone()
        return moment.isoformat(timespec="milliseconds")


class GunicornLogger(glogging.Logger):
    """gunicorn's own lines as JSON; its access log stays off (the app writes one JSON line
    per request, service.access), so gunicorn never builds its access fields."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())

    def _compute_access_log_enabled(self) -> bool:
        return False


def json_logging(level: str) -> dict:
    """A logging.config dictionary: every logger of the process writes JSON lines to stderr."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": handler},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }


def configure_logging(level: str) -> None:
    """JSON lines from every logger, Python's warnings included (once per process)."""
    logging.captureWarnings(True)
    if not logging.getLogger().handlers:  # else someone has configured it already
        logging.config.dictConfig(json_logging(level))


class _RecordQueue(logging.handlers.QueueHandler):
    """Queue the record as it is: formatting (JSON) happens in the writing thread."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class _LineWriter(logging.handlers.QueueListener):
    """QueueListener, writing the lines queued together in one write per stream handler:
    under load records come in bursts (a batch's answers), and a write and a flush per line
    cost more than formatting it. Lines are written as soon as the queue runs empty (or
    LINES_AT_ONCE are held), so none waits for more to come."""

    LINES_AT_ONCE = 256

    def __init__(self, records: queue.SimpleQueue, *handlers: logging.Handler) -> None:
        super().__init__(records, *handlers, respect_handler_level=True)
        self._lines = {h: [] for h in handlers if isinstance(h, logging.StreamHandler)}
        self._held: list[logging.LogRecord] = []

    def handle(self, record: logging.LogRecord) -> None:
        for handler in self.handlers:
            if record.levelno < handler.level:
                continue
            lines = self._lines.get(handler)
            if lines is None:  # not a stream's: as QueueListener gives it
                handler.handle(record)
                continue
            kept = handler.filter(record)  # False, True, or (3.12+) a record to use instead
            if not kept:
                continue
            try:
                lines.append(
                    handler.format(kept if isinstance(kept, logging.LogRecord) else record)
                )
            except Exception:  # as StreamHandler.emit: said on stderr, the others written
                handler.handleError(record)
        self._held.append(record)
        if len(self._held) >= self.LINES_AT_ONCE or self.queue.empty():
            self.write()

    def write(self) -> None:
        held, self._held = self._held, []
        for handler, lines in self._lines.items():
            if not lines:
                continue
            text = handler.terminator.join(lines) + handler.terminator
            lines.clear()
            with handler.lock:
                try:
                    handler.stream.write(text)
                    handler.flush()
                except Exception:
                    handler.handleError(held[-1])

    def stop(self) -> None:
        super().stop()
        self.write()  # what the last records left, once the thread is done


def write_from_one_thread() -> None:
    """Move this process's JSON handlers behind a queue, written by one thread: 64 request
    threads writing their access lines through one locked stream handler spent more time
    waiting for its lock than the line costs (py-spy, docs/benchmarks.md). Called in each
    gunicorn worker after fork (threads do not survive a fork)."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]
    if not ours:  # already queued, or someone else's handlers
        return
    records: queue.SimpleQueue = queue.SimpleQueue()
    listener = _LineWriter(records, *ours)
    for handler in ours:
        root.removeHandler(handler)
    root.addHandler(_RecordQueue(records))
    listener.start()
    atexit.register(listener.stop)  # writes what is queued before the worker exits
