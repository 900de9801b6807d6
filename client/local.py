"""The model in this process, no server: the decode function and the batcher the service uses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from classifier.batching import Batcher
from classifier.errors import ClassifierError, ImageError
from classifier.predictor import load_predictor, top_classes
from classifier.preprocess import decode_image
from classifier.runtimes import RuntimeOptions
from classifier.spec import DEFAULT_MAX_PIXELS
from classifier.store import DEFAULT_MODEL, ModelStore, default_models_dir
from client.base import BaseClient
from client.inputs import Item
from client.results import Failure, Prediction, Result


class LocalClient(BaseClient):
    """Same `predict` as Client, answered by a model loaded from a store.

    Files are decoded in the worker threads with `classifier.preprocess.decode_image` and
    their pixels go through the Batcher the service uses, so answers match the server's.
    `models_dir` defaults to the store the service reads (MODELS_DIR, else the checkout's
    `models`: `classifier.store.default_models_dir`), `name` to its default model.
    """

    def __init__(
        self,
        models_dir: str | Path | None = None,
        name: str = DEFAULT_MODEL,
        version: int | None = None,
        *,
        top_k: int | None = None,
        concurrency: int = 1,
        batch_size: int = 1,
        max_batch_size: int = 16,
        timeout_s: float = 300.0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        runtime: RuntimeOptions | None = None,
    ) -> None:
        super().__init__(concurrency=concurrency, batch_size=batch_size)
        store = ModelStore(Path(models_dir) if models_dir is not None else default_models_dir())
        self.predictor = load_predictor(store, name, version, runtime)
        classes = len(self.predictor.class_names)
        if top_k is not None and not 1 <= top_k <= classes:
            raise ValueError(f"top_k must be from 1 to {classes} (the model's classes)")
        self.top_k = top_k
        self.timeout_s = timeout_s
        self.max_pixels = max_pixels
        self.batcher = Batcher(
            self.predictor.predict,
            max_batch_size=max_batch_size,
            timeout_s=0.0,
            capacity=max(256, concurrency * batch_size),  # every thread's chunk fits at once
            name=name,
            every_size=self.predictor.runtime.any_batch_size,
            lanes=self.predictor.runtime.lanes,
        ).start()

    def predict_chunk(self, items: Sequence[Item]) -> list[Result]:
        results: list[Result | None] = [None] * len(items)
        good: list[tuple[int, np.ndarray]] = []
        for index, item in enumerate(items):
            decoded = self._decode(item)
            if isinstance(decoded, Failure):
                results[index] = decoded
            else:
                good.append((index, decoded))
        for index, result in zip((i for i, _ in good), self._infer(items, good), strict=True):
            results[index] = result
        return results  # type: ignore[return-value] - every slot is filled

    def close(self, wait: bool = True) -> None:
        super().close(wait)
        self.batcher.stop()

    def _decode(self, item: Item) -> np.ndarray | Failure:
        data = item.read()
        if isinstance(data, Failure):
            return data
        try:
            return decode_image(data, self.predictor.spec, max_pixels=self.max_pixels)
        except ImageError as exc:
            return Failure(item.name, exc.code, f"{item.upload_name}: {exc.message}")

    def _infer(self, items: Sequence[Item], good: list[tuple[int, np.ndarray]]) -> list[Result]:
        if not good:
            return []
        files = [items[i].name for i, _ in good]
        try:
            probs = self.batcher.predict(np.stack([image for _, image in good]), self.timeout_s)
        except ClassifierError as exc:
            return [Failure(file, exc.code, exc.message) for file in files]
        p = self.predictor
        k = self.top_k
        return [
            Prediction(
                file,
                answer.label,
                answer.probabilities,
                p.name,
                p.version,
                None if k is None else tuple(top_classes(answer.probabilities, k)),
            )
            for file, answer in zip(files, p.to_predictions(probs), strict=True)
        ]
