"""Every gRPC call, whatever its service: its request id (the `x-request-id` metadata when well
formed, sent back in the initial metadata), the API key check (`authorization: Bearer <key>` or
`x-api-key` metadata), its error answered with the status code of service/errors.py and the
message, one access log line and the gRPC metrics, as the HTTP edge does for a request."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import grpc

from classifier.errors import ClassifierError
from service import access, calls, keys, metrics
from service.errors import STATUS, grpc_status, http_status

log = logging.getLogger(__name__)
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
Failure = tuple[grpc.StatusCode, str]
DEADLINE_SLACK_S = 0.5
UNMATCHED = "unmatched"  # the method label of a call to an unknown method (HTTP's for a path)


class CallInterceptor(grpc.ServerInterceptor):
    """Wraps every method handler of the server (inference, health, reflection)."""

    def __init__(self, key_file: keys.KeyFile | None, exempt_paths: tuple[str, ...]) -> None:
        self.key_file = key_file
        self.exempt_paths = exempt_paths
        self._open: dict[object, Callable[[], None]] = {}  # callback streams: their ends
        self._lock = threading.Lock()
        self._server_state: object = None  # grpc's, read by _over_limit

    def attach(self, server: grpc.Server) -> None:
        """The server these calls come to: its limit of concurrent calls is read per call."""
        self._server_state = getattr(server, "_state", None)

    def _over_limit(self) -> bool:
        """Whether grpc refuses this call past `maximum_concurrent_rpcs` (RESOURCE_EXHAUSTED,
        "Concurrent RPC limit exceeded!"): it decides after this interceptor and then runs no
        handler, so the refusal is logged from here. grpc has no public hook for it: this reads
        its own count, as it did, under the lock it holds while it calls the interceptor."""
        limit = getattr(self._server_state, "maximum_concurrent_rpcs", None)
        active = getattr(self._server_state, "active_rpc_count", 0)
        return limit is not None and active >= limit

    def end_streams(self) -> None:
        """End every open callback stream (health's Watch) with OK, after the messages sent
        to it: they never end by themselves, so a stopping server would otherwise wait its
        whole grace period for them (and a client watching would learn nothing new)."""
        with self._lock:
            ends = list(self._open.values())
        for end in ends:
            end()

    def intercept_service(
        self, continuation: Callable, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        """The method's handler, wrapped; its request bytes are read inside the wrapper (grpc
        itself is given no deserializer), so bytes that are not the method's message are
        INVALID_ARGUMENT like any bad request: grpc's own answer to a deserializer that
        raises is INTERNAL, and the call would never reach the wrapper to be logged."""
        handler = continuation(details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED
            _refused(details, UNMATCHED, grpc.StatusCode.UNIMPLEMENTED)
            return None
        method = details.method
        if self._over_limit():  # grpc refuses it without calling the handler
            _refused(details, method, grpc.StatusCode.RESOURCE_EXHAUSTED)
            return handler
        parse = parser(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method, parse),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:  # health's Watch
            behavior = handler.unary_stream
            if getattr(behavior, "experimental_non_blocking", False):
                behavior = self._non_blocking(behavior, method, parse)
            else:
                behavior = self._stream(behavior, method, parse)
            return grpc.unary_stream_rpc_method_handler(
                behavior, response_serializer=handler.response_serializer
            )
        if handler.stream_stream is not None:  # reflection
            return grpc.stream_stream_rpc_method_handler(
                self._stream(handler.stream_stream, method, lambda each: map(parse, each)),
                response_serializer=handler.response_serializer,
            )
        return handler

    def _unary(self, behavior: Callable, method: str, parse: Callable) -> Callable:
        def call(data: bytes, context: grpc.ServicerContext):
            record, metadata = _begin(context)
            response, failure = None, None
            try:
                self._admit(method, record, metadata, context)
                response = behavior(parse(data), context)
            except ClassifierError as exc:
                failure = refusal(exc)
            except Exception:
                failure = unexpected(context, method)
            finally:
                _finish(record, method, failure[0] if failure else _answered(context))
            if failure is not None:
                context.abort(*failure)
            return response

        return call

    def _stream(self, behavior: Callable, method: str, read: Callable) -> Callable:
        """A stream answered by a generator (reflection): logged and counted once, when it
        ends, with the status it ended with."""

        def call(data, context: grpc.ServicerContext) -> Iterator:
            record, metadata = _begin(context)
            failure = None
            try:
                self._admit(method, record, metadata, context)
                yield from behavior(read(data), context)
            except ClassifierError as exc:
                failure = refusal(exc)
            except GeneratorExit:  # grpc stopped reading it: the client went away
                failure = grpc.StatusCode.CANCELLED, ""
                raise
            except Exception:
                failure = unexpected(context, method)
            finally:
                _finish(record, method, failure[0] if failure else _answered(context))
            if failure is not None:
                context.abort(*failure)

        return call

    def _non_blocking(self, behavior: Callable, method: str, parse: Callable) -> Callable:
        """A stream its servicer answers through a callback, as health's Watch does: it holds
        a thread only while it starts, not while it waits for a change (a generator would hold
        one of the GUNICORN_THREADS for as long as the stream is open, and its place among the
        server's concurrent calls: two open Watches would stop a server of two threads).
        Logged and counted once, when it ends (from grpc's callback at its end)."""

        def call(data: bytes, context: grpc.ServicerContext, send_response_callback: Callable):
            record, metadata = _begin(context)
            try:
                self._admit(method, record, metadata, context)
                request = parse(data)
            except ClassifierError as exc:
                failure = refusal(exc)
                _finish(record, method, failure[0])
                context.abort(*failure)
            except Exception:  # grpc's own, e.g. the client cancelled before it began
                _finish(record, method, _ended(context))
                return
            key, ended = object(), threading.Event()

            def end() -> None:  # by the server, at its stop
                ended.set()
                send_response_callback(None)

            def finish() -> None:
                with self._lock:
                    self._open.pop(key, None)
                _finish(record, method, grpc.StatusCode.OK if ended.is_set() else _ended(context))

            with self._lock:
                self._open[key] = end
            if not context.add_callback(finish):
                finish()  # it has ended already
                return
            try:
                behavior(request, context, send_response_callback)
            except Exception:
                context.abort(*unexpected(context, method))  # logged at its end, INTERNAL
            finally:
                calls.end()

        call.experimental_non_blocking = True  # grpc then passes the callback
        return call

    def _admit(
        self,
        method: str,
        record: calls.Call,
        metadata: dict[str, str],
        context: grpc.ServicerContext,
    ) -> None:
        """The call's request id sent back, then its key checked (raises ClassifierError)."""
        context.send_initial_metadata((("x-request-id", record.request_id),))
        self._authorize(method, metadata)

    def _authorize(self, method: str, metadata: dict[str, str]) -> None:
        """With API keys on, every method but the exempt ones needs a known key."""
        if self.key_file is None or keys.exempt(method, self.exempt_paths):
            return
        presented = []
        key = keys.bearer(metadata.get("authorization", ""))
        if key:
            presented.append(key)
        if metadata.get("x-api-key"):
            presented.append(metadata["x-api-key"])
        calls.note_api_key(keys.check(self.key_file, presented))


def _begin(context: grpc.ServicerContext) -> tuple[calls.Call, dict[str, str]]:
    """A call for this thread, under the client's request id when it sent a good one."""
    metadata = dict(context.invocation_metadata())
    return calls.begin(metadata.get("x-request-id")), metadata


def _refused(details: grpc.HandlerCallDetails, method: str, code: grpc.StatusCode) -> None:
    """A call grpc answers itself, no handler of ours run: its log line and count, here."""
    metadata = dict(details.invocation_metadata or ())
    _finish(calls.begin(metadata.get("x-request-id")), method, code)


def parser(deserialize: Callable[[bytes], object] | None) -> Callable[[bytes], object]:
    """A method's deserializer that raises a coded error (INVALID_ARGUMENT) for bytes that are
    not its message: not protobuf, cut short, a string field that is not UTF-8."""
    if deserialize is None:
        return lambda data: data
    message = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)
    name = message.full_name if message is not None else "request"

    def parse(data: bytes) -> object:
        try:
            return deserialize(data)
        except Exception:
            raise ClassifierError(
                f"the request is not a valid {name} message (not protobuf, cut short, or a "
                "string field that is not UTF-8)",
                code="invalid_request",
            ) from None

    return parse


def refusal(exc: ClassifierError) -> Failure:
    """The status code and message a coded error is answered with (as the HTTP edge does:
    a code missing from the table is a bug, answered INTERNAL; server errors are logged)."""
    if exc.code not in STATUS:
        log.error("unmapped error %s: %s", exc.code, exc.message)
        calls.note_error("internal_error")
        return grpc.StatusCode.INTERNAL, "internal server error"
    if http_status(exc.code) >= 500:
        log.error("%s: %s", exc.code, exc.message)
    calls.note_error(exc.code)
    return grpc.StatusCode[grpc_status(exc.code)], exc.message


def unexpected(context: grpc.ServicerContext, method: str) -> Failure:
    """A bug (logged, INTERNAL without details), or a call its client gave up on meanwhile."""
    if not context.is_active():  # logged with the status CANCELLED, no error code of ours
        return grpc.StatusCode.CANCELLED, "the call ended before its answer"
    log.exception("unhandled error in %s", method)
    calls.note_error("internal_error")
    return grpc.StatusCode.INTERNAL, "internal server error"


def _answered(context: grpc.ServicerContext) -> grpc.StatusCode:
    """The status of a call its servicer answered: OK, or the code it set (health's Check sets
    NOT_FOUND for an unknown service); a call its client cancelled, or whose deadline passed,
    meanwhile ended as that: the answer never reached the client."""
    if context.code() is None and not context.is_active():
        return _ended(context)
    return context.code() or grpc.StatusCode.OK


def _ended(context: grpc.ServicerContext) -> grpc.StatusCode:
    """The status of a stream that ended without an answer of ours: the code its servicer
    set, DEADLINE_EXCEEDED at its deadline, else CANCELLED (the client went away, or the
    server stopped). "At": within DEADLINE_SLACK_S of it, as the client's deadline passes
    first (its clock started before the server got the call) and it cancels the stream."""
    if context.code() is not None:
        return context.code()
    if context.time_remaining() <= DEADLINE_SLACK_S:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


def _finish(record: calls.Call, method: str, code: grpc.StatusCode) -> None:
    metrics.GRPC_REQUESTS.labels(method, code.name).inc()
    metrics.GRPC_LATENCY.labels(method).observe(record.elapsed())
    access.finish(
        record,
        method="GRPC",
        endpoint=method,
        status=code.name,
        ok=code == grpc.StatusCode.OK,
        inference=method == INFER_METHOD,
    )
    calls.end()
