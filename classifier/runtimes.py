"""Inference runtimes for a model version: Keras/TensorFlow (GPU or CPU) and ONNX Runtime (CPU).

Each runtime takes a batch (n, h, w, 3) of 0-255 pixels (uint8 or float32) and returns
P(class 1) as float32 of shape (n,).
Create runtimes in the process that uses them (after fork): neither is fork-safe.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from classifier.errors import ModelStoreError
from classifier.metadata import MODEL_FILE, ONNX_FILE, ModelMetadata

log = logging.getLogger(__name__)
# TensorFlow's C++ start-up lines bypass Python logging (and its JSON formatter); keep its
# warnings and errors only, unless the environment says otherwise.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RUNTIMES = ("auto", "keras", "onnx")
DEVICES = ("auto", "cpu", "gpu")


class Runtime(Protocol):
    name: str
    device: str

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run a model: which runtime and device, mixed precision, CPU threads (0 = all)."""

    runtime: str = "auto"
    device: str = "auto"
    mixed_precision: bool = False
    threads: int = 0

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.threads < 0:
            raise ValueError("threads must be >= 0")


def import_tensorflow():
    """TensorFlow, with the C++ lines it prints while importing (before its own logging is
    set up, whatever TF_CPP_MIN_LOG_LEVEL says) sent to this logger instead of stderr."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        lines = captured.read().decode(errors="replace").splitlines()
    for line in filter(str.strip, lines):
        log.debug("tensorflow: %s", line)
    return tensorflow


def configure_tensorflow(device: str = "auto") -> str:
    """Enable GPU memory growth (workers share a GPU) and pick the TensorFlow device name.

    With device "gpu" on a host without one, soft placement runs the same code on the CPU.
    """
    tf = import_tensorflow()

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: growth must be set before first use
            log.debug("memory growth already fixed for %s", gpu.name)
    tf.config.set_soft_device_placement(True)
    if device == "cpu":
        return "/CPU:0"
    if device == "gpu" and not gpus:
        log.warning("DEVICE=gpu but TensorFlow sees no GPU; running on the CPU")
    return "/GPU:0" if gpus or device == "gpu" else "/CPU:0"


def to_mixed_precision(model):
    """A copy of `model` computing in float16 with float32 weights; the output stays float32."""
    import keras

    config = model.get_config()
    last = config["layers"][-1]["name"]
    for layer in config["layers"]:
        if layer["class_name"] != "InputLayer":
            layer["config"]["dtype"] = "float32" if layer["name"] == last else "mixed_float16"
    clone = keras.Model.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


class KerasRuntime:
    """A Keras model behind one tf.function with a fixed signature: it never retraces."""

    name = "keras"

    def __init__(self, model, spec_shape: tuple[int, int, int], device: str = "/CPU:0") -> None:
        tf = import_tensorflow()

        self.model = model
        self.device = device
        self._tf = tf

        @tf.function(input_signature=[tf.TensorSpec((None, *spec_shape), tf.float32)])
        def infer(images):
            return tf.cast(model(images, training=False), tf.float32)

        self._infer = infer

    def __call__(self, images: np.ndarray) -> np.ndarray:
        with self._tf.device(self.device):
            out = self._infer(self._tf.convert_to_tensor(images.astype(np.float32, copy=False)))
        return out.numpy().reshape(-1)


class OnnxRuntime:
    """ONNX Runtime on the CPU: no idle spinning (HTTP threads share the cores)."""

    name = "onnx"
    device = "cpu"

    def __init__(self, path: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    @property
    def input_shape(self) -> tuple:
        return tuple(d if isinstance(d, int) else None for d in self.session.get_inputs()[0].shape)

    @property
    def output_shape(self) -> tuple:
        return tuple(d if isinstance(d, int) else None for d in self.session.get_outputs()[0].shape)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self._input: images.astype(np.float32)})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)


def load_runtime(folder: Path, metadata: ModelMetadata, options: RuntimeOptions) -> Runtime:
    """Load the runtime `options` asks for; "auto" takes the GPU through TensorFlow where there
    is one, else ONNX Runtime where the version has an ONNX file, else TensorFlow on the CPU."""
    label = f"{metadata.name} v{metadata.version}"
    choice = options.runtime
    device = None
    if choice in ("auto", "keras"):
        device = configure_tensorflow(options.device)
        if choice == "auto":
            on_gpu = device.startswith("/GPU") and options.device != "cpu"
            has_onnx = ONNX_FILE in metadata.files and (folder / ONNX_FILE).is_file()
            choice = "onnx" if has_onnx and not on_gpu else "keras"
    try:
        if choice == "onnx":
            if ONNX_FILE not in metadata.files:
                raise ModelStoreError(f"{label}: has no {ONNX_FILE}", code="model_load_failed")
            runtime: Runtime = OnnxRuntime(folder / ONNX_FILE, options.threads)
            shapes = (runtime.input_shape, runtime.output_shape)
        else:
            import keras

            if options.threads:
                _limit_tensorflow_threads(options.threads)
            model = keras.saving.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
            shapes = (tuple(model.input_shape), tuple(model.output_shape))
            if options.mixed_precision:
                model = to_mixed_precision(model)
            runtime = KerasRuntime(model, metadata.input_spec.shape, device or "/CPU:0")
    except ModelStoreError:
        raise
    except Exception as exc:
        raise ModelStoreError(f"{label}: cannot load: {exc}", code="model_load_failed") from None
    expected = ((None, *metadata.input_spec.shape), (None, 1))
    if shapes != expected:
        raise ModelStoreError(
            f"{label}: model takes {shapes[0]} and gives {shapes[1]}; metadata needs "
            f"{expected[0]} -> {expected[1]}",
            code="model_shape_mismatch",
        )
    log.info(
        "%s: runtime %s on %s%s",
        label,
        runtime.name,
        runtime.device,
        " (mixed precision)" if options.mixed_precision and runtime.name == "keras" else "",
    )
    return runtime


def _limit_tensorflow_threads(threads: int) -> None:
    tf = import_tensorflow()

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already started its pools in this process
        log.debug("TensorFlow thread pools already fixed (pid %d)", os.getpid())
