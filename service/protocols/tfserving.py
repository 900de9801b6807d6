"""TensorFlow Serving's REST API: predict (row and columnar), classify, status and metadata.

Multipart and raw image bodies on /v1/models/<name>:predict keep this service's own answer
(own.py); any other body there is TensorFlow Serving's JSON request and gets its answer shape,
whatever its Content-Type (TensorFlow Serving reads every body as JSON).
Errors are {"error": "message"}.
"""

from __future__ import annotations

import numpy as np
from flask import request
from pydantic import BaseModel

from service.dataplane import Upload
from service.errors import RequestError
from service.protocols import own, status, tensors
from service.protocols import tfserving_schemas as schemas
from service.protocols.rest import answer, dataplane, decode_base64, parse
from service.protocols.tensors import ProtocolError
from service.protocols.uploads import is_upload
from service.registry import ServedModel, VersionNotFound

SIGNATURE = "serving_default"


def predict(name: str, version: int | None = None, label: str | None = None):
    """This service's own predict for image uploads; TensorFlow Serving's for the others."""
    if is_upload(request.mimetype):
        return own.predict(name, _version(name, version, label))
    model = _model(name, version, label)
    _refuse_top_k()
    req = _parse(schemas.TfPredictRequest, _NOT_JSON_HINT)
    _check_signature(req.signature_name)
    if (req.instances is None) == (req.inputs is None):
        raise ProtocolError('send either "instances" (row form) or "inputs" (columnar form)')
    if req.instances is not None:
        uploads = [_b64(item, f"instances[{i}]") for i, item in enumerate(req.instances)]
    else:
        uploads = _columnar(req.inputs)
    probabilities, labels = _run(model, uploads)
    if req.instances is not None:
        rows = [
            {tensors.PROBABILITIES: p, tensors.LABEL: label}
            for p, label in zip(probabilities.tolist(), labels, strict=True)
        ]
        body = schemas.TfPredictResponse(predictions=rows)
    else:
        body = schemas.TfPredictResponse(
            outputs={tensors.PROBABILITIES: probabilities.tolist(), tensors.LABEL: labels}
        )
    return _respond(body, model)


def classify(name: str, version: int | None = None, label: str | None = None):
    model = _model(name, version, label)
    _refuse_top_k()
    body = _parse(schemas.TfClassifyRequest)
    _check_signature(body.signature_name)
    uploads = [_b64(item, f"examples[{i}]") for i, item in enumerate(body.examples)]
    probabilities, _ = _run(model, uploads)
    names = model.predictor.class_names
    result = [list(zip(names, row, strict=True)) for row in probabilities.tolist()]
    return _respond(schemas.TfClassifyResponse(result=result), model)


def version_status(name: str, version: int | None = None, label: str | None = None):
    """GetModelStatus for one version (the whole model is on GET /v1/models/<name>)."""
    wanted = _version(name, version, label)
    entries = [e for e in status.versions(dataplane().state(name)) if e.version == wanted]
    if not entries:
        raise VersionNotFound(f"version {wanted} of model {name!r} is not in the store")
    return answer(
        schemas.TfModelStatus(model_version_status=[status.tf_version_status(entries[0])])
    )


def metadata(name: str, version: int | None = None, label: str | None = None):
    """GetModelMetadata: the signature of the serving_default predict signature."""
    model = _model(name, version, label)
    return answer(describe_signature(model.name, model.version, len(model.predictor.class_names)))


def describe_signature(name: str, version: int, classes: int) -> schemas.TfModelMetadata:
    def tensor(tensor_name: str, dtype: str, dims: list[int]) -> dict:
        shape = {"dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False}
        return {"dtype": dtype, "tensor_shape": shape, "name": tensor_name}

    signature = {
        "inputs": {tensors.IMAGE_INPUT: tensor(tensors.IMAGE_INPUT, "DT_STRING", [-1])},
        "outputs": {
            tensors.PROBABILITIES: tensor(tensors.PROBABILITIES, "DT_FLOAT", [-1, classes]),
            tensors.LABEL: tensor(tensors.LABEL, "DT_STRING", [-1]),
        },
        "method_name": "tensorflow/serving/predict",
    }
    return schemas.TfModelMetadata(
        model_spec={"name": name, "signature_name": "", "version": str(version)},
        metadata={"signature_def": {"signature_def": {SIGNATURE: signature}}},
    )


def _refuse_top_k() -> None:
    """top_k is documented for this service's answer: with TensorFlow Serving's JSON forms
    it is refused, not silently dropped."""
    if "top_k" in request.args:
        raise RequestError(
            "top_k is not taken with TensorFlow Serving's JSON request (its answer has no top "
            "classes): leave it out, or send the image as multipart/form-data in the field "
            "'image' or with an image/* Content-Type to /v1/models/<name>:predict for this "
            "service's answer with `top`",
            code="invalid_parameter",
        )


def _version(name: str, version: int | None, label: str | None) -> int | None:
    """The version a label names (VERSION_LABELS), else the version given."""
    return version if label is None else dataplane().labelled(name, label)


def _model(name: str, version: int | None, label: str | None) -> ServedModel:
    return dataplane().model(name, _version(name, version, label))


_NOT_JSON_HINT = (
    " (TensorFlow Serving's request; send an image as multipart/form-data in the field "
    "'image' or with an image/* Content-Type)"
)


def _parse(payload: type[BaseModel], hint: str = ""):
    """The JSON body, whatever its Content-Type; `hint` added when it is not JSON and was
    not sent as JSON (an image sent with curl's default form type, say)."""
    try:
        return parse(payload, request.get_data(cache=False), "the body", "body")
    except RequestError as exc:
        if exc.code != "invalid_json" or request.mimetype == "application/json" or not hint:
            raise
        raise RequestError(exc.message + hint, code=exc.code) from None


def _check_signature(signature: str | None) -> None:
    if signature not in (None, "", SIGNATURE):
        raise ProtocolError(f"unknown signature_name {signature!r}; the model has {SIGNATURE!r}")


def _b64(item: object, where: str) -> Upload:
    """{"b64": ...}, or {"image": {"b64": ...}} with the input named."""
    if isinstance(item, dict) and set(item) == {tensors.IMAGE_INPUT}:
        item = item[tensors.IMAGE_INPUT]
    if not (isinstance(item, dict) and set(item) == {"b64"} and isinstance(item["b64"], str)):
        raise ProtocolError(
            f'{where} must be {{"b64": "<base64 image>"}} or '
            f'{{"{tensors.IMAGE_INPUT}": {{"b64": "<base64 image>"}}}}'
        )
    return Upload(decode_base64(item["b64"], f"{where}.b64"))


def _columnar(inputs: object) -> list[Upload]:
    """{"image": [...]} or [...] or one {"b64": ...}."""
    if isinstance(inputs, dict) and set(inputs) == {tensors.IMAGE_INPUT}:
        inputs = inputs[tensors.IMAGE_INPUT]
    items = inputs if isinstance(inputs, list) else [inputs]
    return [_b64(item, f"inputs[{i}]") for i, item in enumerate(items)]


def _run(model: ServedModel, uploads: list[Upload]) -> tuple[np.ndarray, list[str]]:
    if not uploads:
        raise ProtocolError("the request holds no image")
    return dataplane().classify(model, uploads)


def _respond(body: BaseModel, model: ServedModel):
    return answer(body, model.version)
