"""Service settings: defaults, overridden by environment variables, overridden by test config."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from classifier.spec import DEFAULT_MAX_PIXELS

DEFAULTS: dict[str, object] = {
    "MODELS_DIR": "models",
    "MODEL_NAME": "cats_vs_dogs",
    # Werkzeug enforces these three while reading the body.
    "MAX_CONTENT_LENGTH": 10 * 1024 * 1024,
    "MAX_FORM_MEMORY_SIZE": 64 * 1024,
    "MAX_FORM_PARTS": 100,
    "MAX_IMAGE_PIXELS": DEFAULT_MAX_PIXELS,
    "MAX_IMAGES_PER_REQUEST": 64,
}


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be a positive integer")
    return number


# Environment variable -> (config key, parser).
ENVIRONMENT: dict[str, tuple[str, Callable[[str], object]]] = {
    "MODELS_DIR": ("MODELS_DIR", str),
    "MODEL_NAME": ("MODEL_NAME", str),
    "MAX_UPLOAD_BYTES": ("MAX_CONTENT_LENGTH", _positive_int),
    "MAX_IMAGE_PIXELS": ("MAX_IMAGE_PIXELS", _positive_int),
    "MAX_IMAGES_PER_REQUEST": ("MAX_IMAGES_PER_REQUEST", _positive_int),
}


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    environ = os.environ if environ is None else environ
    settings: dict[str, object] = {}
    for variable, (key, parse) in ENVIRONMENT.items():
        raw = environ.get(variable)
        if raw is None or raw == "":
            continue
        try:
            settings[key] = parse(raw)
        except ValueError as exc:
            raise ConfigError(f"environment variable {variable}={raw!r}: {exc}") from None
    return settings
