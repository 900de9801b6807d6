"""The /docs page: Swagger UI over /openapi.json, with Swagger UI's JavaScript and CSS served
by this service from the installed flask-swagger-ui package (its dist folder holds Swagger
UI's release files). No CDN, no web fonts: the page works offline and fetches nothing but
this server's own URLs."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from flask import Response, abort, send_from_directory

from service.http import pages

# Swagger UI's release files, as the package ships them.
ASSETS = Path(str(files("flask_swagger_ui") / "dist"))
# Only scripts and style sheets are served, with a type that does not depend on the host's
# mime.types (Python's own table gives .js another type on 3.11 than on 3.12).
TYPES = {".js": "text/javascript", ".css": "text/css"}
PAGE_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js")  # what docs.html loads


def page(spec: dict) -> Response:
    return pages.page("docs.html", spec=spec)


def asset(filename: str) -> Response:
    """One file of Swagger UI's dist folder; send_from_directory refuses `..` and absolute
    paths (404), and the route's converter takes no `/`, so nothing outside it is reached."""
    mimetype = TYPES.get(Path(filename).suffix)
    if mimetype is None:
        abort(404)
    return send_from_directory(ASSETS, filename, mimetype=mimetype)
