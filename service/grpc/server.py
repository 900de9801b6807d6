"""One worker's gRPC server: built on its data plane, bound to GRPC_PORT beside the other
workers (SO_REUSEPORT), stopped on SIGTERM (see __init__.py for the process model)."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from service import keys
from service.dataplane import DataPlane
from service.grpc.calls import CallInterceptor
from service.grpc.health import Health
from service.protocols import v2_grpc, v2_messages
from service.settings import Settings

log = logging.getLogger(__name__)


class GrpcServer:
    """A started gRPC server and its health service."""

    def __init__(
        self, server: grpc.Server, health: Health, calls: CallInterceptor, port: int
    ) -> None:
        self.server = server
        self.health = health
        self.calls = calls
        self.port = port

    def stop(self, grace_s: float) -> threading.Event:
        """Refuse new calls now; calls in flight get `grace_s` (returns at once, with the
        event set once the server has stopped). Open health Watches are told NOT_SERVING,
        then ended: they would hold the stop for the whole grace period."""
        self.health.shutdown()
        self.calls.end_streams()
        return self.server.stop(grace_s)

    def stop_on_sigterm(self, grace_s: float) -> None:
        """Stop when the worker is told to (before the handler gunicorn set for it)."""
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum, frame) -> None:
            self.stop(grace_s)
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGTERM, on_term)


def options(settings: Settings) -> list[tuple[str, int]]:
    """Every worker on one port; messages within the upload limit, as HTTP bodies are."""
    return [
        ("grpc.so_reuseport", 1),
        ("grpc.max_receive_message_length", settings.max_upload_bytes),
        ("grpc.max_send_message_length", settings.max_upload_bytes),
    ]


def build(plane: DataPlane, settings: Settings) -> tuple[grpc.Server, Health, CallInterceptor]:
    """The server with its three services; GUNICORN_THREADS calls run at once and as many
    again may wait, past that a call is refused (RESOURCE_EXHAUSTED). An open health Watch
    counts in neither: it holds no thread while it waits (service/grpc/calls.py)."""
    key_file = keys.KeyFile(settings.api_keys_file) if settings.api_keys_file else None
    calls = CallInterceptor(key_file, settings.exempt_paths)
    server = grpc.server(
        ThreadPoolExecutor(settings.gunicorn_threads, thread_name_prefix="grpc"),
        interceptors=[calls],
        options=options(settings),
        maximum_concurrent_rpcs=2 * settings.gunicorn_threads,
    )
    calls.attach(server)  # its refusals past that limit are logged and counted
    server.add_generic_rpc_handlers((v2_grpc.handler(plane),))
    health = Health(plane)
    health.install(server)
    names = (v2_grpc.SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    reflection.enable_server_reflection(
        (*names, reflection.SERVICE_NAME), server, reflection_pool()
    )
    return server, health, calls


def reflection_pool() -> descriptor_pool.DescriptorPool:
    """What reflection describes: the inference service (from its own pool, see
    service/protocols/v2_messages.py), health and reflection itself."""
    pool = descriptor_pool.DescriptorPool()
    for file in v2_messages.FILES:
        pool.Add(file)
    for module in (health_pb2, reflection_pb2):
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb))
    return pool


def start(plane: DataPlane, settings: Settings) -> GrpcServer:
    """Build, bind GRPC_PORT on HOST and start; SystemExit(3) when the port cannot be bound
    (gunicorn then stops: a worker that failed to boot)."""
    server, health, calls = build(plane, settings)
    address = settings.address(settings.grpc_port)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        port, reason = 0, str(exc)
    else:
        reason = "in use, or not an address of this host"
    if not port:
        log.error(
            "cannot serve gRPC on %s (%s): set GRPC_PORT, or 0 to turn it off", address, reason
        )
        raise SystemExit(3)
    server.start()
    log.info("gRPC listening on %s", address)
    return GrpcServer(server, health, calls, port)
