"""The protocol wing: thin adapters from each protocol to the data plane (service/dataplane.py),
each with its own schemas, and what they share.

- own.py, own_schemas.py, uploads.py, status.py: this service's own REST API; loop.py: its
  feedback, captures and drift routes.
- v2.py: the Open Inference Protocol (V2), whatever carries it: metadata, input tensors read
  into images, output tensors; v2_rest.py, v2_schemas.py: over REST; v2_grpc.py,
  v2_messages.py, grpc_predict_v2.proto: over gRPC.
- tfserving.py, tfserving_schemas.py: TensorFlow Serving's REST API.
- payloads.py (the payloads' base, error bodies, examples), tensors.py (tensor names and binary
  encodings), rest.py (the REST adapters' data plane, JSON bodies and answers).

Adapters import the core and what is here, never the edges (service/http/, service/grpc/).
"""
