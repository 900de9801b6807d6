"""The HTTP edge's observability: a call per request (request id, access log line) and the
HTTP metrics."""

from __future__ import annotations

from flask import Flask, Response, g, request

from service import access, calls, metrics

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def install(app: Flask, inference_rules: frozenset[str]) -> None:
    """Request ids, metrics and the access log; `inference_rules` count as predictions."""

    @app.before_request
    def _start() -> None:
        g.call = calls.begin(request.headers.get("X-Request-ID"))

    @app.after_request
    def _finish(response: Response) -> Response:
        call = g.get("call") or calls.begin()
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        response.headers["X-Request-ID"] = call.request_id
        method = request.method if request.method in _METHODS else "other"  # bounded labels
        status = response.status_code
        metrics.HTTP_REQUESTS.labels(endpoint, method, str(status)).inc()
        metrics.HTTP_LATENCY.labels(endpoint).observe(call.elapsed())
        if call.api_key:
            metrics.API_KEY_REQUESTS.labels(call.api_key, str(status)).inc()
        access.finish(
            call,
            method=request.method,
            endpoint=endpoint,
            status=status,
            ok=status == 200,
            # a CORS preflight (OPTIONS) or HEAD on a predict route asks nothing of the model
            inference=endpoint in inference_rules and request.method == "POST",
        )
        calls.end()
        return response
