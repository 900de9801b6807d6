"""Errors shared by training and serving: each carries an HTTP status and a machine-readable code."""

from __future__ import annotations


class ClassifierError(Exception):
    """Base error; `code` is stable for clients, `status` is the HTTP status it maps to."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details or {}

    def to_dict(self) -> dict:
        body: dict = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class ImageError(ClassifierError):
    """The bytes given are not an image this service accepts."""

    status = 400
    code = "invalid_image"


class ModelStoreError(ClassifierError):
    """A model version is missing, incomplete or fails its checks."""

    status = 500
    code = "model_store_error"
