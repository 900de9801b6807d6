"""What the HTTP and the in-process clients share: chunking, worker threads, result order."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Self

from client.results import Failure, Result

log = logging.getLogger(__name__)


class BaseClient(ABC):
    """Sends `batch_size` images at a time from `concurrency` threads; each result names its file."""

    def __init__(self, *, concurrency: int = 1, batch_size: int = 1) -> None:
        if concurrency < 1 or batch_size < 1:
            raise ValueError("concurrency and batch_size must be at least 1")
        self.concurrency = concurrency
        self.batch_size = batch_size

    @abstractmethod
    def predict_chunk(self, paths: Sequence[Path]) -> list[Result]:
        """One result per path, in order; never raises for a bad file or a failed request."""

    def predict(self, paths: Iterable[str | Path]) -> list[Result]:
        """One result per path, in the order given."""
        futures = self._submit_all(paths)
        return [result for future in futures for result in future.result()]

    def iter_predict(self, paths: Iterable[str | Path]) -> Iterator[Result]:
        """Results as they come back (for progress, and writing each as soon as it is known)."""
        futures = self._submit_all(paths)
        try:
            for future in as_completed(futures):
                yield from future.result()
        finally:
            for future in futures:
                future.cancel()  # an abandoned or interrupted run sends nothing more

    def close(self) -> None:
        """Free what the client holds (connections, threads)."""
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _submit_all(self, paths: Iterable[str | Path]) -> list[Future[list[Result]]]:
        items = [Path(p) for p in paths]
        size = self.batch_size
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        if getattr(self, "_pool", None) is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="classify")
        return [self._pool.submit(self._safe_chunk, chunk) for chunk in chunks]

    def _safe_chunk(self, paths: Sequence[Path]) -> list[Result]:
        """A bug in one chunk becomes its files' errors, not the end of a long run."""
        try:
            return self.predict_chunk(paths)
        except Exception as exc:
            log.exception("unexpected error on %d files", len(paths))
            return [Failure(str(p), "client_error", f"{type(exc).__name__}: {exc}") for p in paths]
