"""The committed descriptor of grpc_predict_v2.proto is what grpcio-tools makes of it, and its
private pool lives beside tritonclient's own `inference.*` messages in one process."""

from __future__ import annotations

import subprocess
import sys

from google.protobuf import descriptor_pb2

from service.protocols import v2_messages


def test_the_committed_descriptor_is_the_proto_compiled():
    fresh = descriptor_pb2.FileDescriptorSet.FromString(v2_messages.generate())
    committed = descriptor_pb2.FileDescriptorSet.FromString(v2_messages.DESCRIPTOR_SET.read_bytes())
    assert fresh == committed, "run python -m service.protocols.v2_messages --write"


def test_the_service_has_the_protocols_six_methods():
    assert list(v2_messages.methods()) == [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    ]


def test_tritonclient_grpc_imports_beside_it_in_either_order():
    for first, second in (
        ("tritonclient.grpc", "service.protocols.v2_messages"),
        ("service.protocols.v2_messages", "tritonclient.grpc"),
    ):
        code = f"import {first}, {second}"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_a_request_reads_back_as_tritonclients_message():
    from tritonclient.grpc import service_pb2

    request = v2_messages.ModelInferRequest(model_name="pets", id="x", raw_input_contents=[b"ab"])
    request.inputs.add(name="image", datatype="BYTES", shape=[1])
    theirs = service_pb2.ModelInferRequest.FromString(request.SerializeToString())
    assert (theirs.model_name, theirs.id, list(theirs.raw_input_contents)) == ("pets", "x", [b"ab"])
    assert theirs.inputs[0].name == "image" and list(theirs.inputs[0].shape) == [1]
