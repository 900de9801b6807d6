"""TensorFlow and Keras: the runtime for GPUs (and CPUs where nothing else fits).

Imported only where TensorFlow runs: importing it costs a process about 680 MB.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile

import numpy as np

from classifier.cpu_runtimes import model_output

log = logging.getLogger(__name__)
# TensorFlow's C++ start-up lines bypass Python logging (and its JSON formatter); keep its
# warnings and errors only, unless the environment says otherwise.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
    any_batch_size = False  # each batch size is a new trace: powers of two only
    lanes = 1  # one call at a time

    def __init__(
        self,
        model,
        spec_shape: tuple[int, int, int],
        device: str = "/CPU:0",
        precision: str = "fp32",
    ) -> None:
        tf = import_tensorflow()

        self.model = model
        self.device = device
        self.precision = precision
        self._tf = tf

        @tf.function(input_signature=[tf.TensorSpec((None, *spec_shape), tf.float32)])
        def infer(images):
            return tf.cast(model(images, training=False), tf.float32)

        self._infer = infer

    def __call__(self, images: np.ndarray, alone: bool = True) -> np.ndarray:
        with self._tf.device(self.device):
            out = self._infer(self._tf.convert_to_tensor(images.astype(np.float32, copy=False)))
        return model_output(out.numpy(), len(images))


def limit_threads(threads: int) -> None:
    tf = import_tensorflow()

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already started its pools in this process
        log.debug("TensorFlow thread pools already fixed (pid %d)", os.getpid())
