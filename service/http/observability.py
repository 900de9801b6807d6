"""The HTTP edge's observability: a call per request (request id, access log line) and the
HTTP metrics, for the Flask routes and the predict fast path (service/http/fastpath.py) alike."""

from __future__ import annotations

from flask import Flask, Response, g, request

from service import access, calls, metrics
from service.calls import Call

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The call a request began in the fast path before Flask was handed it (service/http/fastpath.py):
# one request, one call, one access log line.
CALL = "service.call"


def install(app: Flask, inference_rules: frozenset[str]) -> None:
    """Request ids, metrics and the access log; `inference_rules` count as predictions."""

    @app.before_request
    def _start() -> None:
        begun = request.environ.get(CALL)
        g.call = calls.resume(begun) if begun else calls.begin(request.headers.get("X-Request-ID"))

    @app.after_request
    def _finish(response: Response) -> Response:
        call = g.get("call") or calls.begin()
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        response.headers["X-Request-ID"] = call.request_id
        finish(
            call,
            request.method,
            endpoint,
            response.status_code,
            # a CORS preflight (OPTIONS) or HEAD on a predict route asks nothing of the model
            inference=endpoint in inference_rules and request.method == "POST",
        )
        return response


def finish(call: Call, method: str, endpoint: str, status: int, *, inference: bool) -> None:
    """The HTTP metrics, the access log line (and the inference metrics), and the call ended."""
    label = method if method in _METHODS else "other"  # bounded labels
    metrics.HTTP_REQUESTS.labels(endpoint, label, str(status)).inc()
    metrics.HTTP_LATENCY.labels(endpoint).observe(call.elapsed())
    if call.api_key:
        metrics.API_KEY_REQUESTS.labels(call.api_key, str(status)).inc()
    access.finish(
        call, method=method, endpoint=endpoint, status=status, ok=status == 200,
        inference=inference,
    )  # fmt: skip
    calls.end()
