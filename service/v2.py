"""The Open Inference Protocol (KServe "V2", as Triton and MLServer speak it) over REST.

Same decode, batcher, limits, metrics and logs as this service's own predict route; errors
are {"error": "message"} (set up in service/errors.py for every /v2 path).
"""

from __future__ import annotations

import json
from importlib import metadata as package_metadata

import numpy as np
from flask import Response, jsonify, request

from service import inference, limits, schemas, tensors
from service.current import registry, settings
from service.errors import RequestError
from service.inputs import Upload, decode_base64
from service.observability import note_model
from service.registry import ModelNotReady, ServedModel
from service.tensors import ProtocolError

SERVER_NAME = "image-classifier-service"
EXTENSIONS = ["binary_tensor_data", "classification"]
PLATFORMS = {"onnx": "onnxruntime_onnx", "openvino": "openvino_onnx", "keras": "tensorflow_keras"}
HEADER_LENGTH = "Inference-Header-Content-Length"


def server_description() -> schemas.V2ServerMetadata:
    try:
        version = package_metadata.version(SERVER_NAME)
    except package_metadata.PackageNotFoundError:
        version = "unknown"
    return schemas.V2ServerMetadata(name=SERVER_NAME, version=version, extensions=EXTENSIONS)


def server_metadata():
    return jsonify(schemas.dump(server_description()))


def live():
    return jsonify(schemas.dump(schemas.V2Live(live=True)))


def ready():
    if not registry().ready():
        raise ModelNotReady(f"the default model {registry().default_name!r} is not loaded yet")
    return jsonify(schemas.dump(schemas.V2Ready(ready=True)))


def model_ready(name: str, version: int | None = None):
    model = registry().get(name, version)  # 404 unknown, 503 not loaded yet
    return jsonify(schemas.dump(schemas.V2ModelReady(name=model.name, ready=True)))


def model_metadata(name: str, version: int | None = None):
    model = registry().get(name, version)
    answer = describe_model(
        model.name,
        sorted(registry().find(name).loaded),
        model.predictor.runtime.name,
        model.spec.shape,
        model.predictor.class_names,
        settings().max_images_per_request,
    )
    return jsonify(schemas.dump(answer))


def describe_model(
    name: str,
    versions: list[int],
    runtime: str,
    shape: tuple[int, ...],
    classes: tuple[str, ...],
    max_images: int,
) -> schemas.V2ModelMetadata:
    """A model's V2 metadata: its two inputs (send one) and two outputs."""
    return schemas.V2ModelMetadata(
        name=name,
        versions=[str(v) for v in versions],
        platform=PLATFORMS.get(runtime, runtime),
        inputs=[
            schemas.V2Tensor(name=tensors.IMAGE_INPUT, datatype="BYTES", shape=[-1]),
            schemas.V2Tensor(name=tensors.PIXELS_INPUT, datatype="FP32", shape=[-1, *shape]),
        ],
        outputs=[
            schemas.V2Tensor(name=tensors.PROBABILITIES, datatype="FP32", shape=[-1, len(classes)]),
            schemas.V2Tensor(name=tensors.LABEL, datatype="BYTES", shape=[-1]),
        ],
        parameters={
            "classes": list(classes),
            "pixel_datatypes": sorted(tensors.PIXEL_DATATYPES),
            "max_images_per_request": max_images,
        },
    )


def infer(name: str, version: int | None = None):
    model = registry().get(name, version)
    note_model(model.name, model.version)
    header, binary = tensors.split_body(
        request.get_data(cache=False), request.headers.get(HEADER_LENGTH)
    )
    req = limits.parse(schemas.V2InferRequest, header, "the inference request header", "request")
    if len(req.inputs) != 1:
        raise ProtocolError(
            f"send exactly one input, {tensors.IMAGE_INPUT!r} or {tensors.PIXELS_INPUT!r}; "
            f"got {len(req.inputs)}"
        )
    [tensor] = req.inputs
    size = (tensor.parameters or {}).get("binary_data_size")
    blobs = tensors.take_binary(binary, [] if size is None else [size])
    images = _images(tensor, blobs[0] if blobs else None, model)
    if len(images) == 0:
        raise ProtocolError("the input holds no image")
    probabilities, labels = inference.tensors(model, images)
    names = model.predictor.class_names
    outputs = [_output(o, probabilities, labels, names, req) for o in _requested(req)]
    answer = schemas.V2InferResponse(
        model_name=model.name, model_version=str(model.version), outputs=[o for o, _ in outputs]
    )
    if req.id is not None:
        answer.id = req.id
    return _respond(answer, [blob for _, blob in outputs if blob is not None])


def _images(tensor: schemas.V2RequestInput, blob: bytes | None, model: ServedModel):
    """Encoded files (input "image") or pixels (input "input"), before any decoding."""
    if (blob is None) == (tensor.data is None):
        raise ProtocolError(f"input {tensor.name!r} needs either data or binary_data_size")
    if tensor.shape and tensor.shape[0] > settings().max_images_per_request:
        raise RequestError(  # before any element is read
            f"{tensor.shape[0]} images in one request; the limit is "
            f"{settings().max_images_per_request}",
            code="too_many_images",
        )
    if tensor.name == tensors.IMAGE_INPUT:
        return _encoded(tensor, blob)
    if tensor.name == tensors.PIXELS_INPUT:
        return _pixels(tensor, blob, model)
    raise ProtocolError(
        f"unknown input {tensor.name!r}: send {tensors.IMAGE_INPUT!r} (BYTES [N], image files) "
        f"or {tensors.PIXELS_INPUT!r} (FP32 or UINT8 [N, {', '.join(map(str, model.spec.shape))}])"
    )


