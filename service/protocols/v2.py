"""The Open Inference Protocol (KServe "V2", as Triton and MLServer speak it), whatever carries
it: the server's and the models' metadata, an input tensor read into images, and the output
tensors of an answer. The REST adapter (v2_rest.py) and the gRPC one (v2_grpc.py) read their
requests into these and write these back in their own encoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import metadata as package_metadata

import numpy as np

from service.dataplane import DataPlane, Images, Upload
from service.protocols import tensors
from service.protocols.tensors import ProtocolError
from service.protocols.v2_schemas import V2ModelMetadata, V2ServerMetadata, V2Tensor
from service.registry import ServedModel

SERVER_NAME = "image-classifier-service"
EXTENSIONS = ["binary_tensor_data", "classification"]
PLATFORMS = {"onnx": "onnxruntime_onnx", "openvino": "openvino_onnx", "keras": "tensorflow_keras"}


@dataclass(frozen=True)
class InputTensor:
    """One input as a request declares it; its elements come separately (inline or raw)."""

    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str
    shape: list[int]
    values: np.ndarray | list[str]  # FP32 numbers, or BYTES elements as text


def server_description() -> V2ServerMetadata:
    try:
        version = package_metadata.version(SERVER_NAME)
    except package_metadata.PackageNotFoundError:
        version = "unknown"
    return V2ServerMetadata(name=SERVER_NAME, version=version, extensions=EXTENSIONS)


def model_description(plane: DataPlane, model: ServedModel) -> V2ModelMetadata:
    return describe_model(
        model.name,
        sorted(plane.state(model.name).loaded),
        model.predictor.runtime.name,
        model.spec.shape,
        model.predictor.class_names,
        plane.settings.max_images_per_request,
    )


def describe_model(
    name: str,
    versions: list[int],
    runtime: str,
    shape: tuple[int, ...],
    classes: tuple[str, ...],
    max_images: int,
) -> V2ModelMetadata:
    """A model's V2 metadata: its two inputs (send one) and two outputs."""
    return V2ModelMetadata(
        name=name,
        versions=[str(v) for v in versions],
        platform=PLATFORMS.get(runtime, runtime),
        inputs=[
            V2Tensor(name=tensors.IMAGE_INPUT, datatype="BYTES", shape=[-1]),
            V2Tensor(name=tensors.PIXELS_INPUT, datatype="FP32", shape=[-1, *shape]),
        ],
        outputs=[
            V2Tensor(name=tensors.PROBABILITIES, datatype="FP32", shape=[-1, len(classes)]),
            V2Tensor(name=tensors.LABEL, datatype="BYTES", shape=[-1]),
        ],
        parameters={
            "classes": list(classes),
            "pixel_datatypes": sorted(tensors.PIXEL_DATATYPES),
            "max_images_per_request": max_images,
        },
    )


# -- inputs ---------------------------------------------------------------------------------


def one_input(count: int) -> None:
    if count != 1:
        raise ProtocolError(
            f"send exactly one input, {tensors.IMAGE_INPUT!r} or {tensors.PIXELS_INPUT!r}; "
            f"got {count}"
        )


def check_input(tensor: InputTensor, plane: DataPlane, model: ServedModel) -> None:
    """Before any element is read: the image count the shape declares, the input's name, and
    for encoded images their datatype and shape."""
    if tensor.shape:
        plane.check_count(tensor.shape[0])
    if tensor.name == tensors.IMAGE_INPUT:
        if tensor.datatype != "BYTES" or len(tensor.shape) != 1:
            raise ProtocolError(
                f"input {tensors.IMAGE_INPUT!r} must be BYTES of shape [N], "
                f"got {tensor.datatype} {tensor.shape}"
            )
    elif tensor.name != tensors.PIXELS_INPUT:
        raise ProtocolError(
            f"unknown input {tensor.name!r}: send {tensors.IMAGE_INPUT!r} (BYTES [N], image "
            f"files) or {tensors.PIXELS_INPUT!r} (FP32 or UINT8 "
            f"[N, {', '.join(map(str, model.spec.shape))}])"
        )


def check_elements(tensor: InputTensor, count: int) -> None:
    """Input "image" holds as many inline elements as its shape says."""
    if count != tensor.shape[0]:
        raise ProtocolError(f"the shape says {tensor.shape[0]} elements, the data holds {count}")


def encoded_raw(tensor: InputTensor, raw: bytes) -> list[Upload]:
    """The image files of input "image" from its length-prefixed binary form."""
    return [Upload(item) for item in tensors.unpack_bytes(raw, tensor.shape[0])]


def pixel_dtype(tensor: InputTensor) -> np.dtype:
    dtype = tensors.PIXEL_DATATYPES.get(tensor.datatype)
    if dtype is None:
        raise ProtocolError(
            f"input {tensors.PIXELS_INPUT!r} must be FP32 or UINT8, got {tensor.datatype}"
        )
    return dtype


