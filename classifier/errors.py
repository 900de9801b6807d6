"""Errors shared by training and serving: each carries a stable, machine-readable code.

No HTTP here: the service maps codes to statuses in one table (service/errors.py).
"""

from __future__ import annotations


class ClassifierError(Exception):
    """Base error; `code` is stable for clients and `details` is safe to show them."""

    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}


class ImageError(ClassifierError):
    """The bytes given are not an image this service accepts."""

    code = "invalid_image"


class ModelStoreError(ClassifierError):
    """A model version is missing, incomplete or fails its checks."""

    code = "model_store_error"
