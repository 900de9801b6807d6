"""The HTTP prediction service. gunicorn runs `service:create_app()` in each worker."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from flask import Flask

from classifier.runtimes import RuntimeOptions
from classifier.store import ModelStore
from service import config as settings
from service import observability
from service.api import bp as api_blueprint
from service.errors import register_error_handlers
from service.models import BatchingOptions, ModelManager, VersionPolicy
from service.observability import configure_logging

log = logging.getLogger(__name__)


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    """Defaults, then environment, then `config`; then load the models into this process.

    Call it only after fork (gunicorn's default, preload_app=False): TensorFlow is not
    fork-safe, so each worker builds its own models.
    """
    configure_logging(os.environ.get("LOG_LEVEL", "info"))
    app = Flask(__name__, static_folder=None)  # the pages inline their assets
    app.config.update(settings.DEFAULTS)
    app.config.update(settings.from_environment())
    if config:
        app.config.update(config)
    app.json.sort_keys = False

    register_error_handlers(app)
    observability.install(app)
    app.register_blueprint(api_blueprint)

    settings.check(app.config)
    cfg = app.config
    manager = ModelManager(
        ModelStore(cfg["MODELS_DIR"]),
        cfg["MODEL_NAME"],
        runtime=RuntimeOptions(
            runtime=cfg["RUNTIME"],
            device=cfg["DEVICE"],
            mixed_precision=bool(cfg["MIXED_PRECISION"]),
            threads=int(cfg["INFERENCE_THREADS"]),
        ),
        batching=BatchingOptions(
            max_batch_size=int(cfg["MAX_BATCH_SIZE"]),
            timeout_s=float(cfg["BATCH_TIMEOUT_MS"]) / 1000,
            capacity=int(cfg["QUEUE_CAPACITY"]),
        ),
        policy=VersionPolicy.parse(str(cfg["MODEL_VERSION_POLICY"])),
        retire_after_s=float(cfg["REQUEST_DEADLINE_MS"]) / 1000 + 1,
    )
    app.extensions["model_manager"] = manager
    log.info(
        "starting worker",
        extra={"fields": {"event": "start", "settings": {k: cfg[k] for k in settings.LOGGED}}},
    )
    manager.load_all()
    if float(cfg["MODEL_POLL_SECONDS"]) > 0:
        manager.start_polling(float(cfg["MODEL_POLL_SECONDS"]))
    return app
