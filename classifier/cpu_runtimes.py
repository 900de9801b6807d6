"""The CPU runtimes over the exported model.onnx: ONNX Runtime (float32) and OpenVINO
(float32, or bfloat16 where the processor computes it natively: AMX or AVX-512 BF16).

Both are created in the process that uses them (after fork) and never spin idle threads,
as the HTTP threads share the cores.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from pathlib import Path

import numpy as np

from classifier import hardware

# No telemetry from either runtime, in this process only (tests/classifier/test_runtimes.py
# checks that loading and running both writes nothing under HOME):
# - ONNX Runtime (1.2x and newer, on Linux too) keeps a device id and an event cache under
#   ~/.cache and may upload events unless ORT_DISABLE_TELEMETRY=1 is set before its first
#   session; disable_telemetry_events() (below) only stops events after that.
# - `import openvino` starts the telemetry of OpenVINO's model converter (ovc): a client id
#   under ~/intel and an analytics event per import, unless ~/intel/openvino_telemetry says
#   no (`opt_in_out --opt_out`, a setting of the whole account). Without the
#   openvino-telemetry package ovc falls back to its own no-op stub; the None entry makes
#   that package unimportable here.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.modules.setdefault("openvino_telemetry", None)


def model_output(out, n: int) -> np.ndarray:
    """float32 (n,) for a one-unit (sigmoid) model, as tools that import these runtimes
    expect, else (n, C)."""
    out = np.array(out, dtype=np.float32).reshape(n, -1)
    return out[:, 0] if out.shape[1] == 1 else out


class OnnxRuntime:
    """ONNX Runtime on the CPU: no idle spinning (HTTP threads share the cores).

    With `lanes` above 1 it keeps a second session, which up to `lanes` calls share at once,
    each on `threads // lanes` threads: a batch that runs alone takes every thread, batches
    that overlap share them. Threads of one call wait for each other at every layer, so when
    the cores are shared, overlapping calls on fewer threads get more from them
    (docs/benchmarks.md).
    """

    name = "onnx"
    device = "cpu"
    precision = "fp32"
    any_batch_size = True  # a new batch size costs nothing once it has run: no padding

    def __init__(self, path: Path, threads: int = 0, lanes: int = 1) -> None:
        import onnxruntime as ort

        ort.disable_telemetry_events()
        self.session = _onnx_session(ort, path, threads)
        self.lanes = max(1, lanes)
        shared = max(1, (threads or hardware.cores()) // self.lanes)
        self._narrow = _onnx_session(ort, path, shared) if self.lanes > 1 else None
        self._input = self.session.get_inputs()[0].name

    @property
    def input_shape(self) -> tuple:
        return tuple(d if isinstance(d, int) else None for d in self.session.get_inputs()[0].shape)

    @property
    def output_shape(self) -> tuple:
        return tuple(d if isinstance(d, int) else None for d in self.session.get_outputs()[0].shape)

    def __call__(self, images: np.ndarray, alone: bool = True) -> np.ndarray:
        session = self.session if alone or self._narrow is None else self._narrow
        out = session.run(None, {self._input: images.astype(np.float32)})[0]
        return model_output(out, len(images))


def _onnx_session(ort, path: Path, threads: int):
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OpenVinoRuntime:
    """OpenVINO on the CPU, reading model.onnx directly; `precision` "bf16" or "fp32".

    With `lanes` above 1, as OnnxRuntime: a second compiled model with one stream per lane
    (the threads divided among them) and an infer request each, for batches that overlap;
    a batch alone runs on the one-stream model and every thread. A stream needs a thread of
    its own, so there are never more lanes than threads.
    """

    name = "openvino"
    device = "cpu"
    any_batch_size = True  # dynamic batch: each size once at warm-up, none padded

    def __init__(
        self, path: Path, threads: int = 0, precision: str = "bf16", lanes: int = 1
    ) -> None:
        import openvino as ov

        self.precision = precision
        self.lanes = max(1, min(lanes, threads or hardware.cores()))
        core = ov.Core()
        model = core.read_model(str(path))
        config = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",  # streams as set below, not as the hint would
            # Pinned, every process's threads take the first cores: two workers (or replicas)
            # with one thread each shared one core of two (docs/benchmarks.md)
            "ENABLE_CPU_PINNING": False,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, "CPU", {**config, "NUM_STREAMS": 1})
        self._request = self.compiled.create_infer_request()
        self._output = self.compiled.output(0)
        self._lock = threading.Lock()  # the lone calls' request; warm-up and probes share it
        self.narrow_model = None
        self._narrow: queue.SimpleQueue[ov.InferRequest] | None = None
        if self.lanes > 1:
            streams = {**config, "NUM_STREAMS": self.lanes}
            self.narrow_model = core.compile_model(model, "CPU", streams)
            self._narrow = queue.SimpleQueue()
            for _ in range(self.lanes):  # the batcher overlaps at most `lanes` calls
                self._narrow.put(self.narrow_model.create_infer_request())

    @property
    def input_shape(self) -> tuple:
        return _dims(self.compiled.input(0).get_partial_shape())

    @property
    def output_shape(self) -> tuple:
        return _dims(self._output.get_partial_shape())

    def __call__(self, images: np.ndarray, alone: bool = True) -> np.ndarray:
        inputs = {0: images.astype(np.float32, copy=False)}
        if alone or self._narrow is None:
            with self._lock:
                out = self._request.infer(inputs)[0]
        else:
            request = self._narrow.get()
            try:
                out = request.infer(inputs)[0]  # a copy (share_outputs is off)
            finally:
                self._narrow.put(request)
        return model_output(out, len(images))


def _dims(shape) -> tuple:
    return tuple(d.get_length() if d.is_static else None for d in shape)
