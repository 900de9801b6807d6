"""One call to the service, whatever its protocol: what the access log line and the metrics
say of it. The edge (HTTP or gRPC) begins a call in the thread that serves it; the data plane
notes the model and the images on it; the edge finishes it (service/access.py)."""

from __future__ import annotations

import random
import re
import time
from contextvars import ContextVar
from dataclasses import dataclass, field

# A client's own request id is kept when it looks like one (nginx checks the same pattern).
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass
class Call:
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    model: str | None = None
    version: int | None = None
    images: int = 0
    error: str | None = None  # the error code it was answered with
    api_key: str | None = None  # the key's name, never the key

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


_current: ContextVar[Call | None] = ContextVar("call", default=None)


def begin(given_request_id: str | None = None) -> Call:
    """A new call for this thread; the client's request id when well formed, else a new one."""
    given = given_request_id or ""
    call = Call(given if REQUEST_ID.match(given) else new_request_id())
    _current.set(call)
    return call


def resume(call: Call) -> Call:
    """A call begun earlier for this request, this thread's again."""
    _current.set(call)
    return call


def new_request_id() -> str:
    """32 random hex digits. Not a secret: Python's generator (seeded from the system's at
    start and again in each forked worker) is enough, and cheaper than uuid4's system call
    and UUID object."""
    return f"{random.getrandbits(128):032x}"


def current() -> Call | None:
    return _current.get()


def end() -> None:
    _current.set(None)


def note_model(model: str, version: int) -> None:
    """The model a call went to (refusals after the lookup are labelled with it too)."""
    call = _current.get()
    if call is not None:
        call.model, call.version = model, version


def note_images(images: int) -> None:
    call = _current.get()
    if call is not None:
        call.images = images


def note_error(code: str) -> None:
    call = _current.get()
    if call is not None:
        call.error = code


def note_api_key(name: str) -> None:
    call = _current.get()
    if call is not None:
        call.api_key = name
