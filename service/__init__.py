"""The prediction service. At a glance:

- settings.py: every setting, declared once; errors.py: every error code with its HTTP status
  and gRPC status code.
- dataplane.py: the one path from any protocol to the models (lookup, limits, queue room,
  decoding, the batcher of classifier/batching.py).
- registry.py, loader.py: which model versions this worker serves, and loading them.
- calls.py, access.py, metrics.py, logs.py, keys.py: what every call is logged, counted and
  checked with, whatever its protocol.
- the feedback loop: monitor.py (after every answer, off the request path: the answers'
  metrics, drift.py's windows, capture.py's sample of the images), feedback.py (labelled
  photos as training data), photos.py (photos named by their content and format).
- protocols/: the thin adapters of each protocol (this service's own REST API, the Open
  Inference Protocol over REST and gRPC, TensorFlow Serving's REST API) with their schemas.
- http/: the HTTP edge (the Flask app that gunicorn runs, routes, API keys, CORS, body limits,
  request logs, OpenAPI and pages); grpc/: the gRPC edge (a server per gunicorn worker).

Nothing outside http/ imports Flask, and nothing outside grpc/ and the gRPC adapter imports
grpc; service/ never imports training/.
"""


def __getattr__(name: str):
    """`service:create_app()`: the app factory by the name ../shared/peers/compare.sh starts it
    with (gunicorn -c service/gunicorn.conf.py 'service:create_app()'). Imported on first use,
    so importing `service` loads no Flask."""
    if name == "create_app":
        from service.http.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
