"""The Open Inference Protocol over gRPC: inference.GRPCInferenceService (ServerLive,
ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer), as tritonclient.grpc and
KServe's client call it.

A thin adapter: its requests are read into the protocol's tensors (v2.py) and go through the
data plane like every other protocol's. Images come as BYTES `image` elements in `contents` or
`raw_input_contents`, or as FP32/UINT8 pixels in `input`; outputs are `probabilities` and
`label` in `raw_output_contents` (as Triton answers), with the classification extension's
`classification` parameter. Errors are raised as the core's coded errors; the gRPC edge
(service/grpc/calls.py) sends each with its status code from service/errors.py.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import numpy as np
from google.protobuf.message import Message

from classifier.numbers import whole_number
from service.dataplane import DataPlane, Images, Upload
from service.protocols import tensors, v2
from service.protocols import v2_messages as messages
from service.protocols.tensors import ProtocolError
from service.registry import ModelNotReady, ServedModel

SERVICE = messages.SERVICE
CONTENTS = {"FP32": "fp32_contents", "UINT8": "uint_contents"}  # pixel datatypes' fields


class Servicer:
    """The service's methods over one worker's data plane."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    def ServerLive(self, request: Message, context: grpc.ServicerContext) -> Message:
        return messages.ServerLiveResponse(live=self.plane.live())

    def ServerReady(self, request: Message, context: grpc.ServicerContext) -> Message:
        return messages.ServerReadyResponse(ready=self.plane.ready())

    def ModelReady(self, request: Message, context: grpc.ServicerContext) -> Message:
        """Ready or not; NOT_FOUND for an unknown model or a version that is not loaded."""
        try:
            self.plane.model(request.name, _version(request.version))
        except ModelNotReady:
            return messages.ModelReadyResponse(ready=False)
        return messages.ModelReadyResponse(ready=True)

    def ServerMetadata(self, request: Message, context: grpc.ServicerContext) -> Message:
        described = v2.server_description()
        return messages.ServerMetadataResponse(
            name=described.name, version=described.version, extensions=described.extensions
        )

    def ModelMetadata(self, request: Message, context: grpc.ServicerContext) -> Message:
        model = self.plane.model(request.name, _version(request.version))
        described = v2.model_description(self.plane, model)
        answer = messages.ModelMetadataResponse(
            name=described.name, versions=described.versions, platform=described.platform
        )
        for field, tensors_ in (
            (answer.inputs, described.inputs),
            (answer.outputs, described.outputs),
        ):
            for tensor in tensors_:
                field.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        return answer

    def ModelInfer(self, request: Message, context: grpc.ServicerContext) -> Message:
        model = self.plane.model(request.model_name, _version(request.model_version))
        v2.one_input(len(request.inputs))
        [tensor] = request.inputs
        names = model.predictor.class_names
        requested = _requested(request)
        for name, classification in requested:
            v2.check_output(name, classification, names)
        images = _images(tensor, _raw(request, tensor), model, self.plane)
        probabilities, labels = v2.infer(self.plane, model, images, context.time_remaining())
        answer = messages.ModelInferResponse(
            model_name=model.name, model_version=str(model.version), id=request.id
        )
        for name, classification in requested:
            out = v2.output(name, classification, probabilities, labels, names)
            answer.outputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
            answer.raw_output_contents.append(v2.raw(out))
        return answer


def handler(plane: DataPlane) -> grpc.GenericRpcHandler:
    """The service's method handlers, from the proto's descriptor (no generated stub code)."""
    servicer = Servicer(plane)
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            _method(servicer, name),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
        for name, (request, response) in messages.methods().items()
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


def _method(servicer: Servicer, name: str) -> Callable[[Message, grpc.ServicerContext], Message]:
    return getattr(servicer, name)


def _version(text: str) -> int | None:
    """A model version as the protocol sends it: empty for the default, else a number (0
    is a number no version has: NOT_FOUND, as REST's 404 for /versions/0)."""
    if not text:
        return None
    version = whole_number(text)
    if version is None:
        raise ProtocolError(f"a model version is a whole number from 1, got {text!r}")
    return version


def _raw(request: Message, tensor: Message) -> bytes | None:
    """The input's raw_input_contents, when it came that way."""
    raw = request.raw_input_contents
    if not raw:
        if not tensor.HasField("contents"):
            raise ProtocolError(
                f"input {tensor.name!r} needs either contents or raw_input_contents"
            )
        return None
    if len(raw) != len(request.inputs):
        raise ProtocolError(
            f"raw_input_contents holds {len(raw)} entries for {len(request.inputs)} input"
        )
    if tensor.HasField("contents"):
        raise ProtocolError(
            f"input {tensor.name!r} comes in both contents and raw_input_contents: send one"
        )
    return raw[0]


def _images(tensor: Message, raw: bytes | None, model: ServedModel, plane: DataPlane) -> Images:
    """Encoded files (input "image") or pixels (input "input"), before any decoding."""
    if any(size < 0 for size in tensor.shape):
        raise ProtocolError(f"the shape of input {tensor.name!r} has a negative size")
    declared = v2.InputTensor(tensor.name, tensor.datatype, list(tensor.shape))
    v2.check_input(declared, plane, model)
    if tensor.name == tensors.IMAGE_INPUT:
        if raw is not None:
            return v2.encoded_raw(declared, raw)
        items = list(tensor.contents.bytes_contents)
        v2.check_elements(declared, len(items))
        return [Upload(item) for item in items]
    if raw is not None:
        return v2.pixels_raw(declared, raw, model, "raw_input_contents")
    v2.pixel_dtype(declared)
    values = getattr(tensor.contents, CONTENTS[tensor.datatype])
    return v2.pixels_values(declared, np.asarray(values, dtype=np.float64), model)


def _requested(request: Message) -> list[tuple[str, object]]:
    """The outputs asked for (every one when none is named), with their classification k."""
    if not request.outputs:
        return [(name, None) for name in tensors.OUTPUTS]
    return [(out.name, _classification(out)) for out in request.outputs]


def _classification(out: Message) -> object:
    """The `classification` parameter: a whole number, or what was sent instead (refused)."""
    if "classification" not in out.parameters:
        return None
    parameter = out.parameters["classification"]
    choice = parameter.WhichOneof("parameter_choice")
    value = getattr(parameter, choice) if choice else None
    return value if choice in ("int64_param", "uint64_param") else repr(value)