def element_count(tensor: InputTensor) -> int:
    """Exact, however large the declared shape (numpy's product wraps around at 2**63)."""
    return math.prod(tensor.shape) if tensor.shape else 0


def pixels_raw(tensor: InputTensor, raw: bytes, model: ServedModel, where: str) -> np.ndarray:
    """Pixels of input "input" from their little-endian binary form; `where` names the
    field that gave the size (binary_data_size, raw_input_contents)."""
    dtype = pixel_dtype(tensor)
    size = element_count(tensor) * dtype.itemsize
    if len(raw) != size:
        raise ProtocolError(
            f"shape {tensor.shape} of {tensor.datatype} needs {size} bytes, {where} gives "
            f"{len(raw)}"
        )
    return _shaped(tensor, np.frombuffer(raw, dtype=dtype), model)


def pixels_values(tensor: InputTensor, values: object, model: ServedModel) -> np.ndarray:
    """Pixels of input "input" from their inline numbers (flat or nested)."""
    dtype = pixel_dtype(tensor)
    if isinstance(values, list) and not _numbers(values):
        raise ProtocolError(f"the data of input {tensors.PIXELS_INPUT!r} must be numbers")
    try:
        given = np.asarray(values)
        if given.dtype.kind not in "iuf":  # numbers only: not "1", not true, not ragged
            raise TypeError(given.dtype)
        flat = given.astype(np.float64).reshape(-1)
    except (ValueError, TypeError, OverflowError):  # OverflowError: an int past float64
        raise _misfit(tensor) from None
    if dtype == np.uint8 and np.any((flat != np.round(flat)) | (flat < 0) | (flat > 255)):
        raise ProtocolError(f"UINT8 input {tensors.PIXELS_INPUT!r} holds values outside 0-255")
    return _shaped(tensor, flat.astype(dtype), model)


def _numbers(values: list) -> bool:
    """Whether nested JSON lists hold only numbers: numpy would take "1" or a true among
    them as 1."""
    stack: list = [values]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            return False
    return True


def _shaped(tensor: InputTensor, flat: np.ndarray, model: ServedModel) -> np.ndarray:
    try:
        values = flat.reshape(tensor.shape)
    except (ValueError, TypeError):
        raise _misfit(tensor) from None
    return tensors.pixels(values, model.spec)


def _misfit(tensor: InputTensor) -> ProtocolError:
    return ProtocolError(
        f"the data of input {tensors.PIXELS_INPUT!r} does not fit its shape {tensor.shape}"
    )


def infer(
    plane: DataPlane, model: ServedModel, images: Images, timeout_s: float | None = None
) -> tuple[np.ndarray, list[str]]:
    if len(images) == 0:
        raise ProtocolError("the input holds no image")
    return plane.classify(model, images, timeout_s)


# -- outputs --------------------------------------------------------------------------------


def check_output(name: str, classification: object, class_names: tuple[str, ...]) -> None:
    """A requested output, before any image is decoded: a refused request never reaches the
    model, the metrics, the drift window or capture."""
    if name not in tensors.OUTPUTS:
        raise ProtocolError(f"unknown output {name!r}; outputs: {list(tensors.OUTPUTS)}")
    if classification is not None and (
        name != tensors.PROBABILITIES
        or not isinstance(classification, int)
        or isinstance(classification, bool)  # JSON true is no k
    ):
        raise ProtocolError(
            f"classification takes a whole number, on output {tensors.PROBABILITIES!r} only"
        )
    if classification is not None:
        tensors.check_k(classification, class_names)


def output(
    name: str,
    classification: object,
    probabilities: np.ndarray,
    labels: list[str],
    class_names: tuple[str, ...],
) -> OutputTensor:
    """One requested output (checked by check_output): `probabilities` (FP32 [N, C]) or
    `label` (BYTES [N]); with the classification extension's k, the k best classes per image
    (BYTES [N, k])."""
    if classification is not None:
        rows = tensors.top_k(probabilities, classification, class_names)
        flat = [item for row in rows for item in row]
        return OutputTensor(name, "BYTES", [len(rows), classification], flat)
    if name == tensors.LABEL:
        return OutputTensor(name, "BYTES", [len(labels)], labels)
    return OutputTensor(name, "FP32", list(probabilities.shape), probabilities)


def raw(tensor: OutputTensor) -> bytes:
    """An output's binary form: length-prefixed BYTES, or little-endian FP32."""
    if tensor.datatype == "BYTES":
        return tensors.pack_bytes([str(v).encode() for v in tensor.values])
    return np.asarray(tensor.values, dtype="<f4").tobytes()
