"""The HTTP edge's pages: the demo page (or, to clients that do not ask for HTML, KServe's
V1 liveness), the labelling page and Prometheus' /metrics (the /docs page is
service/http/docs_page.py)."""

from __future__ import annotations

import secrets

from flask import Response, make_response, render_template, request

from classifier.errors import ClassifierError
from service import metrics
from service.protocols import loop, own_schemas
from service.protocols.rest import answer, dataplane

# Every page's policy: its own inline script runs (by this response's nonce) and nothing else
# (an injected <script> or on* attribute does not); it talks to, and loads from, this server
# only (blob: for the previews it makes, data: for Swagger UI's icons); it is never framed
# (the labelling page's buttons under another site's page), and sends no form anywhere.
CSP = (
    "default-src 'none'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def page(template: str, **context) -> Response:
    """An HTML page (`template` gets `nonce` for its inline script) with its security headers."""
    nonce = secrets.token_urlsafe(16)
    response = make_response(render_template(template, nonce=nonce, **context))
    response.headers["Content-Security-Policy"] = CSP.format(nonce=nonce)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def prometheus_metrics():
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


def wants_html() -> bool:
    """Whether the client asked for HTML over JSON (a browser does; `*/*`, KServe's SDK and
    curl do not)."""
    accept = request.accept_mimetypes
    return accept["text/html"] > accept["application/json"]


def root():
    """`GET /`: the demo page for browsers; KServe's V1 liveness, `{"status": "alive"}`, for
    every other client."""
    response = demo() if wants_html() else answer(own_schemas.Alive(status="alive"))
    response = make_response(response)
    response.vary.add("Accept")
    return response


def demo():
    """The demo page, told what the default model is: its classes and version, or why it is
    not loaded yet (the page then says so, and stays usable)."""
    plane = dataplane()
    name = plane.registry.default_name
    try:
        model = plane.registry.get(name)
    except ClassifierError as exc:
        model, not_ready = None, exc.message
    else:
        not_ready = None
    return page(
        "index.html",
        model=name,
        version=model.version if model else None,
        class_names=list(model.predictor.class_names) if model else [],
        not_ready=not_ready,
        max_images=plane.settings.max_images_per_request,
        max_upload_bytes=plane.settings.max_upload_bytes,
    )


def label():
    """The labelling page of `?model=` (default: the default model). It holds no data: it
    loads the captured images with the API's own calls (and the API key typed in, when keys
    are on), so it is served without a key."""
    plane = dataplane()
    return page(
        "label.html",
        model=request.args.get("model") or plane.registry.default_name,
        capture_rate=plane.settings.capture_rate,
        feedback_on=bool(plane.settings.feedback_dir),
        limit=loop.DEFAULT_LIMIT,
    )