def _encoded(tensor: schemas.V2RequestInput, blob: bytes | None) -> list[Upload]:
    if tensor.datatype != "BYTES" or len(tensor.shape) != 1:
        raise ProtocolError(
            f"input {tensors.IMAGE_INPUT!r} must be BYTES of shape [N], "
            f"got {tensor.datatype} {tensor.shape}"
        )
    count = tensor.shape[0]
    if blob is not None:
        return [Upload(item) for item in tensors.unpack_bytes(blob, count)]
    encoding = (tensor.parameters or {}).get("content_type", "base64")
    if encoding != "base64":
        raise ProtocolError(f"BYTES images in JSON must be base64, not {encoding!r}")
    items = list(np.asarray(tensor.data, dtype=object).reshape(-1))
    if len(items) != count:
        raise ProtocolError(f"the shape says {count} elements, the data holds {len(items)}")
    return [
        Upload(decode_base64(item, f"element {i} of input {tensors.IMAGE_INPUT!r}"))
        for i, item in enumerate(items)
    ]


def _pixels(tensor: schemas.V2RequestInput, blob: bytes | None, model: ServedModel) -> np.ndarray:
    dtype = tensors.PIXEL_DATATYPES.get(tensor.datatype)
    if dtype is None:
        raise ProtocolError(
            f"input {tensors.PIXELS_INPUT!r} must be FP32 or UINT8, got {tensor.datatype}"
        )
    count = int(np.prod(tensor.shape)) if tensor.shape else 0
    try:
        if blob is not None:
            if len(blob) != count * dtype.itemsize:
                raise ProtocolError(
                    f"shape {tensor.shape} of {tensor.datatype} needs {count * dtype.itemsize} "
                    f"bytes, binary_data_size gives {len(blob)}"
                )
            flat = np.frombuffer(blob, dtype=dtype)
        else:
            flat = np.asarray(tensor.data, dtype=np.float64).reshape(-1)
            if dtype == np.uint8 and np.any((flat != np.round(flat)) | (flat < 0) | (flat > 255)):
                raise ProtocolError(
                    f"UINT8 input {tensors.PIXELS_INPUT!r} holds values outside 0-255"
                )
            flat = flat.astype(dtype)
        values = flat.reshape(tensor.shape)
    except (ValueError, TypeError):
        raise ProtocolError(
            f"the data of input {tensors.PIXELS_INPUT!r} does not fit its shape {tensor.shape}"
        ) from None
    return tensors.pixels(values, model.spec)


def _requested(req: schemas.V2InferRequest) -> list[schemas.V2RequestOutput]:
    if req.outputs is None:
        return [schemas.V2RequestOutput(name=name) for name in tensors.OUTPUTS]
    return req.outputs


def _output(
    out: schemas.V2RequestOutput,
    probabilities: np.ndarray,
    labels: list[str],
    names: tuple[str, ...],
    req: schemas.V2InferRequest,
) -> tuple[schemas.V2ResponseOutput, bytes | None]:
    params = out.parameters or {}
    binary = params.get("binary_data", (req.parameters or {}).get("binary_data_output", False))
    k = params.get("classification")
    if out.name not in tensors.OUTPUTS:
        raise ProtocolError(f"unknown output {out.name!r}; outputs: {list(tensors.OUTPUTS)}")
    if k is not None and (out.name != tensors.PROBABILITIES or not isinstance(k, int)):
        raise ProtocolError(
            f"classification takes a whole number, on output {tensors.PROBABILITIES!r} only"
        )
    if k is not None:
        rows = tensors.top_k(probabilities, k, names)
        flat = [item for row in rows for item in row]
        return _tensor(out.name, "BYTES", [len(rows), k], flat, binary)
    if out.name == tensors.LABEL:
        return _tensor(out.name, "BYTES", [len(labels)], labels, binary)
    return _tensor(out.name, "FP32", list(probabilities.shape), probabilities, binary)


def _tensor(name: str, datatype: str, shape: list[int], values, binary: bool):
    output = schemas.V2ResponseOutput(name=name, datatype=datatype, shape=shape)
    if not binary:
        output.data = np.asarray(values).reshape(-1).tolist()
        return output, None
    if datatype == "BYTES":
        blob = tensors.pack_bytes([str(v).encode() for v in values])
    else:
        blob = np.asarray(values, dtype="<f4").tobytes()
    output.parameters = {"binary_data_size": len(blob)}
    return output, blob


def _respond(answer: schemas.V2InferResponse, blobs: list[bytes]):
    if not blobs:
        response = jsonify(schemas.dump(answer))
    else:
        header = json.dumps(schemas.dump(answer), separators=(",", ":")).encode()
        response = Response(header + b"".join(blobs), content_type="application/octet-stream")
        response.headers[HEADER_LENGTH] = str(len(header))
    response.headers["X-Model-Version"] = answer.model_version
    return response
