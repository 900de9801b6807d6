"""The Open Inference Protocol's gRPC messages (grpc_predict_v2.proto), in a descriptor pool
of this service's own.

grpc_predict_v2.binpb is the proto's FileDescriptorSet as grpcio-tools' protoc makes it
(committed; generated with grpcio-tools 1.81.1, libprotoc 33.5). It is loaded here into a
private pool rather than as generated `_pb2` code in protobuf's default pool: tritonclient,
MLServer and KServe register the same `inference.*` symbols there, and a second registration
fails ("duplicate symbol 'inference.ServerLiveRequest'"), so this service, its tests and a
user's process could not import tritonclient.grpc beside it.

    python -m service.protocols.v2_messages --write    regenerate the .binpb after editing the
                                                       .proto (needs grpcio-tools)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

HERE = Path(__file__).resolve().parent
PROTO = HERE / "grpc_predict_v2.proto"
DESCRIPTOR_SET = HERE / "grpc_predict_v2.binpb"
SERVICE = "inference.GRPCInferenceService"

FILES = tuple(descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes()).file)
POOL = descriptor_pool.DescriptorPool()
for _file in FILES:
    POOL.Add(_file)


def message(name: str) -> type[Message]:
    """The class of the message `inference.<name>`."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"inference.{name}"))


ServerLiveResponse = message("ServerLiveResponse")
ServerReadyResponse = message("ServerReadyResponse")
ModelReadyResponse = message("ModelReadyResponse")
ServerMetadataResponse = message("ServerMetadataResponse")
ModelMetadataResponse = message("ModelMetadataResponse")
ModelInferRequest = message("ModelInferRequest")
ModelInferResponse = message("ModelInferResponse")


def methods() -> dict[str, tuple[type[Message], type[Message]]]:
    """Each method of the service: its request and response classes."""
    service = POOL.FindServiceByName(SERVICE)
    return {
        method.name: (
            message_factory.GetMessageClass(method.input_type),
            message_factory.GetMessageClass(method.output_type),
        )
        for method in service.methods
    }


def generate() -> bytes:
    """The FileDescriptorSet of the .proto as grpcio-tools' protoc makes it now."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "set.binpb"
        command = [sys.executable, "-m", "grpc_tools.protoc", f"-I{HERE}"]
        command += [f"--descriptor_set_out={out}", PROTO.name]
        subprocess.run(command, check=True)
        return out.read_bytes()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m service.protocols.v2_messages", description=__doc__)
    p.add_argument("--write", action="store_true", help="rewrite grpc_predict_v2.binpb")
    args = p.parse_args(argv)
    fresh = generate()
    if args.write:
        DESCRIPTOR_SET.write_bytes(fresh)
        return 0
    stale = fresh != DESCRIPTOR_SET.read_bytes()
    print("stale: run with --write" if stale else "up to date")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
