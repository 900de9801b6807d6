"""The end of a call, whatever its protocol: one JSON access log line, and the inference
metrics of predict calls (each edge counts its own request metrics as well)."""

from __future__ import annotations

import logging

from service import metrics
from service.calls import Call

access_log = logging.getLogger("service.access")


def finish(
    call: Call, *, method: str, endpoint: str, status: int | str, ok: bool, inference: bool
) -> None:
    """Log the call; an inference call also counts as a success or a failure (by its error
    code, or `status` without one)."""
    elapsed = call.elapsed()
    if inference:
        if ok:
            metrics.INFERENCE_SUCCESS.labels(call.model, str(call.version)).inc()
        else:  # "-" when no served model was named: client input never becomes a label
            metrics.INFERENCE_FAILURE.labels(call.model or "-", call.error or str(status)).inc()
    fields = {
        "event": "request",
        "request_id": call.request_id,
        "method": method,
        "endpoint": endpoint,
        "status": status,
        "latency_ms": round(elapsed * 1000, 2),
        "images": call.images,
        "model": call.model,
        "version": call.version,
    }
    if call.error:
        fields["error"] = call.error
    if call.api_key:
        fields["api_key"] = call.api_key
    access_log.info("%s %s %s", method, endpoint, status, extra={"fields": fields})
