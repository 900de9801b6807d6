"""What the HTTP and the in-process clients share: inputs, chunking, worker threads, results
in input order, and stopping a run at once when the server refuses the client itself."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Self

from client.inputs import Input, Item, to_items
from client.results import Failure, Result

log = logging.getLogger(__name__)
WAKE_S = 0.2  # how often the main thread looks for a signal while it waits for results


def _result(future: Future[list[Result]]) -> list[Result]:
    """The future's result, waited for in short steps: the kernel may hand Ctrl-C to another
    thread (a worker in a socket read, a numeric library's), and that does not wake a wait
    without a timeout, so the run went on until the request ended."""
    while True:
        try:
            return future.result(timeout=WAKE_S)
        except FutureTimeout:
            continue


def tracebacks() -> bool:
    """Whether to log tracebacks (the client's logger at DEBUG): a CLI user gets one line."""
    return log.isEnabledFor(logging.DEBUG)


class RunStopped(Exception):
    """An answer every other image would get too: the run stops at once (no image is sent
    after it, and no image gets it as its result)."""

    def __init__(self, status: int, code: str, message: str, url: str) -> None:
        super().__init__(f"{url} answered {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.url = url


class AccessRefused(RunStopped):
    """The server refused this client (401 or 403: no API key, or one it does not accept)."""


class NotThere(RunStopped):
    """The server has no such model or version, or the URL is not the service's (404)."""


class BadParameter(RunStopped):
    """The server refused a parameter of every request (400 invalid_parameter: a top_k
    beyond the model's classes)."""


class BaseClient(ABC):
    """Sends `batch_size` images at a time from `concurrency` threads; each result names its
    input (the path as given; `<bytes #i>`, `<image #i>`, `<array #i>` or a file object's
    name otherwise) and results come back in input order."""

    def __init__(self, *, concurrency: int = 1, batch_size: int = 1) -> None:
        if concurrency < 1 or batch_size < 1:
            raise ValueError("concurrency and batch_size must be at least 1")
        self.concurrency = concurrency
        self.batch_size = batch_size
        self._refused: RunStopped | None = None  # set by the first refusal: the run stops
        self.stopping = threading.Event()  # set by close(): no further try or request

    @abstractmethod
    def predict_chunk(self, items: Sequence[Item]) -> list[Result]:
        """One result per item, in order; never raises for a bad file or a failed request,
        only RunStopped (AccessRefused, NotThere, BadParameter)."""

    def predict(self, inputs: Iterable[Input]) -> list[Result]:
        """One result per input, in the order given. Inputs: paths, image file bytes, binary
        file objects, PIL images, uint8 arrays (height x width x 3). Raises AccessRefused
        when the server refuses the client (401/403), NotThere when it has no such model or
        version (404), BadParameter when it refuses top_k (400 invalid_parameter)."""
        return list(self.iter_predict(inputs))

    def iter_predict(self, inputs: Iterable[Input]) -> Iterator[Result]:
        """The results in input order, each as soon as it and those before it are known
        (the worker threads run ahead meanwhile). Raises as `predict` does."""
        items = to_items(inputs)
        self._refused = None  # a new run tries again (with a key changed meanwhile, say)
        self.stopping.clear()  # and retries again, after a close()
        futures = self._submit_all(items)
        try:
            for future in futures:
                yield from _result(future)
        finally:
            for future in futures:
                future.cancel()  # an abandoned, refused or interrupted run sends nothing more

    def close(self, wait: bool = True) -> None:
        """Free what the client holds (connections, threads): requests not started are
        dropped, a request waiting to try again gives up; with `wait`, those in flight end
        first (without, they are left to end by their own timeouts)."""
        self.stopping.set()
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Self:
        self.stopping.clear()
        return self

    def __exit__(self, *exc) -> None:
        self.close(wait=exc[0] is None)  # an interrupt or error does not wait for the server

    def _submit_all(self, items: list[Item]) -> list[Future[list[Result]]]:
        size = self.batch_size
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        if getattr(self, "_pool", None) is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="classify")
        return [self._pool.submit(self._safe_chunk, chunk) for chunk in chunks]

    def _safe_chunk(self, items: Sequence[Item]) -> list[Result]:
        """A bug in one chunk becomes its files' errors, not the end of a long run; a refusal
        of the client itself ends the run."""
        if self._refused is not None:  # another thread's request was refused: send nothing
            raise self._refused
        try:
            return self.predict_chunk(items)
        except RunStopped as exc:
            self._refused = exc
            raise
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            log.warning(
                "unexpected error on %d files: %s", len(items), message, exc_info=tracebacks()
            )
            return [Failure(item.name, "client_error", message) for item in items]
