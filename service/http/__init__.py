"""The HTTP edge: the Flask app gunicorn runs in each worker (app.py), the route table of every
REST operation (routes.py, from which /openapi.json and the README's table are generated), and
what every request passes through: API keys (auth.py), CORS (cors.py), body limits
(limits.py), the request log and HTTP metrics (observability.py), error bodies (errors.py);
the plain multipart POST /predict answered below Flask over those same parts (fastpath.py);
and the pages (/docs, the demo page, the labelling page, /metrics). The protocols' REST views are in
service/protocols/."""
