"""A client for the image classification service, over HTTP or with the model in process.

    from client import Client
    results = Client("http://127.0.0.1:8000").predict(["a.jpg", "photos/b.png"])

`predict` takes paths, image file bytes, binary file objects, PIL images and uint8 arrays,
and gives one Prediction or Failure per input, in input order; `Client(url, api_key=...)`
(default: $CLASSIFIER_API_KEY) raises AccessRefused when the server refuses the key,
NotThere when it has no such model or version, and BadParameter when it refuses top_k (all
RunStopped: every image would fare so).
`LocalClient(models_dir, name)` has the same `predict` (the store the service reads by
default); it is imported on first use, so the HTTP client does not load the model runtimes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from client.base import AccessRefused, BadParameter, NotThere, RunStopped
from client.remote import Client, RetryPolicy
from client.results import Failure, Prediction, Result

if TYPE_CHECKING:
    from client.local import LocalClient

__all__ = [
    "AccessRefused",
    "BadParameter",
    "Client",
    "Failure",
    "LocalClient",
    "NotThere",
    "Prediction",
    "Result",
    "RetryPolicy",
    "RunStopped",
]


def __getattr__(name: str):
    """Import LocalClient (and with it the model runtimes) only when it is asked for."""
    if name == "LocalClient":
        from client.local import LocalClient

        return LocalClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
