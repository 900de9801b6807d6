"""grpc.health.v1 for Kubernetes' gRPC probes and load balancers: SERVING while the data plane
is ready (the default model loaded, as /readyz says), for the whole server ("") and for
inference.GRPCInferenceService; NOT_SERVING from shutdown on."""

from __future__ import annotations

import threading

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from service.dataplane import DataPlane
from service.protocols.v2_grpc import SERVICE

SERVICES = ("", SERVICE)
RECHECK_SECONDS = 1.0


class Health:
    """The health service of one server, kept in line with the data plane by a thread."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        # Watch answers through a callback: an open Watch holds no call thread (calls.py)
        self.servicer = health.HealthServicer(experimental_non_blocking=True)
        self._stop = threading.Event()
        self._status: int | None = None

    def install(self, server: grpc.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
        self._update()
        threading.Thread(target=self._loop, name="grpc-health", daemon=True).start()

    def shutdown(self) -> None:
        """NOT_SERVING for good (a set() after this is ignored)."""
        self._stop.set()
        self.servicer.enter_graceful_shutdown()

    def _loop(self) -> None:
        while not self._stop.wait(RECHECK_SECONDS):
            self._update()

    def _update(self) -> None:
        """Set the status when it changed: every set() is sent to every open Watch, and the
        protocol sends a Watch only the changes."""
        status = health_pb2.HealthCheckResponse.SERVING
        if not self.plane.ready():
            status = health_pb2.HealthCheckResponse.NOT_SERVING
        if status == self._status:
            return
        self._status = status
        for service in SERVICES:
            self.servicer.set(service, status)
