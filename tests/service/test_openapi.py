import base64
import io
import json
import re

import pytest
from jsonschema import Draft202012Validator
from PIL import Image
from pydantic import BaseModel

from service.http import openapi
from service.http.routes import spec
from service.protocols import own_schemas, payloads, tfserving_schemas, v2_schemas


def flask_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    return routes


def documented() -> set[tuple[str, str]]:
    return {(path, method) for path, ops in spec()["paths"].items() for method in ops}


def test_every_route_is_documented_and_every_documented_route_exists(shared_app):
    assert flask_routes(shared_app) == documented()


def test_served_spec_is_the_spec(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.get_json() == spec()


def test_every_error_status_the_app_sends_is_documented(client):
    paths = spec()["paths"]
    checks = [
        ("/predict", "post", client.post("/predict", data=b"x", content_type="text/plain")),
        ("/predict", "post", client.post("/predict", data=b"x", content_type="image/png")),
        ("/v1/models/{name}:predict", "post", client.post("/v1/models/none:predict")),
        ("/v1/models/{name}", "get", client.get("/v1/models/none")),
    ]
    for path, method, response in checks:
        assert str(response.status_code) in paths[path][method]["responses"], (path, response)


# What Chromium and Firefox send when they open a page.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/webp,*/*;q=0.8"


def test_demo_page(client):
    demo = client.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert demo.status_code == 200 and demo.mimetype == "text/html"
    assert "Accept" in demo.headers["Vary"]
    page = demo.get_data(as_text=True)
    assert 'id="file"' in page and "pets" in page and "version 1" in page


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/html;q=0.5, */*"])
def test_the_root_answers_kserve_liveness_to_other_clients(client, accept):
    answer = client.get("/", headers={"Accept": accept} if accept else {})
    assert answer.status_code == 200 and answer.get_json() == {"status": "alive"}
    assert "Accept" in answer.headers["Vary"]
    documented = spec()["paths"]["/"]["get"]["responses"]["200"]["content"]
    assert set(documented) == {"text/html", "application/json"}


# -- examples --------------------------------------------------------------------------------


def operations():
    for path, ops in spec()["paths"].items():
        for method, operation in ops.items():
            yield path, method, operation


def success(operation) -> str:
    """The status of an operation's success: 200, or 201 where it stores something."""
    [status] = [s for s in operation["responses"] if s in ("200", "201")]
    return status


def json_media(operation) -> list[tuple[str, dict]]:
    """The JSON request body and the JSON success answer of an operation, where it has them."""
    found = []
    if "application/json" in operation.get("requestBody", {}).get("content", {}):
        found.append(("request", operation["requestBody"]["content"]["application/json"]))
    ok = operation["responses"][success(operation)]
    if "application/json" in ok.get("content", {}):
        found.append((success(operation), ok["content"]["application/json"]))
    return found


def test_every_json_body_and_json_answer_has_an_example():
    checked = 0
    for path, method, operation in operations():
        for where, media in json_media(operation):
            assert media.get("examples"), (method, path, where)
            checked += 1
    assert checked >= 30  # every JSON operation of the three protocols, and their bodies


def test_every_path_parameter_has_an_example():
    for path, method, operation in operations():
        for parameter in operation.get("parameters", []):
            assert parameter["schema"].get("examples"), (method, path, parameter["name"])


def test_every_example_fits_its_schema():
    document = spec()
    for path, method, operation in operations():
        for where, media in json_media(operation):
            validator = Draft202012Validator(
                {**media["schema"], "components": document["components"]}
            )
            for name, example in media["examples"].items():
                errors = [e.message for e in validator.iter_errors(example["value"])]
                assert not errors, (method, path, where, name, errors)


def test_every_model_example_validates_with_its_model():
    modules = (payloads, own_schemas, v2_schemas, tfserving_schemas)
    models = {
        m
        for module in modules
        for m in vars(module).values()
        if isinstance(m, type) and issubclass(m, BaseModel)
    }
    with_examples = [m for m in models if openapi.examples_of(m)]
    assert len(with_examples) >= 18
    for model in with_examples:
        for example in openapi.examples_of(model):
            model.model_validate(example)


def test_the_examples_are_realistic():
    examples = json.dumps(spec())
    assert payloads.EXAMPLE_MODEL == "cats_vs_dogs" and '"cats_vs_dogs"' in examples
    assert Image.open(io.BytesIO(base64.b64decode(payloads.EXAMPLE_PNG))).size == (1, 1)
    assert sum(payloads.EXAMPLE_PROBABILITIES.values()) == pytest.approx(1)


def fill(path: str) -> str:
    return path.replace("{name}", "pets").replace("{version}", "1")


def test_every_json_request_example_is_answered_with_200(client):
    """The request examples work as they stand (on the test model "pets"); the answer fits."""
    sent = 0
    for path, method, operation in operations():
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" not in content or "{label}" in path:  # no labels configured
            continue
        if path.endswith("/feedback"):  # names a captured request: tests/service/test_loop_e2e.py
            continue
        answer = Draft202012Validator(
            {
                **operation["responses"]["200"]["content"]["application/json"]["schema"],
                "components": spec()["components"],
            }
        )
        for name, example in content["application/json"]["examples"].items():
            response = client.open(fill(path), method=method.upper(), json=example["value"])
            assert response.status_code == 200, (path, name, response.get_json())
            assert not list(answer.iter_errors(response.get_json())), (path, name)
            sent += 1
    assert sent >= 10
