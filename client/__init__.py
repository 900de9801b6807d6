"""A client for the image classification service, over HTTP or with the model in process.

    from client import Client
    results = Client("http://127.0.0.1:8000").predict(["a.jpg", "photos/b.png"])

`LocalClient(models_dir, name)` has the same `predict`; it is imported on first use, so the
HTTP client does not load the model runtimes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from client.remote import Client, RetryPolicy
from client.results import Failure, Prediction, Result

if TYPE_CHECKING:
    from client.local import LocalClient

__all__ = ["Client", "Failure", "LocalClient", "Prediction", "Result", "RetryPolicy"]


def __getattr__(name: str):
    """Import LocalClient (and with it the model runtimes) only when it is asked for."""
    if name == "LocalClient":
        from client.local import LocalClient

        return LocalClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
