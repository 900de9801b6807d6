import re

from service.routes import spec


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


def test_docs_and_demo_pages(client):
    docs = client.get("/docs").get_data(as_text=True)
    for path in spec()["paths"]:
        assert path in docs
    demo = client.get("/")
    assert demo.status_code == 200 and demo.mimetype == "text/html"
    page = demo.get_data(as_text=True)
    assert 'id="file"' in page and "pets" in page and "version 1" in page
