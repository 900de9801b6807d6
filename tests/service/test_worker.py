"""service/http/worker.py: its settings read once; on a real gunicorn, kept-alive
connections are answered by the thread they are on, more connections than threads still all
get answers, an idle connection is closed after the keep-alive timeout, and SIGTERM is not
held up."""

from __future__ import annotations

import http.client
import re
import signal
import socket
import struct
import threading
import time
from collections import Counter

import pytest
from gunicorn.config import Config

from benchmarks.harness import Server
from service.http.worker import Settled
from tests.helpers import jpeg_bytes

JPEG = {"Content-Type": "image/jpeg"}


def test_settled_settings_are_gunicorns_read_once():
    cfg = Config()
    settled = Settled(cfg)
    for name in [*cfg.settings, "is_ssl", "worker_class", "address", "env"]:
        assert getattr(settled, name) == getattr(cfg, name), name
    cfg.set("keepalive", 99)  # a worker's settings never change: read once, kept
    assert settled.keepalive == 2 and cfg.keepalive == 99


@pytest.mark.e2e
def test_the_service_runs_this_worker(models_template):
    with Server(models_template, MODEL_NAME="pets", MODEL_POLL_SECONDS="0") as server:
        server.wait_ready()
        assert '"Using worker: service.http.worker.ThreadWorker"' in server.output()


