"""Shared fixtures: a temporary model store holding a real Keras model, and the Flask app on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from service.http.app import create_app
from tests.helpers import SHARED_DATA, app_config, publish_model

CONTAINERS = Path(__file__).resolve().parent / "containers"


def pytest_addoption(parser):
    parser.addoption(
        "--containers",
        action="store_true",
        help="run tests/containers (make test-containers): builds the images and runs them "
        "on a Docker engine that it installs and starts when missing; skipped otherwise",
    )


def pytest_ignore_collect(collection_path, config):
    """tests/containers only with --containers: minutes of builds, and root for the engine."""
    if not config.getoption("containers") and CONTAINERS in (
        collection_path,
        *collection_path.parents,
    ):
        return True
    return None


@pytest.fixture(scope="session")
def models_template(tmp_path_factory) -> Path:
    """A store with model 'pets' v1 (64x64 input); copied per test that changes it."""
    root = tmp_path_factory.mktemp("models-template")
    publish_model(root, "pets")
    return root


@pytest.fixture
def models_dir(models_template, tmp_path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(models_template, target)
    return target


@pytest.fixture(scope="session")
def shared_app(models_template):
    """One app for the tests that only read; building an app loads a TensorFlow model."""
    return create_app(app_config(models_template))


@pytest.fixture
def app(models_dir):
    return create_app(app_config(models_dir))


@pytest.fixture
def client(shared_app):
    return shared_app.test_client()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real photos not present at {SHARED_DATA.parent.parent.name}/data")
    return SHARED_DATA
