"""Which runtime serves a model version on this host, and loading it.

Each runtime takes a batch (n, h, w, 3) of 0-255 pixels (uint8 or float32) and returns the
model's output, float32 (n,) for a sigmoid head (P(class 1)) or (n, C) for a softmax. `auto` picks the fastest exact-enough path for the
hardware: TensorFlow on a GPU; OpenVINO in bfloat16 on a CPU that computes it natively
(AMX or AVX-512 BF16), once it has passed a parity check against float32; else ONNX Runtime
in float32. Create runtimes in the process that uses them (after fork): none is fork-safe.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from classifier import hardware
from classifier.cpu_runtimes import OnnxRuntime, OpenVinoRuntime  # tools import them from here
from classifier.errors import ModelStoreError
from classifier.metadata import MODEL_FILE, ONNX_FILE, ModelMetadata

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "keras", "onnx", "openvino")
DEVICES = ("auto", "cpu", "gpu")
PRECISIONS = ("auto", "fp32", "bf16")
# Largest difference of a probe image's probability, bf16 against fp32, a model may show
# before its bf16 path serves; the answers must be the same too. bf16 keeps 8 bits of
# mantissa: a logit of magnitude 5 moves by about 0.05, a probability by up to about 0.01.
# Measured (docs/benchmarks.md): v3 2e-5 on the probes, 0.025 at most on the 1,000
# validation photos; v4 4.7e-3 on the probes, 0.012 at most (mean 6e-4) on the photos; both
# with the same answer on every photo. A broken path differs by far more, or answers otherwise.
BF16_TOLERANCE = 1e-2


def answers(outputs: np.ndarray, threshold: float | None) -> np.ndarray:
    """The class index each row answers, from class probabilities (n, C) or a runtime's own
    outputs (a sigmoid's P(class 1), (n,)): with a threshold (two classes), the second class
    from it up; without, the most probable."""
    if threshold is not None:
        return ((outputs if outputs.ndim == 1 else outputs[:, -1]) >= threshold).astype(int)
    return np.argmax(outputs, axis=1)


class Runtime(Protocol):
    name: str
    device: str
    precision: str
    any_batch_size: bool  # runs every batch size without padding to a power of two
    lanes: int  # calls that may overlap, sharing the threads (1: one call at a time)

    def __call__(self, images: np.ndarray, alone: bool = True) -> np.ndarray: ...


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run a model: runtime, device, precision, Keras mixed precision, CPU threads,
    and lanes: how many calls may overlap, sharing the threads, on the CPU runtimes (ONNX
    Runtime and OpenVINO; 0: their default, `cpu_lanes`)."""

    runtime: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    mixed_precision: bool = False
    threads: int = 0
    lanes: int = 1

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.threads < 0:
            raise ValueError("threads must be >= 0")
        if self.lanes < 0:
            raise ValueError("lanes must be >= 0")

    def cpu_lanes(self, runtime: str) -> int:
        """As asked; by default two on ONNX Runtime where there are two threads (measured),
        one on OpenVINO (its second model costs 180-320 MB, and in bf16 one connection got 14%
        fewer images/s for 7% more at 32: docs/benchmarks.md)."""
        if self.lanes:
            return self.lanes
        return min(2, self.threads or hardware.cores()) if runtime == "onnx" else 1


def has_tensorflow() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def runtime_refusal(runtime: str) -> str | None:
    """Why RUNTIME cannot run in this install (None when it can): checked at start-up."""
    if runtime == "keras" and not has_tensorflow():
        return "RUNTIME=keras needs TensorFlow: install the package with its cpu or gpu extra"
    if runtime == "openvino" and importlib.util.find_spec("openvino") is None:
        return "RUNTIME=openvino needs OpenVINO, which is not installed"
    return None


def bf16_refusal(runtime: str, precision: str) -> str | None:
    """Why PRECISION=bf16 cannot run here (None when it can): checked at start-up."""
    if precision != "bf16":
        return None
    if runtime not in ("auto", "openvino"):
        return f"bf16 runs on RUNTIME=openvino or auto, not {runtime}"
    if not hardware.native_bf16():
        return "this CPU computes bf16 natively neither with AMX nor with AVX-512 BF16"
    if importlib.util.find_spec("openvino") is None:
        return "bf16 needs OpenVINO, which is not installed"
    return None


def wants_gpu(device: str) -> bool:
    """Whether DEVICE sends the auto path to a GPU: asked for, or one is here."""
    return device == "gpu" or (device == "auto" and hardware.gpu_count() > 0)


def runs_tensorflow(options: RuntimeOptions) -> bool:
    """Whether `options` run models on TensorFlow here, judged before any model is read (a
    version with no ONNX file would run on it too)."""
    if options.runtime != "auto":
        return options.runtime == "keras"
    return wants_gpu(options.device) and has_tensorflow()


def choose(options: RuntimeOptions, has_onnx: bool, has_keras: bool = True) -> tuple[str, str]:
    """(runtime, precision) for `options` on this host, before any check of the model;
    `has_keras` is False for a copy of the version without its Keras file (a serving copy)."""
    if options.runtime != "auto":
        wants_bf16 = options.runtime == "openvino" and options.precision != "fp32"
        return options.runtime, "bf16" if wants_bf16 and hardware.native_bf16() else "fp32"
    on_gpu = wants_gpu(options.device)
    if on_gpu and has_onnx and not (has_tensorflow() and has_keras):
        why = "TensorFlow is not installed" if has_keras else f"this copy has no {MODEL_FILE}"
        log.warning("a GPU is here but %s; serving on the CPU", why)
    elif on_gpu or not has_onnx:
        return "keras", "fp32"
    if options.precision != "fp32" and bf16_refusal("auto", "bf16") is None:
        return "openvino", "bf16"
    return "onnx", "fp32"


def load_runtime(folder: Path, metadata: ModelMetadata, options: RuntimeOptions) -> Runtime:
    """Load the runtime `options` and the host call for; a bf16 path that fails its parity
    check against float32 is replaced by ONNX Runtime in float32 (the log says why)."""
    label = f"{metadata.name} v{metadata.version}"
    has_onnx = ONNX_FILE in metadata.files and (folder / ONNX_FILE).is_file()
    name, precision = choose(options, has_onnx, (folder / MODEL_FILE).is_file())
    runtime = _checked_shapes(_load(name, precision, folder, metadata, options), metadata)
    if runtime.precision == "bf16":
        runtime = _parity_checked(runtime, folder, metadata, options)
    log.info("%s: runtime %s on %s in %s", label, runtime.name, runtime.device, runtime.precision)
    return runtime


def _load(name: str, precision: str, folder: Path, metadata: ModelMetadata, options):
    label = f"{metadata.name} v{metadata.version}"
    if name in ("onnx", "openvino") and ONNX_FILE not in metadata.files:
        raise ModelStoreError(f"{label}: has no {ONNX_FILE}", code="model_load_failed")
    if name == "keras" and not (folder / MODEL_FILE).is_file():
        raise ModelStoreError(
            f"{label}: this copy has no {MODEL_FILE} (a serving copy keeps {ONNX_FILE} only); "
            "RUNTIME=keras needs it",
            code="model_load_failed",
        )
    try:
        if name == "onnx":
            return OnnxRuntime(folder / ONNX_FILE, options.threads, options.cpu_lanes(name))
        if name == "openvino":
            lanes = options.cpu_lanes(name)
            return OpenVinoRuntime(folder / ONNX_FILE, options.threads, precision, lanes)
        return _load_keras(folder, metadata, options)
    except ModelStoreError:
        raise
    except Exception as exc:
        raise ModelStoreError(f"{label}: cannot load: {exc}", code="model_load_failed") from None


def _load_keras(folder: Path, metadata: ModelMetadata, options: RuntimeOptions):
    from classifier import keras_runtime

    device = keras_runtime.configure_tensorflow(options.device)
    import keras

    if options.threads:
        keras_runtime.limit_threads(options.threads)
    model = keras.saving.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
    precision = "fp32"
    if options.mixed_precision:
        model, precision = keras_runtime.to_mixed_precision(model), "mixed_float16"
    return keras_runtime.KerasRuntime(model, metadata.input_spec.shape, device, precision)


def _checked_shapes(runtime, metadata: ModelMetadata):
    model = getattr(runtime, "model", None)
    if model is not None:
        shapes = (tuple(model.input_shape), tuple(model.output_shape))
    else:
        shapes = (runtime.input_shape, runtime.output_shape)
    expected = ((None, *metadata.input_spec.shape), (None, metadata.output_width))
    if shapes != expected:
        raise ModelStoreError(
            f"{metadata.name} v{metadata.version}: model takes {shapes[0]} and gives "
            f"{shapes[1]}; metadata needs {expected[0]} -> {expected[1]}",
            code="model_shape_mismatch",
        )
    return runtime


def probe_images(shape: tuple[int, int, int]) -> np.ndarray:
    """Fixed images every new version is checked on: black, white, noise and a gradient."""
    rng = np.random.default_rng(20261130)
    ramp = np.linspace(0, 255, shape[0] * shape[1] * shape[2]).reshape(shape)
    return np.stack(
        [
            np.zeros(shape, np.uint8),
            np.full(shape, 255, np.uint8),
            rng.integers(0, 256, shape, dtype=np.uint8),
            ramp.astype(np.uint8),
        ]
    )


def _parity_checked(runtime, folder: Path, metadata: ModelMetadata, options: RuntimeOptions):
    """The bf16 runtime if, on the probe images, it gives float32's answers with
    probabilities within BF16_TOLERANCE."""
    reference = _load("onnx", "fp32", folder, metadata, options)
    probes = probe_images(metadata.input_spec.shape)
    exact = reference(probes)
    lows = [runtime(probes)] + ([runtime(probes, alone=False)] if runtime.lanes > 1 else [])
    diff = float(np.max([np.abs(low - exact).max() for low in lows]))  # NaN stays NaN
    threshold = metadata.decision_threshold
    same = all((answers(low, threshold) == answers(exact, threshold)).all() for low in lows)
    if np.isfinite(diff) and diff <= BF16_TOLERANCE and same:
        runtime.parity = diff
        return runtime
    why = f"{diff:.2g} > {BF16_TOLERANCE}" if same else "another answer on a probe"
    log.warning(
        "%s v%d: bf16 failed its parity check against fp32 on the probe images (%s); "
        "serving fp32 with ONNX Runtime instead",
        metadata.name,
        metadata.version,
        why,
    )
    reference.note = f"bf16 failed its parity check ({why}); fp32"
    return reference