@pytest.mark.e2e
def test_kept_alive_connections_beyond_the_threads_are_all_answered(models_template):
    env = {"MODEL_NAME": "pets", "MODEL_POLL_SECONDS": "0", "GUNICORN_THREADS": "2"}
    body = jpeg_bytes((64, 48))
    with Server(models_template, **env) as server:
        server.wait_ready()
        statuses: list[int] = []
        lock = threading.Lock()

        def client() -> None:  # 5 connections, 2 threads: each keeps its connection
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            for _ in range(10):
                conn.request("POST", "/predict", body, JPEG)
                response = conn.getresponse()
                response.read()
                with lock:
                    statuses.append(response.status)
                time.sleep(0.02)
            conn.close()

        threads = [threading.Thread(target=client) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert statuses == [200] * 50


@pytest.mark.e2e
def test_a_kept_alive_request_whose_body_comes_late_is_answered(models_template):
    """The thread waits for the next request under a receive timeout (LINGER_S) and clears
    it once the request begins: a body that comes later than that is still read."""
    from service.http.worker import LINGER_S

    body = jpeg_bytes((64, 48))
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    with Server(models_template, MODEL_NAME="pets", MODEL_POLL_SECONDS="0") as server:
        server.wait_ready()
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            for pause_before_body in (0, LINGER_S * 3):
                time.sleep(0.02)  # within the linger: the same thread waits for it
                sock.sendall(head)
                time.sleep(pause_before_body)
                sock.sendall(body)
                response = http.client.HTTPResponse(sock)  # each answer read to its end
                response.begin()
                assert response.status == 200, response.read()
                assert b'"label"' in response.read()


@pytest.mark.e2e
def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout(models_template):
    with Server(models_template, MODEL_NAME="pets", MODEL_POLL_SECONDS="0") as server:
        server.wait_ready()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert response.status == 200 and response.read()
        started = time.monotonic()
        rest = conn.sock.recv(65536)  # b"" once the worker closes it (gunicorn keepalive: 5 s)
        waited = time.monotonic() - started
        conn.close()
        assert rest == b"" and 4 <= waited <= 12, waited


@pytest.mark.e2e
def test_sigterm_is_not_held_up_by_a_kept_alive_connection(models_template):
    server = Server(models_template, MODEL_NAME="pets", MODEL_POLL_SECONDS="0")
    try:
        server.wait_ready()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/healthz")
        assert conn.getresponse().read()
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(30)
        assert time.monotonic() - started < 10
        conn.close()
    finally:
        server.stop()


@pytest.mark.e2e
def test_clients_that_keep_their_socket_after_connection_close_hold_up_nobody(models_template):
    """gthread closes an ended connection on the main thread, waiting up to 2 s for the
    client to close its side: three such clients held every other request for about 6 s."""
    with Server(models_template, MODEL_NAME="pets", MODEL_POLL_SECONDS="0") as server:
        server.wait_ready()
        held = []
        for _ in range(3):  # each reads its answer, then keeps the socket open
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            held.append(sock)
        try:
            for sock in held:
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("GET", "/healthz")
            assert conn.getresponse().status == 200
            conn.close()
            assert time.monotonic() - started < 1
        finally:
            for sock in held:
                sock.close()


class CountingSocket(socket.socket):
    """A real socket that counts its sends, receives and changes of timeout."""

    __slots__ = ("_calls",)

    @property
    def calls(self) -> Counter:
        if not hasattr(self, "_calls"):
            self._calls = Counter()
        return self._calls

    def sendall(self, data, *args) -> None:
        self.calls["sendall"] += 1
        super().sendall(data, *args)

    def recv(self, size, *args):
        self.calls["recv"] += 1
        return super().recv(size, *args)

    def settimeout(self, value) -> None:
        self.calls["settimeout"] += 1
        super().settimeout(value)


def counted_pair() -> tuple[CountingSocket, socket.socket]:
    """A connected pair: the counting end (the server's) and the plain one (the client's)."""
    ours, theirs = socket.socketpair()
    return CountingSocket(fileno=ours.detach()), theirs


def answer(response_class, method: str, app_body: list[bytes], headers=None) -> tuple[bytes, int]:
    """What a response of `response_class` puts on the wire for one request, and in how many
    sends (a real socket pair, gunicorn's own parser and response)."""
    from gunicorn.http import get_parser, wsgi

    sock, theirs = counted_pair()
    cfg = Settled(Config())
    raw = f"{method} /x HTTP/1.1\r\nHost: a\r\n\r\n".encode()
    req = next(get_parser(cfg, iter([raw]), ("127.0.0.1", 1)))
    resp, _ = wsgi.create(req, sock, ("127.0.0.1", 1), ("127.0.0.1", 8000), cfg, response_class)
    length = sum(map(len, app_body))
    resp.start_response("200 OK", headers or [("Content-Length", str(length))])
    for chunk in app_body:
        resp.write(chunk)
    resp.close()
    sock.close()
    theirs.settimeout(5)
    wire = b""
    while chunk := theirs.recv(65536):
        wire += chunk
    theirs.close()
    return re.sub(rb"Date: [^\r]*", b"Date: -", wire), sock.calls["sendall"]


@pytest.mark.parametrize(
    ("method", "body", "headers"),
    [
        ("POST", [b'{"ok": true}'], None),  # an answer: header block and body in one send
        ("HEAD", [b""], [("Content-Length", "12")]),  # no body: the header block at close
        ("GET", [], None),  # an empty body
        ("GET", [b"ab", b"cd"], [("Transfer-Encoding", "chunked")]),  # streamed, chunked
    ],
)
def test_one_send_response_puts_the_same_bytes_on_the_wire(method, body, headers):
    from gunicorn.http import wsgi

    from service.http.worker import OneSendResponse

    stock, stock_sends = answer(wsgi.Response, method, body, headers)
    ours, sends = answer(OneSendResponse, method, body, headers)
    assert ours == stock and b"HTTP/1.1 200 OK" in ours
    assert sends == max(1, stock_sends - 1)  # the header block rides with the first chunk


@pytest.mark.parametrize("read", [None, 3, 0])  # the whole body, part of it, none of it
def test_read_body_parser_drains_as_gunicorns_without_touching_a_read_socket(read):
    from gunicorn.http.parser import RequestParser

    from service.http.worker import ReadBodyParser

    first, second = b"0123456789", b"abc"
    wire = (
        f"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: {len(first)}\r\n\r\n".encode() + first
        + f"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: {len(second)}\r\n\r\n".encode()
        + second
    )  # fmt: skip
    seen = {}
    for parser_class in (RequestParser, ReadBodyParser):
        sock, theirs = counted_pair()
        theirs.sendall(wire)
        parser = parser_class(Settled(Config()), sock, ("127.0.0.1", 1))
        request = next(parser)
        got = request.body.read() if read is None else request.body.read(read)
        drained = parser.finish_body(deadline=time.monotonic() + 5)
        following = next(parser)
        seen[parser_class] = (got, drained, following.path, following.body.read())
        changes = sock.calls["settimeout"]
        sock.close()
        theirs.close()
        if parser_class is ReadBodyParser:
            assert (changes == 0) == (read is None)  # a body read to its end: nothing asked
    assert seen[ReadBodyParser] == seen[RequestParser]
    assert seen[RequestParser][1:] == (True, "/b", second)


def test_read_body_parser_reads_a_photo_upload_in_one_receive():
    """The head and a 25 KiB body that have arrived: one receive (gunicorn's parser: two)."""
    from gunicorn.http.parser import RequestParser

    from service.http.worker import ReadBodyParser

    body = bytes(range(256)) * 100
    wire = f"POST /predict HTTP/1.1\r\nHost: a\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    receives = {}
    for parser_class in (RequestParser, ReadBodyParser):
        sock, theirs = counted_pair()
        theirs.sendall(wire + body)
        request = next(parser_class(Settled(Config()), sock, ("127.0.0.1", 1)))
        assert request.body.read() == body
        receives[parser_class] = sock.calls["recv"]
        sock.close()
        theirs.close()
    assert receives == {RequestParser: 2, ReadBodyParser: 1}


def test_kept_blocking_socket_keeps_the_mode_it_is_asked_for():
    """setblocking(True) on a blocking socket is skipped; every change still reaches the fd."""
    import fcntl
    import os

    from service.http.worker import _KeptBlocking

    ours, theirs = socket.socketpair()
    ours.__class__ = _KeptBlocking

    def nonblocking() -> bool:
        return bool(fcntl.fcntl(ours.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)

    for flag in (True, True, False, False, True, True, False, True):
        ours.setblocking(flag)
        assert nonblocking() is not flag and (ours.gettimeout() is None) is flag
    ours.settimeout(2.0)  # a timeout: non-blocking fd, which setblocking(True) must undo
    ours.setblocking(True)
    assert not nonblocking() and ours.gettimeout() is None
    theirs.sendall(b"x")
    assert ours.recv(1) == b"x"
    ours.close()
    theirs.close()


def waiting_parser(sock):
    from service.http.worker import ReadBodyParser, _WaitingUnreader

    parser = ReadBodyParser(Settled(Config()), sock, ("127.0.0.1", 1))
    assert isinstance(parser.unreader, _WaitingUnreader)
    return parser


def receive_timeout(sock) -> bytes:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)


def test_waiting_for_the_next_request_reads_it_in_the_same_receive(monkeypatch):
    from service.http import worker

    # a linger of 5 s here: the request comes after 30 ms, however busy the machine
    monkeypatch.setattr(worker, "_LINGER_TIMEVAL", struct.pack("ll", 5, 0))
    plain, theirs = socket.socketpair()
    parser = waiting_parser(plain)
    assert parser.unreader.can_wait
    body = bytes(range(256)) * 100
    threading.Timer(
        0.03,
        theirs.sendall,
        [f"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body],
    ).start()
    assert parser.unreader.wait() is True  # waited, and took the request in that receive
    assert receive_timeout(plain) == receive_timeout(theirs)  # the timeout cleared again
    plain.setblocking(False)  # any further receive would fail now: the parser needs none
    request = next(parser)
    assert (request.path, request.body.read()) == ("/p", body)
    plain.close()
    theirs.close()


def test_waiting_for_a_request_that_does_not_come_gives_up_after_the_linger():
    from service.http.worker import LINGER_S

    ours, theirs = socket.socketpair()
    parser = waiting_parser(ours)
    started = time.monotonic()
    assert parser.unreader.wait() is False
    waited = time.monotonic() - started
    assert LINGER_S * 0.9 <= waited < LINGER_S + 1, waited
    assert receive_timeout(ours) == receive_timeout(theirs)
    theirs.sendall(b"GET /late HTTP/1.1\r\nHost: a\r\n\r\n")  # the poller's turn: as gunicorn
    assert next(parser).path == "/late"
    theirs.close()  # and an ended connection: waited for, then no request
    assert parser.unreader.wait() is True
    with pytest.raises(StopIteration):
        next(parser)
    ours.close()


def test_tls_and_timeout_sockets_are_waited_for_with_select():
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    assert not waiting_parser(ours).unreader.can_wait
    counted, other = counted_pair()
    assert not waiting_parser(counted).unreader.can_wait  # a subclass (ssl.SSLSocket is one)
    for s in (ours, theirs, counted, other):
        s.close()
