"""Every HTML page's security headers: only its own inline script runs, never framed."""

import re

import pytest

from tests.service.test_openapi import BROWSER_ACCEPT


@pytest.mark.parametrize("path", ["/", "/label", "/docs"])
def test_every_page_runs_only_its_own_script_and_is_never_framed(client, path):
    # Before, the pages were sent without any of these headers.
    response = client.get(path, headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = dict(
        (d.split()[0], d.split()[1:])
        for d in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["connect-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy["script-src"]
    (nonce,) = [s[len("'nonce-") : -1] for s in policy["script-src"] if s.startswith("'nonce-")]
    page = response.get_data(as_text=True)
    inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", page)
    assert inline and all(f'nonce="{nonce}"' in attrs for attrs in inline)
    again = client.get(path, headers={"Accept": BROWSER_ACCEPT})
    assert nonce not in again.headers["Content-Security-Policy"]  # a new one each time


def test_the_labelling_pages_model_parameter_is_documented(client):
    # Before, /openapi.json listed no parameter for /label, which reads ?model=.
    operation = client.get("/openapi.json").get_json()["paths"]["/label"]["get"]
    assert [(p["name"], p["in"], p["required"]) for p in operation["parameters"]] == [
        ("model", "query", False)
    ]
    page = client.get("/label?model=other").get_data(as_text=True)
    assert '"model": "other"' in page
