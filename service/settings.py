"""Every service setting, declared once: type, default, bounds and meaning.

Read from the environment (no prefix: `PORT`, `MODELS_DIR`, ...) by gunicorn.conf.py in the
master and by `create_app` in each worker. The README's settings table is generated from
this class (`python -m service.doc_tables --write`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from classifier import hardware
from classifier.errors import ClassifierError
from classifier.numbers import whole_number
from classifier.runtimes import (
    DEVICES,
    PRECISIONS,
    RUNTIMES,
    RuntimeOptions,
    bf16_refusal,
    runs_tensorflow,
    runtime_refusal,
)
from classifier.spec import DEFAULT_MAX_PIXELS
from classifier.store import DEFAULT_MODEL, default_models_dir, validate_name
from service.registry import VersionPolicy

Runtime = Literal[RUNTIMES]  # type: ignore[valid-type]
Device = Literal[DEVICES]  # type: ignore[valid-type]
Precision = Literal[PRECISIONS]  # type: ignore[valid-type]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
# The longest wait a setting may ask for (a day). Past it is a mistake, and infinity or
# 1e308 ms overflow Python's waits (OverflowError): every request a 500, the poller dead.
MAX_WAIT_SECONDS = 24 * 3600
# An origin as a browser sends it in `Origin`: lower case, no path, no default port.
ORIGIN = re.compile(
    r"[a-z][a-z0-9+.-]*://(?:[a-z0-9_.-]+|\[[0-9a-f:.]+\])(?::(?P<port>[1-9][0-9]{0,4}))?"
)
DEFAULT_PORTS = {"http": "80", "https": "443"}


class Settings(BaseSettings):
    """The service's settings; environment variables are the field names in capitals."""

    model_config = SettingsConfigDict(
        case_sensitive=False, env_ignore_empty=True, extra="forbid", frozen=True
    )

    # -- gunicorn (read by service/gunicorn.conf.py) -------------------------------------
    host: str = Field(
        "127.0.0.1",
        description="address to bind (IPv6 as `::` or `[::]`); the Docker image, compose and "
        "the Kubernetes manifests set `0.0.0.0`",
    )
    port: int = Field(8000, ge=1, le=65535, description="port to listen on")
    grpc_port: int = Field(
        8001,
        ge=0,
        le=65535,
        description="port of the Open Inference Protocol over gRPC, on `HOST` (0: no gRPC); "
        "every worker serves it (SO_REUSEPORT)",
    )
    web_concurrency: int = Field(
        0,
        ge=0,
        description="gunicorn worker processes (0: one per two cores found, at least one; one "
        "where models run on TensorFlow, as on a GPU). Each holds its own models: a worker is "
        "about 300-480 MB on the CPU runtimes; docs/benchmarks.md measures 1 to 8 on 16 cores",
    )
    gunicorn_threads: int = Field(
        64, ge=1, description="request threads per worker: enough to keep the batcher fed"
    )
    gunicorn_timeout: int = Field(
        120, ge=1, description="seconds a worker may stay silent before gunicorn restarts it"
    )
    graceful_timeout: int = Field(
        30,
        ge=0,
        le=MAX_WAIT_SECONDS,
        description="on SIGTERM, seconds the requests in flight get to finish",
    )
    log_level: LogLevel = Field("info", description="log level")

    # -- models -------------------------------------------------------------------------
    models_dir: str = Field(
        "",
        validate_default=True,
        description="model store root; empty: the `models` folder of the checkout the service "
        "runs from (`make serve`'s), whatever the current directory (installed without a "
        "checkout: `models` in the current directory)",
    )
    model_name: str = Field(DEFAULT_MODEL, description="the default model, served on `/predict`")
    model_poll_seconds: float = Field(
        2.0,
        ge=0,
        le=MAX_WAIT_SECONDS,
        description="how often each worker looks for new versions (0: never)",
    )
    model_version_policy: str = Field(
        "latest",
        description="`latest`, `latest:N` (the newest N valid versions) or `specific:1,3`",
    )

    version_labels: str = Field(
        "",
        description="TensorFlow Serving version labels for `/v1/models/<name>/labels/<label>`, "
        "e.g. `stable=3,canary=4`",
    )

    # -- request limits -----------------------------------------------------------------
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1, description="request body limit (10 MiB)")
    max_form_memory_size: int = Field(
        1024 * 1024,
        gt=64 * 1024,
        description="largest multipart field held in memory; above the parser's 64 KiB read size",
    )
    max_form_parts: int = Field(100, ge=1, description="most parts in one multipart body")
    max_image_pixels: int = Field(
        DEFAULT_MAX_PIXELS, ge=1, description="pixel limit per image, checked before decoding"
    )
    max_images_per_request: int = Field(64, ge=1, description="images in one request")
    max_json_bytes: int = Field(
        8 * 1024 * 1024,
        ge=2,
        description="largest JSON body (or V2 JSON header); the lower of it and "
        "`MAX_UPLOAD_BYTES` applies",
    )
    max_json_depth: int = Field(
        32, ge=2, le=500, description="deepest nesting of arrays and objects in a JSON body"
    )

    # -- access -------------------------------------------------------------------------
    api_keys_file: str = Field(
        "",
        description="file of API key hashes, one `name:sha256` per line (`classifier-api-key "
        "NAME` makes one); empty: no keys needed. Re-read when it changes",
    )
    api_key_exempt_paths: str = Field(
        "/healthz,/readyz,/,/label,/grpc.health.v1.Health/*",
        description="paths served without a key when keys are on, comma-separated; a "
        "trailing `*` matches a prefix; gRPC methods by their path `/package.Service/Method`",
    )
    cors_origins: str = Field(
        "",
        description="origins allowed to call the API from a browser, comma-separated, each "
        "as the browser sends it (`https://app.example`, `http://localhost:3000`; `*` for any, "
        "never with credentials); empty: no CORS headers",
    )

    # -- inference ----------------------------------------------------------------------
    runtime: Runtime = Field(
        "auto",
        description="`auto`: TensorFlow on a GPU; on a CPU with native bf16 (AMX or AVX-512 "
        "BF16) OpenVINO in bf16 once it passes a parity check; else ONNX Runtime in fp32 "
        "(TensorFlow where a version has no `model.onnx`); or one of them by name",
    )
    precision: Precision = Field(
        "auto",
        description="`auto`: bf16 where the CPU computes it natively (else fp32, with a log "
        "line); `bf16` refuses to start where it cannot run; `fp32` everywhere",
    )
    device: Device = Field(
        "auto", description="TensorFlow's device (GPU memory growth is always on)"
    )
    mixed_precision: bool = Field(
        False,
        description="run the TensorFlow model in float16 with float32 weights and output (GPU)",
    )
    inference_threads: int = Field(
        0,
        ge=0,
        description="CPU threads for one model call (0: this worker's share of the cores, "
        "cores ÷ the workers, at least one)",
    )
    inference_lanes: int = Field(
        0,
        ge=0,
        description="ONNX Runtime and OpenVINO: batches that may run at once under load (a "
        "second once a full batch waits), sharing the inference threads, while a batch alone "
        "runs on all of them (0: two on ONNX Runtime where there are two threads or more, one "
        "on OpenVINO; 1: one batch at a time). "
        "Two lanes cost about 190 MB (ONNX Runtime) or 180-320 MB (OpenVINO) more per "
        "worker and loaded version than one (batches up to 16; docs/benchmarks.md)",
    )
    max_batch_size: int = Field(16, ge=1, description="most images in one model call")
    batch_timeout_ms: float = Field(
        0.0,
        ge=0,
        description="how long a batch waits for more images after its first; less than "
        "`REQUEST_DEADLINE_MS`",
    )
    queue_capacity: int = Field(
        256,
        ge=1,
        description="images waiting for the model; beyond it requests get 503 with `Retry-After`",
    )
    request_deadline_ms: float = Field(
        10_000.0,
        gt=0,
        le=MAX_WAIT_SECONDS * 1000,
        description="a request not answered by then, counted from when its images are read "
        "(their decoding counts), gets 504: no further image is decoded, it leaves the queue",
    )

    # -- the feedback loop: capture, feedback, drift --------------------------------------
    feedback_dir: str = Field(
        "",
        description="folder of labelled feedback (`<model>/<label>/<sha256>.<ext>` and "
        "`<model>/feedback.jsonl`) and of captured requests (`.captured/`); empty: no "
        "feedback and no capture",
    )
    capture_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="fraction of served images kept under `FEEDBACK_DIR/.captured/` with their "
        "request id, version, answer and time, for labelling (0: none; needs `FEEDBACK_DIR`)",
    )
    capture_max_bytes: int = Field(
        1024**3,
        ge=1,
        description="most bytes the captured requests may take (1 GiB); the oldest go first",
    )
    capture_max_age_hours: float = Field(
        24 * 30.0, gt=0, description="captured requests older than this are removed (30 days)"
    )
    drift_window: int = Field(
        1000, ge=1, description="answers per model version and worker that drift is measured over"
    )
    drift_psi_threshold: float = Field(
        0.2,
        gt=0,
        description="population stability index from which a model's answers are drifting",
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        """`[::1]` as `::1`: the brackets belong to an address with a port, not to the host."""
        return value[1:-1] if value.startswith("[") and value.endswith("]") else value

    @field_validator("models_dir")
    @classmethod
    def _models_dir(cls, value: str) -> str:
        return value or str(default_models_dir())

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, value: str) -> str:
        try:
            return validate_name(value)
        except ClassifierError as exc:
            raise ValueError(exc.message) from None

    @field_validator("model_version_policy")
    @classmethod
    def _policy(cls, value: str) -> str:
        VersionPolicy.parse(value)
        return value

    @field_validator("version_labels")
    @classmethod
    def _labels(cls, value: str) -> str:
        parse_labels(value)
        return value

    @field_validator("api_key_exempt_paths")
    @classmethod
    def _exempt_paths(cls, value: str) -> str:
        rule = (
            "each is a path from its leading / (an HTTP path, or a gRPC method's "
            "/package.Service/Method), with * only at its end"
        )
        matchable(parse_list(value), lambda p: p.startswith("/") and "*" not in p[:-1], rule)
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        rule = (
            "an origin is scheme://host[:port] as a browser sends it (lower case, "
            "no path, no default port), or *"
        )
        matchable(parse_origins(value), lambda o: o == "*" or is_origin(o), rule)
        return value

    @field_validator("api_keys_file")
    @classmethod
    def _keys_readable(cls, value: str) -> str:
        if value:
            from service.keys import read_keys  # the file must parse before serving starts

            read_keys(value)
        return value

    @model_validator(mode="after")
    def _runtime_runs_here(self) -> Settings:
        refusal = runtime_refusal(self.runtime)
        if refusal:
            raise ValueError(refusal)
        refusal = bf16_refusal(self.runtime, self.precision)
        if refusal:
            raise ValueError(f"PRECISION=bf16: {refusal}")
        return self

    @model_validator(mode="after")
    def _ports_differ(self) -> Settings:
        if self.grpc_port == self.port:
            raise ValueError(f"GRPC_PORT and PORT are both {self.port}: give gRPC its own port")
        return self

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> Settings:
        if self.queue_capacity < self.max_images_per_request:
            raise ValueError(
                f"QUEUE_CAPACITY ({self.queue_capacity}) must hold at least one full request "
                f"(MAX_IMAGES_PER_REQUEST={self.max_images_per_request})"
            )
        return self

    @model_validator(mode="after")
    def _batch_waits_within_the_deadline(self) -> Settings:
        """A batch that waits for more images as long as the deadline answers a request
        that comes alone with 504, every time."""
        if self.batch_timeout_ms >= self.request_deadline_ms:
            raise ValueError(
                f"BATCH_TIMEOUT_MS ({self.batch_timeout_ms:g}) must be less than "
                f"REQUEST_DEADLINE_MS ({self.request_deadline_ms:g})"
            )
        return self

    @model_validator(mode="after")
    def _capture_has_a_folder(self) -> Settings:
        if self.capture_rate > 0 and not self.feedback_dir:
            raise ValueError("CAPTURE_RATE needs FEEDBACK_DIR: the folder captures are kept in")
        return self

    def environment(self) -> dict[str, object]:
        """The values by their variable names, as the start-up log line shows them."""
        return {name.upper(): value for name, value in self.model_dump().items()}

    def address(self, port: int) -> str:
        """HOST:port as gunicorn and gRPC read it: an IPv6 address in brackets."""
        return f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"

    @property
    def json_limit(self) -> int:
        return min(self.max_json_bytes, self.max_upload_bytes)

    @property
    def exempt_paths(self) -> tuple[str, ...]:
        return parse_list(self.api_key_exempt_paths)

    @property
    def origins(self) -> tuple[str, ...]:
        return parse_origins(self.cors_origins)

    @property
    def labels(self) -> dict[str, int]:
        return parse_labels(self.version_labels)

    @property
    def worker_threads(self) -> int:
        """INFERENCE_THREADS, or this worker's share of the cores: workers that each took
        every core would run more model threads than there are cores."""
        return self.inference_threads or max(1, hardware.cores() // self.workers)

    @property
    def workers(self) -> int:
        """WEB_CONCURRENCY, or one worker per two cores: one worker's request threads get
        about one core of Python (on 16 cores eight workers served 2.2 times one); one
        worker on TensorFlow, which costs a process about 680 MB (a GPU: one per GPU).
        Decided from the settings, before any model is read: a version with no ONNX file,
        which `auto` serves on TensorFlow where it is installed, is not foreseen."""
        if self.web_concurrency:
            return self.web_concurrency
        if runs_tensorflow(RuntimeOptions(runtime=self.runtime, device=self.device)):
            return 1
        return max(1, hardware.cores() // 2)

    @property
    def runtime_options(self) -> RuntimeOptions:
        """How each worker runs its models (the service, and benchmarks that run the same)."""
        return RuntimeOptions(
            runtime=self.runtime,
            device=self.device,
            precision=self.precision,
            mixed_precision=self.mixed_precision,
            threads=self.worker_threads,
            lanes=self.inference_lanes,
        )

    @property
    def policy(self) -> VersionPolicy:
        return VersionPolicy.parse(self.model_version_policy)

    @classmethod
    def with_overrides(cls, overrides: Mapping[str, object] | None = None) -> Settings:
        """Defaults, then the environment, then `overrides` (setting names, any case)."""
        return cls(**{key.lower(): value for key, value in (overrides or {}).items()})


def parse_labels(text: str) -> dict[str, int]:
    """`stable=3,canary=4` -> {"stable": 3, "canary": 4}."""
    labels = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        label, _, digits = part.partition("=")
        version = whole_number(digits.strip())
        if not label.strip() or version is None or version < 1:
            raise ValueError(f"labels must read label=version,...; got {part!r}")
        if set(label) & {"/", ":"}:  # a path segment of /labels/<label>, before a :verb
            raise ValueError(f"a label holds no '/' or ':' (it is part of a path); got {part!r}")
        labels[label.strip()] = version
    return labels


def matchable(items: tuple[str, ...], fits: Callable[[str], bool], rule: str) -> None:
    """ValueError naming the first item `fits` refuses: taken, it would silently never match
    what a client sends."""
    for item in items:
        if not fits(item):
            raise ValueError(f"{rule}; {item!r} would never match")


def parse_list(text: str) -> tuple[str, ...]:
    """`a, b,` -> ("a", "b")."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse_origins(text: str) -> tuple[str, ...]:
    """`https://a.example/, *` -> ("https://a.example", "*")."""
    return tuple(origin.rstrip("/") for origin in parse_list(text))


def is_origin(origin: str) -> bool:
    """Whether a browser can send exactly this `Origin`: anything else is compared with what
    it sends and never matches, silently."""
    match = ORIGIN.fullmatch(origin)
    if match is None:
        return False
    return match["port"] is None or DEFAULT_PORTS.get(origin.partition(":")[0]) != match["port"]


class SettingsError(ValueError):
    """A setting has a value the service cannot run with; the message is one line."""


def describe_error(error: ValidationError) -> str:
    """One line that names each bad variable, its value and what is allowed."""
    parts = []
    for problem in error.errors():
        message = problem["msg"].removeprefix("Value error, ")
        if problem["loc"]:
            name = str(problem["loc"][0]).upper()
            parts.append(f"{name}={problem['input']!r}: {message}")
        else:
            parts.append(message)
    return "invalid setting: " + "; ".join(parts)


def load(overrides: Mapping[str, object] | None = None) -> Settings:
    """The settings, or SettingsError with one line saying what is wrong."""
    try:
        return Settings.with_overrides(overrides)
    except ValidationError as exc:
        raise SettingsError(describe_error(exc)) from None


def load_or_exit() -> Settings:
    """For start-up: a bad setting ends the process with one line and status 2, no traceback."""
    try:
        return load()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
