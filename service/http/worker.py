"""gunicorn's gthread worker, with kept-alive connections served by the thread they are on.

gthread hands every kept-alive connection back to its main thread after each response: the
main thread polls it, and when the next request comes submits the connection to the thread
pool again; per request that is a pipe write, two epoll changes and two thread wake-ups, all
under the interpreter lock the request threads need. While the worker has a thread for
every connection it holds, this worker lets the thread that answered wait for the
connection's next request itself, briefly (a client that keeps its connection usually sends
the next request within milliseconds); past LINGER_S, or once connections outnumber the
threads, the connection goes back to the main thread's poller as before, and the keep-alive
timeout, graceful shutdown and max_requests behave as in gthread.

A connection that ends is closed by its request thread too: gthread closes it on the main
thread, gracefully (FIN, then up to 2 s for the client to close its side), and a client that
keeps its socket open after a `Connection: close` answer held the whole worker that long:
no connection accepted, no kept-alive one served.
"""

from __future__ import annotations

import contextlib
import select

from gunicorn.workers import gthread

LINGER_S = 0.1


class Settled:
    """gunicorn's settings, each read once: the parser and the response read about twenty of
    them per request, each through Config.__getattr__ and its Setting, and a worker's
    settings never change (a reload starts new workers)."""

    def __init__(self, cfg) -> None:
        self.__dict__["_cfg"] = cfg

    def __getattr__(self, name: str):
        value = getattr(self._cfg, name)
        self.__dict__[name] = value
        return value


class ThreadWorker(gthread.ThreadWorker):
    def init_process(self):
        self.cfg = Settled(self.cfg)  # after fork, before any thread or connection
        super().init_process()

    def handle(self, conn):
        keep = super().handle(conn)
        while keep is True and self._next_request_here(conn):
            keep = super().handle(conn)
        if keep is False:
            self._close(conn)
        return keep

    def _close(self, conn) -> None:
        """The graceful close, on this thread rather than the main one (see above)."""
        with contextlib.suppress(OSError):  # already closed (a response that failed half-way)
            conn.close(graceful=True)
        conn.closed_here = True

    def finish_request(self, conn, fs):
        if getattr(conn, "closed_here", False):
            self.nr_conns -= 1
            return
        super().finish_request(conn, fs)

    def _next_request_here(self, conn) -> bool:
        """Whether the connection's next request is there (or comes within LINGER_S) while
        this thread may keep it."""
        if not self.alive or self.nr_conns > self.cfg.threads:
            return False
        if conn.parser.unreader.buf.getvalue():  # already read ahead (pipelined)
            return True
        try:
            readable, _, _ = select.select([conn.sock], [], [], LINGER_S)
        except (OSError, ValueError):
            return False
        return bool(readable)
