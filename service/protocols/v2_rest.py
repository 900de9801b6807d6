"""The Open Inference Protocol over REST (/v2/...): JSON, or the binary tensor data extension
(the JSON header, then the tensors' bytes). Errors are {"error": "message"} (the route table
sets that shape for every /v2 path)."""

from __future__ import annotations

import json

import numpy as np
from flask import Response, request

from service.dataplane import Upload
from service.protocols import tensors, v2
from service.protocols import v2_schemas as schemas
from service.protocols.payloads import dump
from service.protocols.rest import answer, dataplane, decode_base64, parse
from service.protocols.tensors import ProtocolError
from service.registry import ModelNotReady, ServedModel

HEADER_LENGTH = "Inference-Header-Content-Length"


def server_metadata():
    return answer(v2.server_description())


def live():
    return answer(schemas.V2Live(live=dataplane().live()))


def ready():
    plane = dataplane()
    if not plane.ready():
        raise ModelNotReady(f"the default model {plane.registry.default_name!r} is not loaded yet")
    return answer(schemas.V2Ready(ready=True))


def model_ready(name: str, version: int | None = None):
    model = dataplane().model(name, version)  # 404 unknown, 503 not loaded yet
    return answer(schemas.V2ModelReady(name=model.name, ready=True))


def model_metadata(name: str, version: int | None = None):
    plane = dataplane()
    return answer(v2.model_description(plane, plane.model(name, version)))


def infer(name: str, version: int | None = None):
    plane = dataplane()
    model = plane.model(name, version)
    if request.mimetype.startswith("multipart/"):  # a form upload sent to the wrong route
        raise ProtocolError(
            "V2 infer takes a JSON request (or JSON and binary tensors), not a multipart form: "
            f"send the image as a BYTES input, or POST the form to /v1/models/{name}:predict"
        )
    header, binary = tensors.split_body(
        request.get_data(cache=False), request.headers.get(HEADER_LENGTH)
    )
    req = parse(schemas.V2InferRequest, header, "the inference request header", "request")
    v2.one_input(len(req.inputs))
    [tensor] = req.inputs
    names = model.predictor.class_names
    requested = _requested(req)
    for out in requested:
        v2.check_output(out.name, _classification(out), names)
        _binary(out, req)  # a bad flag is refused before the model runs
    size = (tensor.parameters or {}).get("binary_data_size")
    blobs = tensors.take_binary(binary, [] if size is None else [size])
    images = _images(tensor, blobs[0] if blobs else None, model)
    probabilities, labels = v2.infer(plane, model, images)
    outputs = [_output(o, probabilities, labels, names, req) for o in requested]
    body = schemas.V2InferResponse(
        model_name=model.name, model_version=str(model.version), outputs=[o for o, _ in outputs]
    )
    if req.id is not None:
        body.id = req.id
    return _respond(body, [blob for _, blob in outputs if blob is not None])


def _images(tensor: schemas.V2RequestInput, blob: bytes | None, model: ServedModel):
    """Encoded files (input "image") or pixels (input "input"), before any decoding."""
    if (blob is None) == (tensor.data is None):
        raise ProtocolError(f"input {tensor.name!r} needs either data or binary_data_size")
    declared = v2.InputTensor(tensor.name, tensor.datatype, tensor.shape)
    v2.check_input(declared, dataplane(), model)
    if tensor.name == tensors.IMAGE_INPUT:
        return _encoded(declared, tensor, blob)
    if blob is not None:
        return v2.pixels_raw(declared, blob, model, "binary_data_size")
    return v2.pixels_values(declared, tensor.data, model)


def _encoded(
    declared: v2.InputTensor, tensor: schemas.V2RequestInput, blob: bytes | None
) -> list[Upload]:
    if blob is not None:
        return v2.encoded_raw(declared, blob)
    encoding = (tensor.parameters or {}).get("content_type", "base64")
    if encoding != "base64":
        raise ProtocolError(f"BYTES images in JSON must be base64, not {encoding!r}")
    items = list(np.asarray(tensor.data, dtype=object).reshape(-1))
    v2.check_elements(declared, len(items))
    return [
        Upload(decode_base64(item, f"element {i} of input {tensors.IMAGE_INPUT!r}"))
        for i, item in enumerate(items)
    ]


def _requested(req: schemas.V2InferRequest) -> list[schemas.V2RequestOutput]:
    if req.outputs is None:
        return [schemas.V2RequestOutput(name=name) for name in tensors.OUTPUTS]
    return req.outputs


def _classification(out: schemas.V2RequestOutput) -> object:
    """The `classification` parameter: None when absent; a JSON null is sent but is no k, so
    it is passed on as text and refused, as gRPC refuses a parameter with no value."""
    params = out.parameters or {}
    if "classification" not in params:
        return None
    value = params["classification"]
    return "null" if value is None else value


def _output(
    out: schemas.V2RequestOutput,
    probabilities: np.ndarray,
    labels: list[str],
    names: tuple[str, ...],
    req: schemas.V2InferRequest,
) -> tuple[schemas.V2ResponseOutput, bytes | None]:
    binary = _binary(out, req)
    tensor = v2.output(out.name, _classification(out), probabilities, labels, names)
    output = schemas.V2ResponseOutput(
        name=tensor.name, datatype=tensor.datatype, shape=tensor.shape
    )
    if not binary:
        output.data = np.asarray(tensor.values).reshape(-1).tolist()
        return output, None
    blob = v2.raw(tensor)
    output.parameters = {"binary_data_size": len(blob)}
    return output, blob


def _binary(out: schemas.V2RequestOutput, req: schemas.V2InferRequest) -> bool:
    """The output's `binary_data`, else the request's `binary_data_output`: true or false
    (a JSON string "no" is not false)."""
    given = (out.parameters or {}).get(
        "binary_data", (req.parameters or {}).get("binary_data_output", False)
    )
    if not isinstance(given, bool):
        raise ProtocolError(f"binary_data of output {out.name!r} must be true or false")
    return given


def _respond(body: schemas.V2InferResponse, blobs: list[bytes]) -> Response:
    if not blobs:
        response = answer(body)
    else:
        header = json.dumps(dump(body), separators=(",", ":")).encode()
        response = Response(header + b"".join(blobs), content_type="application/octet-stream")
        response.headers[HEADER_LENGTH] = str(len(header))
    response.headers["X-Model-Version"] = body.model_version
    return response
