"""JSON answers through orjson hold the values Flask's encoder would send, including those
orjson itself refuses."""

from __future__ import annotations

import json

from flask import Flask

from service.http.jsonbody import OrjsonProvider


def answer(value: object) -> bytes:
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    app.json.sort_keys = False  # as the service sets it
    with app.app_context():
        return app.json.response(value).get_data()


def test_answers_are_compact_utf8_lines():
    assert answer({"b": "é", "a": [1, 2.5, None]}) == '{"b":"é","a":[1,2.5,null]}\n'.encode()


def test_what_orjson_refuses_goes_out_as_flask_sends_it():
    """A lone surrogate (a request's "\\ud800" escape echoed back) and an integer past 64 bits:
    before, orjson's TypeError made the answer a 500."""
    for value in ({"id": "\ud800"}, {"n": 2**70}):
        assert json.loads(answer(value)) == value
