"""The Flask app: gunicorn runs `service.http.app:create_app()` in each worker."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from flask import Flask

from classifier.store import ModelStore
from service import logs, settings
from service.capture import CaptureStore
from service.dataplane import DataPlane
from service.drift import DriftWindows
from service.feedback import Feedback, FeedbackStore
from service.http import auth, cors, fastpath, limits, observability, routes
from service.http.errors import register_error_handlers
from service.http.jsonbody import OrjsonProvider
from service.loader import BatchingOptions, Loader
from service.monitor import Monitor
from service.registry import Registry
from service.settings import Settings

log = logging.getLogger(__name__)


class App(Flask):
    """Flask, deciding once per view or hook whether it is a coroutine function: Flask asks
    `inspect.iscoroutinefunction` of each of them on every request."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable, Callable] = {}

    def ensure_sync(self, func: Callable) -> Callable:
        try:
            return self._sync[func]
        except KeyError:
            sync = self._sync[func] = super().ensure_sync(func)
            return sync


def create_app(config: Settings | Mapping[str, object] | None = None) -> Flask:
    """Defaults, then environment, then `config`; then load the models into this process.

    `config` is a Settings, or a mapping of setting names (and of Flask's own keys, such as
    TESTING). Call it only after fork (gunicorn's default, preload_app=False): TensorFlow and
    ONNX Runtime are not fork-safe, so each worker builds its own models.
    """
    cfg, flask_config = _split(config)
    logs.configure_logging(cfg.log_level)
    app = App(__name__, static_folder=None)  # the pages inline their assets
    app.config.update(
        MAX_CONTENT_LENGTH=cfg.max_upload_bytes,
        MAX_FORM_MEMORY_SIZE=cfg.max_form_memory_size,
        MAX_FORM_PARTS=cfg.max_form_parts,
        **flask_config,
    )
    app.json = OrjsonProvider(app)
    app.json.sort_keys = False
    register_error_handlers(app)
    routes.register(app)
    observability.install(app, routes.INFERENCE_RULES)
    auth.install(app, cfg.api_keys_file, cfg.exempt_paths)
    limits.install(app)
    cors.install(app, cfg.origins)

    registry = Registry(cfg.model_name)
    loader = Loader(
        ModelStore(cfg.models_dir),
        registry,
        runtime=cfg.runtime_options,
        batching=BatchingOptions(
            max_batch_size=cfg.max_batch_size,
            timeout_s=cfg.batch_timeout_ms / 1000,
            capacity=cfg.queue_capacity,
        ),
        policy=cfg.policy,
        retire_after_s=cfg.request_deadline_ms / 1000 + 1,
    )
    captures = (
        CaptureStore(cfg.feedback_dir, cfg.capture_max_bytes, cfg.capture_max_age_hours * 3600)
        if cfg.feedback_dir
        else None
    )
    windows = DriftWindows(cfg.drift_window, cfg.drift_psi_threshold)
    plane = DataPlane(registry, cfg, Monitor(registry, windows, captures, cfg.capture_rate))
    store = FeedbackStore(cfg.feedback_dir) if cfg.feedback_dir else None
    app.extensions.update(dataplane=plane, loader=loader, feedback=Feedback(plane, store, captures))
    fastpath.install(app)
    log.info("starting worker", extra={"fields": {"event": "start", "settings": cfg.environment()}})
    loader.warn_about_the_filesystem()
    loader.load_all()
    if store is not None:
        store.prepare(registry.names())
    say_if_nothing_serves(loader, cfg)
    if cfg.model_poll_seconds > 0:
        loader.start_polling(cfg.model_poll_seconds)
    return app


def say_if_nothing_serves(loader: Loader, cfg: Settings) -> None:
    """One line at start when the default model has no loadable version, naming the folder
    looked in (and why its versions were refused): the worker still starts, answers 503
    `model_not_ready` and takes the first valid version published there."""
    state = loader.registry.state(cfg.model_name)
    if state.loaded:
        return
    folder = loader.store.model_dir(cfg.model_name).absolute()
    why = "; ".join(
        [f"v{v}: {reason}" for v, (_, reason) in sorted(state.failures.items())]
        + [f"v{s.version}: {s.error}" for s in state.scanned if s.error]
    )
    log.error(
        "no loadable model: no valid version of %r in %s%s; /readyz and the predict routes "
        "answer 503 until one is published there (MODELS_DIR names another store)",
        cfg.model_name,
        folder,
        f" ({why})" if why else "",
    )


def _split(config: Settings | Mapping[str, object] | None) -> tuple[Settings, dict]:
    """The service's settings, and the keys meant for Flask itself."""
    if isinstance(config, Settings):
        return config, {}
    config = dict(config or {})
    ours = {k: v for k, v in config.items() if k.lower() in Settings.model_fields}
    return settings.load(ours), {k: v for k, v in config.items() if k not in ours}
