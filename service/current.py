"""The running app's settings and registry, for the views of every protocol."""

from __future__ import annotations

from flask import current_app

from service.registry import Registry
from service.settings import Settings


def settings() -> Settings:
    return current_app.extensions["settings"]


def registry() -> Registry:
    return current_app.extensions["registry"]
