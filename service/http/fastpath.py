"""POST /predict answered below Flask when the request is plain; Flask answers the rest.

Flask's request context, routing, hooks and Response object cost about 0.2 ms of CPU per
request, as much as everything else the service does around decoding and the model
(docs/benchmarks.md). The commonest request, one or a few photos sent as multipart to
/predict, is answered here, as a WSGI function over the same parts the Flask route uses: the
call and its request id (service/calls.py), the API key check (auth.KeyCheck), the body
limit, the plain-multipart reader (service/protocols/uploads.py), the data plane, the answer
body (service/protocols/own.py), CORS (cors.headers), the metrics and the access log line
(observability.finish). So it answers exactly what the Flask route answers.

Taken: POST /predict without a query string, a Content-Length within MAX_UPLOAD_BYTES, and a
multipart/form-data body. Anything else goes to Flask untouched. A taken request that is not
a plain multipart body, or that fails in any way (no key, a broken image, a full queue, a
model not ready...), is handed to Flask with the body already read and the exception met:
the route raises it there, so every error is answered, logged and counted by Flask's error
handlers, in one shape, on the same call.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

import orjson
from flask import Flask, request
from werkzeug.http import parse_options_header

from service import calls
from service.http import auth, cors, observability, routes
from service.http.jsonbody import OPTIONS
from service.protocols import own
from service.protocols.uploads import plain_images

ROUTE = routes.BY_RULE["/predict"]  # the own predict route, as the route table declares it
PATH = ROUTE.path
# The exception a taken request met, for the route to raise in Flask.
RAISED = "service.fastpath.raised"


class FastPredict:
    """The WSGI app in front of Flask's: plain predict requests here, the rest to Flask."""

    def __init__(self, app: Flask, flask_wsgi: Callable) -> None:
        self.flask_wsgi = flask_wsgi
        self.plane = app.extensions["dataplane"]
        self.key_check: auth.KeyCheck | None = app.extensions.get(auth.KEY_CHECK)
        self.origins = self.plane.settings.origins
        self.config = app.config  # its limits read per request, as Flask reads them

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        length = self._taken(environ)
        if length is None:
            return self.flask_wsgi(environ, start_response)
        call = environ[observability.CALL] = calls.begin(environ.get("HTTP_X_REQUEST_ID"))
        try:
            body = environ["wsgi.input"].read(length)
        except OSError:  # the client went away: Flask finds the body short (400)
            body = b""
        if len(body) < length:
            return self._to_flask(environ, start_response, body)
        try:
            answer = self._predict(environ, body)
        except Exception as exc:  # every error is answered by Flask's handlers
            return self._to_flask(environ, start_response, body, exc)
        if answer is None:
            return self._to_flask(environ, start_response, body)
        data, version = answer
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("X-Model-Version", str(version)),
            ("X-Request-ID", call.request_id),
        ]
        if self.origins:
            headers += [("Vary", "Origin"), *cors.headers(self.origins, environ)]
        start_response("200 OK", headers)
        observability.finish(call, ROUTE.method, ROUTE.rule, 200, inference=ROUTE.inference)
        return [data]

    def _taken(self, environ: dict) -> int | None:
        """The body's length, where this request is one to answer here."""
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != ROUTE.method:
            return None
        if environ.get("QUERY_STRING") or not str(environ.get("CONTENT_TYPE", "")).startswith(
            "multipart/form-data"
        ):
            return None
        length = str(environ.get("CONTENT_LENGTH", ""))
        limit = self.config["MAX_CONTENT_LENGTH"]
        if not length.isdigit() or (limit is not None and int(length) > limit):
            return None  # chunked, or too large: Flask's limits answer it
        return int(length)

    def _predict(self, environ: dict, body: bytes) -> tuple[bytes, int] | None:
        """The JSON answer and the version that gave it; None when the body is not plain."""
        if self.key_check is not None:
            self.key_check(PATH, environ)
        mimetype, options = parse_options_header(environ["CONTENT_TYPE"])
        if mimetype.lower() != "multipart/form-data":
            return None
        limits = self.config["MAX_FORM_PARTS"], self.config["MAX_FORM_MEMORY_SIZE"]
        uploads = plain_images(body, options.get("boundary", ""), *limits)
        if uploads is None:
            return None
        plane = self.plane
        model = plane.model(plane.settings.model_name)
        answer = own.predict_body(model, uploads, plane.predict(model, uploads), None)
        return encode(answer), model.version

    def _to_flask(
        self,
        environ: dict,
        start_response: Callable,
        body: bytes,
        raised: Exception | None = None,
    ) -> Iterable[bytes]:
        """Flask answers the request, from the body read here, on the same call."""
        environ["wsgi.input"] = io.BytesIO(body)
        environ.pop("wsgi.input_terminated", None)  # read within CONTENT_LENGTH, as usual
        if raised is not None:
            environ[RAISED] = raised
        return self.flask_wsgi(environ, start_response)


def encode(answer: dict) -> bytes:
    """As OrjsonProvider encodes Flask's answers (service/http/jsonbody.py): a predict answer
    holds names, file names (read as UTF-8) and probabilities, nothing orjson refuses."""
    return orjson.dumps(answer, option=OPTIONS)


def install(app: Flask) -> None:
    """In front of the app's WSGI function; the route raises what a taken request met."""
    if app.debug:  # debug answers are indented: Flask's own
        return
    view = app.view_functions[ROUTE.endpoint]

    def predict_default(**kwargs):
        raised = request.environ.get(RAISED)
        if raised is not None:
            raise raised
        return view(**kwargs)

    app.view_functions[ROUTE.endpoint] = predict_default
    app.wsgi_app = FastPredict(app, app.wsgi_app)
