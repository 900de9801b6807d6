"""CORS: off by default; allowed origins get the headers, preflights are answered."""

import pytest

from service.http.app import create_app
from tests.helpers import app_config, jpeg_bytes

ORIGIN = "https://app.example"


@pytest.fixture
def cors_client(models_dir):
    return create_app(
        app_config(models_dir, CORS_ORIGINS=f"{ORIGIN}/, https://b.example")
    ).test_client()


def test_no_cors_headers_by_default(client):
    response = client.get("/healthz", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_an_allowed_origin_is_echoed_and_never_with_credentials(cors_client):
    response = cors_client.post(
        "/predict", data=jpeg_bytes(), content_type="image/jpeg", headers={"Origin": ORIGIN}
    )
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in response.headers["Vary"]
    assert "X-Model-Version" in response.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_other_origins_get_nothing(cors_client):
    response = cors_client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("headers", [{}, {"Origin": "https://evil.example"}])
def test_every_answer_varies_on_origin_where_cors_is_on(cors_client, client, headers):
    """Before: only an allowed origin's answer said so, and a shared cache could hand the
    answer stored for a request without Origin (no Allow-Origin) to an allowed origin."""
    response = cors_client.get("/v1/models/pets", headers=headers)
    assert "Origin" in response.vary
    assert "Origin" not in client.get("/v1/models/pets", headers=headers).vary  # CORS off


def test_a_preflight_is_answered_even_with_keys_on(models_dir, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("")
    config = app_config(models_dir, CORS_ORIGINS=ORIGIN, API_KEYS_FILE=str(keys))
    response = (
        create_app(config)
        .test_client()
        .options(
            "/v2/models/pets/infer",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, x-api-key",
            },
        )
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "X-API-Key" in response.headers["Access-Control-Allow-Headers"]


def test_star_allows_any_origin_without_credentials(models_dir):
    client = create_app(app_config(models_dir, CORS_ORIGINS="*")).test_client()
    response = client.get("/healthz", headers={"Origin": "https://anyone.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize(
    "origin", ["http://localhost:5173", "http://[::1]:8080", "chrome-extension://abcdef"]
)
def test_any_origin_a_browser_sends_is_a_valid_setting(models_dir, origin):
    client = create_app(app_config(models_dir, CORS_ORIGINS=origin)).test_client()
    response = client.get("/healthz", headers={"Origin": origin})
    assert response.headers["Access-Control-Allow-Origin"] == origin
