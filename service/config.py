"""Service settings: defaults, overridden by environment variables, overridden by test config."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from classifier.runtimes import DEVICES, RUNTIMES
from classifier.spec import DEFAULT_MAX_PIXELS

DEFAULTS: dict[str, object] = {
    "MODELS_DIR": "models",
    "MODEL_NAME": "cats_vs_dogs",
    # Werkzeug enforces these three while reading the body.
    "MAX_CONTENT_LENGTH": 10 * 1024 * 1024,
    # Also bounds the multipart parser's buffer, which must exceed its 64 KiB read size.
    "MAX_FORM_MEMORY_SIZE": 1024 * 1024,
    "MAX_FORM_PARTS": 100,
    "MAX_IMAGE_PIXELS": DEFAULT_MAX_PIXELS,
    "MAX_IMAGES_PER_REQUEST": 64,
    # Inference: runtime "auto" picks TensorFlow on a GPU, else ONNX Runtime, else TensorFlow.
    "RUNTIME": "auto",
    "DEVICE": "auto",
    "MIXED_PRECISION": False,
    "INFERENCE_THREADS": 0,
    # Dynamic batching (defaults chosen from benchmarks/serving.py, see docs/benchmarks.md).
    "MAX_BATCH_SIZE": 16,
    "BATCH_TIMEOUT_MS": 0.0,
    "QUEUE_CAPACITY": 256,
    "REQUEST_DEADLINE_MS": 10_000.0,
    # Hot reload: how often each worker looks for new versions (0 = never), and which to serve.
    "MODEL_POLL_SECONDS": 2.0,
    "MODEL_VERSION_POLICY": "latest",
}


# Settings written to the log when a worker starts.
LOGGED = (
    "MODELS_DIR",
    "MODEL_NAME",
    "RUNTIME",
    "DEVICE",
    "MIXED_PRECISION",
    "MAX_BATCH_SIZE",
    "BATCH_TIMEOUT_MS",
    "QUEUE_CAPACITY",
    "REQUEST_DEADLINE_MS",
    "MODEL_POLL_SECONDS",
    "MODEL_VERSION_POLICY",
    "MAX_CONTENT_LENGTH",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGES_PER_REQUEST",
)


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be a positive integer")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise ValueError("must be a number >= 0")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be an integer >= 0")
    return number


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


def _policy(value: str) -> str:
    from service.models import VersionPolicy

    VersionPolicy.parse(value)
    return value


# Environment variable -> (config key, parser).
ENVIRONMENT: dict[str, tuple[str, Callable[[str], object]]] = {
    "MODELS_DIR": ("MODELS_DIR", str),
    "MODEL_NAME": ("MODEL_NAME", str),
    "MAX_UPLOAD_BYTES": ("MAX_CONTENT_LENGTH", _positive_int),
    "MAX_IMAGE_PIXELS": ("MAX_IMAGE_PIXELS", _positive_int),
    "MAX_IMAGES_PER_REQUEST": ("MAX_IMAGES_PER_REQUEST", _positive_int),
    "RUNTIME": ("RUNTIME", _choice(*RUNTIMES)),
    "DEVICE": ("DEVICE", _choice(*DEVICES)),
    "MIXED_PRECISION": ("MIXED_PRECISION", _boolean),
    "INFERENCE_THREADS": ("INFERENCE_THREADS", _non_negative_int),
    "MAX_BATCH_SIZE": ("MAX_BATCH_SIZE", _positive_int),
    "BATCH_TIMEOUT_MS": ("BATCH_TIMEOUT_MS", _non_negative_float),
    "QUEUE_CAPACITY": ("QUEUE_CAPACITY", _positive_int),
    "REQUEST_DEADLINE_MS": ("REQUEST_DEADLINE_MS", _non_negative_float),
    "MODEL_POLL_SECONDS": ("MODEL_POLL_SECONDS", _non_negative_float),
    "MODEL_VERSION_POLICY": ("MODEL_VERSION_POLICY", _policy),
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


def check(config: Mapping[str, object]) -> None:
    """Refuse settings that cannot work together."""
    if int(config["QUEUE_CAPACITY"]) < int(config["MAX_IMAGES_PER_REQUEST"]):
        raise ConfigError(
            f"QUEUE_CAPACITY ({config['QUEUE_CAPACITY']}) must hold at least one full request "
            f"(MAX_IMAGES_PER_REQUEST={config['MAX_IMAGES_PER_REQUEST']})"
        )
