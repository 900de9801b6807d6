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

In this worker, gunicorn's parser and response make fewer system calls per request: a
request is read in one receive where it has arrived, a kept-alive connection's next request
is waited for and read in that same receive, a body read to its end is not drained again, a
socket already blocking is not set blocking again, and an answer's header block goes out with
its body (ReadBodyParser, _WaitingUnreader, _KeptBlocking, OneSendResponse). Each such call
lets go of the interpreter lock, and at c=32 taking it back from the other request threads
cost a context switch (perf, docs/benchmarks.md).

A connection that ends is closed by its request thread too: gthread closes it on the main
thread, gracefully (FIN, then up to 2 s for the client to close its side), and a client that
keeps its socket open after a `Connection: close` answer held the whole worker that long:
no connection accepted, no kept-alive one served.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct

import gunicorn.http
from gunicorn.http import wsgi
from gunicorn.http.body import LengthReader
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers import gthread

LINGER_S = 0.1
FIRST_READ = 64 * 1024  # bytes a receive takes where gunicorn takes 8 KiB
# SO_RCVTIMEO's struct timeval: LINGER_S, and none (a receive blocks until data comes)
_LINGER_TIMEVAL = struct.pack("ll", int(LINGER_S), round(LINGER_S % 1 * 1e6))
_NO_TIMEVAL = struct.pack("ll", 0, 0)


class _KeptBlocking(socket.socket):
    """A plain socket whose `setblocking(True)` asks nothing of the kernel when it is blocking
    already: gthread sets the socket blocking before every request, and a connection kept on
    its thread (ThreadWorker.handle) still is. Python tracks the mode (`gettimeout()` is None
    when blocking), so the answer is the same; only the system call, and with it a hand-off
    of the interpreter lock, is saved."""

    __slots__ = ()

    def setblocking(self, flag: bool) -> None:
        if flag and self.gettimeout() is None:
            return
        super().setblocking(flag)


class _WaitingUnreader(SocketUnreader):
    """gunicorn's socket reader, which can also wait for a kept-alive connection's next
    request and take it in the same receive (`wait`); the parser gets those bytes as its
    first chunk. Waiting with `select` and then receiving let go of the interpreter lock
    twice per request."""

    def __init__(self, sock, max_chunk: int) -> None:
        super().__init__(sock, max_chunk)
        self.ahead: bytes | None = None

    def chunk(self, size_hint=None):
        if self.ahead is not None:
            data, self.ahead = self.ahead, None
            return data
        return super().chunk(size_hint)

    @property
    def can_wait(self) -> bool:
        """A plain socket in blocking mode (not TLS, whose records a raw wait cannot see)."""
        return type(self.sock) in (socket.socket, _KeptBlocking) and self.sock.gettimeout() is None

    def wait(self) -> bool:
        """Whether the connection's next bytes, or its end, came within LINGER_S: one blocking
        receive under a receive timeout (SO_RCVTIMEO), which is cleared again at once, so that
        the request's own reads block as gunicorn expects."""
        sock = self.sock
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _LINGER_TIMEVAL)
        try:
            self.ahead = sock.recv(self.mxchunk)
        except OSError:  # BlockingIOError: nothing came in time; or the connection failed
            return False
        finally:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _NO_TIMEVAL)
        return True


class _HeldHeaders:
    """A response's socket that sends the header block together with the body's first bytes.

    gunicorn's Response sends them in two `sendall` calls; each lets go of the interpreter
    lock, and at c=32, sixteen request threads woken by one batch's answers each took it
    back against the others once more per send (perf: a context switch per send). It holds
    the first write (the header block, which Response always writes first) until the next
    one, or until the response closes; anything else asked of the socket sends it first."""

    __slots__ = ("_held", "_sock", "_waiting")

    def __init__(self, sock) -> None:
        self._sock = sock
        self._held: bytes | None = None
        self._waiting = True  # for the first write

    def sendall(self, data) -> None:
        if self._waiting:
            self._waiting = False
            self._held = bytes(data)
            return
        held, self._held = self._held, None
        self._sock.sendall(held + bytes(data) if held else data)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held:
            self._sock.sendall(held)

    def sendfile(self, *args, **kwargs):
        self.flush()
        return self._sock.sendfile(*args, **kwargs)

    def __getattr__(self, name: str):
        self.flush()
        return getattr(self._sock, name)


class ReadBodyParser(RequestParser):
    """gunicorn's HTTP/1 parser, reading a request in one receive where it can, and with
    nothing to drain once a body was read to its end.

    gunicorn reads a request's head 8 KiB at a time: an upload of a photo (about 25 KiB)
    took a second receive for the rest of its body, and each receive lets go of the
    interpreter lock. FIRST_READ takes what has arrived, head and body, at once.

    Before the connection's next request (twice per request: after the answer, and before
    parsing the next) gunicorn drains what is left of the body, setting the socket's timeout
    and then setting it back even when nothing is left: system calls that each let go of the
    interpreter lock. A body of known length read to its end (every answered predict, every
    request without a body) has nothing left: True at once."""

    def __init__(self, cfg, source, source_addr) -> None:
        super().__init__(cfg, source, source_addr)
        if type(self.unreader) is SocketUnreader:  # a socket's (not a test's iterable)
            self.unreader = _WaitingUnreader(source, FIRST_READ)

    def finish_body(self, deadline=None, max_bytes=None):
        body = getattr(self.mesg, "body", None)
        reader = getattr(body, "reader", None)
        if (
            isinstance(reader, LengthReader)
            and reader.length == 0
            and not body.failed
            and not body.buf.tell()
        ):
            return True
        return super().finish_body(deadline, max_bytes)


class OneSendResponse(wsgi.Response):
    """gunicorn's HTTP/1 response, its header block sent with the body's first bytes."""

    def __init__(self, req, sock, cfg) -> None:
        super().__init__(req, _HeldHeaders(sock), cfg)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.sock.flush()  # an answer without a body: its header block alone


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
        # what gunicorn makes for an HTTP/1 connection and its answers, in this worker only
        gunicorn.http.RequestParser = ReadBodyParser
        wsgi.Response = OneSendResponse
        super().init_process()

    def handle(self, conn):
        if type(conn.sock) is socket.socket and not self.cfg.is_ssl:
            conn.sock.__class__ = _KeptBlocking  # the same socket; see the class
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
        unreader = conn.parser.unreader
        if unreader.buf.getvalue():  # already read ahead (pipelined)
            return True
        if isinstance(unreader, _WaitingUnreader) and unreader.can_wait:
            return unreader.wait()
        try:
            readable, _, _ = select.select([conn.sock], [], [], LINGER_S)
        except (OSError, ValueError):
            return False
        return bool(readable)
