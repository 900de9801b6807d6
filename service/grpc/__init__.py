"""The gRPC edge: the Open Inference Protocol's gRPC service (service/protocols/v2_grpc.py),
grpc.health.v1 and server reflection, on GRPC_PORT.

Process model: one gRPC server in each gunicorn worker, beside its HTTP server, on the same
data plane, batcher, metrics and logs. It is created in the worker after fork
(gunicorn.conf.py's post_worker_init), like the worker's models: grpc's threads and polling,
like ONNX Runtime, OpenVINO and TensorFlow sessions, do not survive a fork, and the master
never imports grpc. Every worker binds GRPC_PORT with SO_REUSEPORT, so the kernel spreads new
connections over the workers (a gRPC connection is long-lived: a client keeps its worker until
it reconnects; with WEB_CONCURRENCY=1 one worker serves them all). A worker that cannot bind
the port stops the server at start with one log line. On SIGTERM a worker's gRPC server stops
taking calls at once and gives the calls in flight GRACEFUL_TIMEOUT, while HTTP drains beside
it; its health turns NOT_SERVING.
"""
