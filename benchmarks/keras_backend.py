"""A version's Keras model in process on the backend KERAS_BACKEND names (jax, torch or
tensorflow) and the device that backend finds, beside ONNX Runtime fp32 on the CPU, in one
run: images/s at each batch size, and agreement with ONNX Runtime on labelled photos.

The service runs Keras on TensorFlow only (classifier/keras_runtime.py). This measures what an
accelerator gives the model itself where TensorFlow is not installed, as on the device
machine, which has JAX and PyTorch. Pixels are decoded once, before any timing.

    KERAS_BACKEND=jax python -m benchmarks.keras_backend --files 400
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import benchmark_parser, host, write_results
from classifier.cpu_runtimes import model_output
from classifier.metadata import MODEL_FILE
from classifier.predictor import Predictor, load_predictor
from classifier.preprocess import decode_image
from classifier.runtimes import RuntimeOptions, answers
from classifier.store import ModelStore
from training.scoring import probabilities_in_batches


class BackendRuntime:
    """The Keras model on the current backend, called as the predictor calls a runtime."""

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, images: np.ndarray, alone: bool = True) -> np.ndarray:
        out = self.model.predict_on_batch(images.astype(np.float32, copy=False))
        return model_output(np.asarray(out), len(images))


def backend_device(keras) -> str:
    """The backend and the devices it computes on."""
    name = keras.backend.backend()
    if name == "jax":
        import jax

        return f"jax {jax.__version__} on {', '.join(str(d) for d in jax.devices())}"
    if name == "torch":
        import torch

        where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        return f"torch {torch.__version__} on {where}"
    if name == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"tensorflow {tf.__version__} on {[g.name for g in gpus] or 'cpu'}"
    return name


def labelled_photos(data_dir: Path, class_names, limit: int) -> tuple[list[bytes], list[int]]:
    """Up to `limit` JPEGs taken in turn from each class folder (named for a class, or its
    plural), so that a small sample holds every class."""
    folders = []
    for index, name in enumerate(class_names):
        for candidate in (data_dir / name, data_dir / f"{name}s"):
            if candidate.is_dir():
                folders.append((index, sorted(candidate.glob("*.jpg"))))
                break
    if not folders:
        sys.exit(f"no folder under {data_dir} is named for a class of {list(class_names)}")
    bodies, labels = [], []
    for turn in range(max(len(files) for _, files in folders)):
        for index, files in folders:
            if turn < len(files) and len(bodies) < limit:
                bodies.append(files[turn].read_bytes())
                labels.append(index)
    return bodies, labels


def throughput(predict, images: np.ndarray, batch: int, seconds: float) -> dict:
    """Images/s of `predict` on batches of `batch` decoded images, after three warm-up calls."""
    x = np.resize(images, (batch, *images.shape[1:]))
    for _ in range(3):
        predict(x)
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or calls < 3:
        predict(x)
        calls += 1
    return {"batch": batch, "images_per_s": round(calls * batch / elapsed, 1),
            "ms_per_batch": round(elapsed / calls * 1000, 3)}  # fmt: skip


def agreement(reference: Predictor, other: Predictor, images, labels) -> dict:
    """How far `other`'s answers are from the reference's on the same pixels (one model's
    metadata, so one decision threshold)."""
    ref = probabilities_in_batches(reference.predict, images)
    out = probabilities_in_batches(other.predict, images)
    threshold = reference.metadata.decision_threshold
    ref_labels, out_labels = answers(ref, threshold), answers(out, threshold)
    truth = np.array(labels)
    return {
        "images": len(images),
        "max_abs_probability_difference": float(np.abs(ref - out).max()),
        "same_label": float((ref_labels == out_labels).mean()),
        "accuracy_reference": float((ref_labels == truth).mean()),
        "accuracy_backend": float((out_labels == truth).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser("python -m benchmarks.keras_backend", __doc__)
    p.add_argument("--model-name", default="cats_vs_dogs", help="model to load")
    p.add_argument("--version", type=int, help="version (default: the newest valid one)")
    p.add_argument("--files", type=int, default=400, help="how many labelled JPEGs to use")
    p.add_argument("--batch-sizes", default="1,16,64,256,1024", help="batch sizes to time")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per batch size")
    p.add_argument("--output", type=Path, help="write all figures to this JSON file")
    args = p.parse_args(argv)
    import keras

    found = host()
    device = backend_device(keras)
    print(f"keras {keras.__version__}, backend {device}", flush=True)
    store = ModelStore(args.models_dir)
    reference = load_predictor(store, args.model_name, args.version, RuntimeOptions("onnx"))
    meta = reference.metadata
    folder = store.model_dir(args.model_name) / str(meta.version)
    model = keras.saving.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
    backend = Predictor(BackendRuntime(model), meta)
    bodies, labels = labelled_photos(args.data_dir, meta.class_names, args.files)
    images = np.stack([decode_image(body, meta.input_spec) for body in bodies])
    parity = agreement(reference, backend, images, labels)
    print(f"{args.model_name} v{meta.version} against ONNX Runtime fp32: {parity}", flush=True)
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        for label, predictor in (("backend", backend), ("onnx cpu", reference)):
            row = {"path": label, **throughput(predictor.predict, images, batch, args.seconds)}
            rows.append(row)
            print(f"  {label:9s} batch {batch:5d}: {row['images_per_s']:9.1f} images/s "
                  f"({row['ms_per_batch']:.3f} ms a batch)", flush=True)  # fmt: skip
    write_results(args.output, {"host": found, "backend": device, "parity": parity, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
