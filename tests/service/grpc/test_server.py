"""The gRPC edge through real clients against a real gunicorn: tritonclient.grpc for every
call of the Open Inference Protocol, grpc's own health and reflection clients, API keys on and
off, and the same answers as REST."""

from __future__ import annotations

import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from tritonclient.utils import InferenceServerException

from benchmarks.harness import Server
from classifier.preprocess import decode_image
from classifier.spec import InputSpec
from service.cli import APP, CONFIG
from service.keys import new_key
from service.protocols import v2_messages
from tests.helpers import encode, jpeg_bytes, noise_image, solid

pytestmark = pytest.mark.e2e

MODEL = "pets"
SPEC = InputSpec(height=64, width=64)
INFER = "/inference.GRPCInferenceService/ModelInfer"
WATCH = "/grpc.health.v1.Health/Watch"
REFLECT = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def server(models_template):
    with Server(models_template, MODEL_NAME=MODEL, MODEL_POLL_SECONDS="0") as running:
        yield running.wait_ready()


@pytest.fixture(scope="module")
def client(server):
    with triton.InferenceServerClient(server.grpc_target) as connected:
        yield connected


def images_input(*files: bytes, name: str = "image") -> triton.InferInput:
    tensor = triton.InferInput(name, [len(files)], "BYTES")
    tensor.set_data_from_numpy(np.array(files, dtype=object))
    return tensor


def refusal(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_health_and_metadata_calls(client, server):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "1")
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "image-classifier-service"
    assert set(metadata["extensions"]) >= {"classification", "binary_tensor_data"}
    model = client.get_model_metadata(MODEL, as_json=True)
    rest = requests.get(f"{server.url}/v2/models/{MODEL}", timeout=10).json()
    for key in ("name", "versions", "platform"):
        assert model[key] == rest[key]
    assert [(t["name"], t["datatype"]) for t in model["inputs"]] == [
        (t["name"], t["datatype"]) for t in rest["inputs"]
    ]
    assert [int(d) for d in model["outputs"][0]["shape"]] == [-1, 2]


def test_images_in_raw_contents_give_probabilities_and_labels(client):
    files = (jpeg_bytes(seed=1), encode(noise_image(seed=2), "PNG"))
    outputs = [triton.InferRequestedOutput("probabilities"), triton.InferRequestedOutput("label")]
    result = client.infer(MODEL, [images_input(*files)], outputs=outputs, request_id="req-7")
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (2, 2) and probabilities.dtype == np.float32
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    labels = result.as_numpy("label")
    assert [label.decode() for label in labels] == [
        ("cats", "dogs")[int(np.argmax(row))] for row in probabilities
    ]
    response = result.get_response()
    assert response.id == "req-7" and response.model_name == MODEL
    assert response.model_version == "1"


def test_every_output_by_default_and_the_classification_extension(client):
    result = client.infer(MODEL, [images_input(jpeg_bytes())])
    assert {o.name for o in result.get_response().outputs} == {"probabilities", "label"}
    top = triton.InferRequestedOutput("probabilities", class_count=2)
    ranked = client.infer(MODEL, [images_input(jpeg_bytes())], outputs=[top])
    rows = ranked.as_numpy("probabilities")
    assert rows.shape == (1, 2)
    scores = [float(item.decode().split(":")[0]) for item in rows[0]]
    assert scores == sorted(scores, reverse=True)
    assert {item.decode().split(":")[2] for item in rows[0]} == {"cats", "dogs"}


@pytest.mark.parametrize("datatype", ["FP32", "UINT8"])
def test_pixels_give_the_answer_of_their_encoded_file(client, datatype):
    data = jpeg_bytes(seed=4)
    pixels = decode_image(data, SPEC)[None]
    tensor = triton.InferInput("input", list(pixels.shape), datatype)
    tensor.set_data_from_numpy(pixels.astype(np.float32 if datatype == "FP32" else np.uint8))
    from_pixels = client.infer(MODEL, [tensor]).as_numpy("probabilities")
    from_file = client.infer(MODEL, [images_input(data)]).as_numpy("probabilities")
    assert np.allclose(from_pixels, from_file, atol=1e-6)


def test_the_call_deadline_stops_the_decoding_and_the_model_never_runs(client, server):
    """Twelve slow images and a call deadline of two decodes: the server stops decoding at the
    deadline and answers DEADLINE_EXCEEDED without queueing them (before, it decoded all
    twelve after the deadline and then ran the model)."""
    data = encode(solid((200, 30, 40), (4000, 4000)), "WEBP", lossless=True)
    started = time.perf_counter()
    decode_image(data, SPEC)
    one = time.perf_counter() - started
    timeout = max(0.3, 2 * one)
    before = requests.get(f"{server.url}/v1/models/{MODEL}", timeout=10).json()["batching"]
    late = refusal(
        lambda: client.infer(
            MODEL,
            [images_input(*[data] * 12)],
            headers={"x-request-id": "slow-decode"},
            client_timeout=timeout,
        )
    )
    assert late.status() == "StatusCode.DEADLINE_EXCEEDED"
    [line] = server.logged(lambda line: line["request_id"] == "slow-decode")
    assert line["status"] == "DEADLINE_EXCEEDED" and line["error"] == "deadline_exceeded"
    assert line["latency_ms"] < (timeout + 2 * one + 0.5) * 1000, (line, one)
    after = requests.get(f"{server.url}/v1/models/{MODEL}", timeout=10).json()["batching"]
    assert after["batches"] == before["batches"]  # the model never ran for them
    assert after["expired_deadline"] == before["expired_deadline"] + 12


def test_images_and_pixels_in_typed_contents(server):
    """`contents` instead of raw_input_contents (tritonclient always sends raw): a plain grpc
    channel with the service's own messages."""
    data = jpeg_bytes(seed=5)
    with grpc.insecure_channel(server.grpc_target) as channel:
        infer = channel.unary_unary(
            INFER,
            request_serializer=v2_messages.ModelInferRequest.SerializeToString,
            response_deserializer=v2_messages.ModelInferResponse.FromString,
        )
        request = v2_messages.ModelInferRequest(model_name=MODEL, id="typed")
        request.inputs.add(
            name="image", datatype="BYTES", shape=[1]
        ).contents.bytes_contents.append(data)
        by_file, call = infer.with_call(request, metadata=(("x-request-id", "my-id-1"),))
        assert dict(call.initial_metadata())["x-request-id"] == "my-id-1"
        pixels = decode_image(data, SPEC)
        request = v2_messages.ModelInferRequest(model_name=MODEL)
        tensor = request.inputs.add(name="input", datatype="UINT8", shape=[1, 64, 64, 3])
        tensor.contents.uint_contents.extend(pixels.reshape(-1).tolist())
        by_pixels = infer(request)
    assert by_file.id == "typed"
    first = np.frombuffer(by_file.raw_output_contents[0], "<f4")
    assert np.allclose(first, np.frombuffer(by_pixels.raw_output_contents[0], "<f4"), atol=1e-6)


def test_rest_and_grpc_give_the_same_probabilities(client, server):
    data = jpeg_bytes((320, 240), seed=6)
    rest = requests.post(
        f"{server.url}/predict", files={"image": ("a.jpg", data)}, timeout=30
    ).json()["predictions"][0]["probabilities"]
    grpc_row = client.infer(MODEL, [images_input(data)]).as_numpy("probabilities")[0]
    assert grpc_row.tolist() == pytest.approx([rest["cats"], rest["dogs"]], abs=1e-6)


@pytest.mark.parametrize(
    ("call", "status", "words"),
    [
        (lambda c: c.infer("nope", [images_input(jpeg_bytes())]), "NOT_FOUND", "'nope' not found"),
        (
            lambda c: c.infer(MODEL, [images_input(jpeg_bytes())], model_version="9"),
            "NOT_FOUND",
            "version 9",
        ),
        (
            lambda c: c.infer(MODEL, [images_input(jpeg_bytes())], model_version="0"),
            "NOT_FOUND",
            "version 0",
        ),
        (
            lambda c: c.infer(MODEL, [images_input(jpeg_bytes())], model_version="9" * 5000),
            "INVALID_ARGUMENT",
            "a model version is a whole number from 1",
        ),
        (lambda c: c.is_model_ready("nope"), "NOT_FOUND", "not found"),
        (lambda c: c.get_model_metadata("nope"), "NOT_FOUND", "not found"),
        (
            lambda c: c.infer(MODEL, [images_input(b"not an image")]),
            "INVALID_ARGUMENT",
            "image 0: the data is not a recognised image",
        ),
        (
            lambda c: c.infer(MODEL, [images_input(*[jpeg_bytes()] * 65)]),
            "INVALID_ARGUMENT",
            "65 images in one request; the limit is 64",
        ),
        (
            lambda c: c.infer(MODEL, [images_input(jpeg_bytes(), name="photo")]),
            "INVALID_ARGUMENT",
            "unknown input 'photo'",
        ),
        (
            lambda c: c.infer(
                MODEL,
                [images_input(jpeg_bytes())],
                outputs=[triton.InferRequestedOutput("scores")],
            ),
            "INVALID_ARGUMENT",
            "unknown output 'scores'",
        ),
        (
            lambda c: c.infer(
                MODEL,
                [images_input(jpeg_bytes())],
                outputs=[triton.InferRequestedOutput("probabilities", class_count=3)],
            ),
            "INVALID_ARGUMENT",
            "classification must be between 1 and 2",
        ),
    ],
)
def test_errors_come_with_their_status_code_and_message(client, call, status, words):
    error = refusal(lambda: call(client))
    assert error.status() == f"StatusCode.{status}"
    assert words in error.message()


def test_a_message_over_the_upload_limit_is_refused(server):
    with triton.InferenceServerClient(server.grpc_target) as connected:
        huge = images_input(b"\0" * (10 * 1024 * 1024 + 1))
        error = refusal(lambda: connected.infer(MODEL, [huge]))
    assert error.status() == "StatusCode.RESOURCE_EXHAUSTED"


def test_health_and_reflection(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="other"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        database = ProtoReflectionDescriptorDatabase(channel)
        assert {
            "inference.GRPCInferenceService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        } <= set(database.get_services())
        infer = database.FindFileContainingSymbol("inference.ModelInferRequest")
        assert "raw_input_contents" in str(infer)


def test_grpc_calls_are_logged_and_counted_like_rest(client, server):
    client.infer(MODEL, [images_input(jpeg_bytes())], headers={"x-request-id": "grpc-logged-1"})
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert f'grpc_server_handled_total{{grpc_code="OK",grpc_method="{INFER}"}}' in metrics
    assert 'inference_request_success_total{model="pets",version="1"}' in metrics
    [line] = server.logged(lambda line: line["request_id"] == "grpc-logged-1")
    assert line["endpoint"] == INFER and line["status"] == "OK" and line["method"] == "GRPC"
    assert line["model"] == "pets" and line["version"] == 1 and line["images"] == 1


@pytest.fixture(scope="module")
def keyed(models_template, tmp_path_factory):
    """API keys on; a queue of two images; batches of two that wait 1.5 s for a second image."""
    key, line = new_key("grpc-test")
    keys_file = tmp_path_factory.mktemp("keys") / "keys"
    keys_file.write_text(line + "\n")
    env = {
        "MODEL_NAME": MODEL,
        "MODEL_POLL_SECONDS": "0",
        "API_KEYS_FILE": str(keys_file),
        "QUEUE_CAPACITY": "2",
        "MAX_IMAGES_PER_REQUEST": "2",
        "MAX_BATCH_SIZE": "2",
        "BATCH_TIMEOUT_MS": "1500",
    }
    with Server(models_template, **env) as running:
        yield running.wait_ready(path="/healthz"), key


def test_with_keys_on_calls_need_a_bearer_key_but_health_does_not(keyed):
    server, key = keyed
    with triton.InferenceServerClient(server.grpc_target) as connected:
        error = refusal(connected.is_server_live)
        assert error.status() == "StatusCode.UNAUTHENTICATED" and "needs a key" in error.message()
        wrong = refusal(lambda: connected.is_server_live(headers={"authorization": "Bearer x"}))
        assert wrong.status() == "StatusCode.UNAUTHENTICATED"
        assert connected.is_server_live(headers={"authorization": f"Bearer {key}"})
        assert connected.is_server_live(headers={"x-api-key": key})
    with grpc.insecure_channel(server.grpc_target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert server.logged(lambda line: line.get("api_key") == "grpc-test")


def test_the_call_deadline_bounds_the_wait(keyed):
    """A lone image waits 1.5 s for a second one; a call with a 0.3 s deadline is answered
    DEADLINE_EXCEEDED, and the server gave up at its deadline, not after REQUEST_DEADLINE_MS."""
    server, key = keyed
    with triton.InferenceServerClient(server.grpc_target) as connected:
        late = refusal(
            lambda: connected.infer(
                MODEL,
                [images_input(jpeg_bytes())],
                headers={"authorization": f"Bearer {key}"},
                request_id="late",
                client_timeout=0.3,
            )
        )
    assert late.status() == "StatusCode.DEADLINE_EXCEEDED"
    expired = server.logged(lambda line: line.get("error") == "deadline_exceeded")
    assert expired and expired[-1]["latency_ms"] < 1400


def test_a_call_its_client_cancelled_is_not_logged_as_answered(keyed):
    """A lone image waits 1.5 s for a second one; its client cancels the call at 0.3 s. The
    answer computed after that never reached it: logged and counted CANCELLED, not an
    inference success (before: OK, a success of model pets)."""
    server, key = keyed
    auth = {"authorization": f"Bearer {key}"}
    # The test before leaves its given-up image in the batch being formed, which would make
    # this image the second and run at once: wait out that batch's window (BATCH_TIMEOUT_MS).
    time.sleep(1.6)
    before = handled(server, INFER, "CANCELLED", auth)
    request = v2_messages.ModelInferRequest(model_name=MODEL)
    image = request.inputs.add(name="image", datatype="BYTES", shape=[1])
    image.contents.bytes_contents.append(jpeg_bytes())
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.unary_unary(INFER, request_serializer=None, response_deserializer=None)
        future = call.future(
            request.SerializeToString(),
            metadata=(*auth.items(), ("x-request-id", "cancelled-infer")),
            timeout=10,
        )
        time.sleep(0.3)
        assert future.cancel()
    [line] = server.logged(lambda line: line["request_id"] == "cancelled-infer")
    assert line["status"] == "CANCELLED" and line["latency_ms"] > 1000  # after its answer
    assert handled(server, INFER, "CANCELLED", auth) == before + 1


def test_a_full_queue_is_resource_exhausted(keyed):
    """Two images fit in the queue: a burst of two-image calls overflows it."""
    server, key = keyed
    data = jpeg_bytes((300, 300))

    def call(_):
        try:
            connected.infer(
                MODEL,
                [images_input(data, data)],
                headers={"authorization": f"Bearer {key}"},
            )
        except InferenceServerException as exc:
            return exc.status(), exc.message()
        return "OK", ""

    with (
        triton.InferenceServerClient(server.grpc_target) as connected,
        ThreadPoolExecutor(24) as pool,
    ):
        results = list(pool.map(call, range(48)))
    statuses = {status for status, _ in results}
    assert statuses == {"OK", "StatusCode.RESOURCE_EXHAUSTED"}, results
    assert all("queue is full" in message for status, message in results if status != "OK")


def test_grpc_port_zero_turns_grpc_off(models_template):
    with Server(models_template, MODEL_NAME=MODEL, MODEL_POLL_SECONDS="0", GRPC_PORT="0") as off:
        assert requests.get(f"{off.wait_ready().url}/readyz", timeout=10).ok
        assert "gRPC listening" not in off.output()


def test_a_grpc_port_taken_by_another_program_stops_the_start(models_template):
    """gunicorn started without classifier-serve (which refuses a taken port before it, see
    tests/service/test_serve_start.py): the worker's own bind fails, and says so."""
    gunicorn = ["gunicorn", "-c", str(CONFIG), APP]
    with socket.socket() as taken:  # no SO_REUSEPORT: the workers cannot share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        env = {"MODEL_NAME": MODEL, "MODEL_POLL_SECONDS": "0", "GRPC_PORT": port}
        with Server(models_template, gunicorn, **env) as s:
            assert s.process.wait(timeout=120) != 0
    assert f"cannot serve gRPC on 127.0.0.1:{port}" in s.output()


def test_every_worker_serves_the_port_and_finishes_its_calls_on_sigterm(models_template):
    """Two workers share GRPC_PORT (SO_REUSEPORT): new connections reach both. On SIGTERM a
    call in flight (a lone image waiting 1.5 s for a second) is answered."""
    env = {
        "MODEL_NAME": MODEL,
        "MODEL_POLL_SECONDS": "0",
        "WEB_CONCURRENCY": "2",
        "MAX_BATCH_SIZE": "2",
        "BATCH_TIMEOUT_MS": "1500",
    }
    with Server(models_template, **env) as server:
        server.wait_ready()
        server.wait_workers(2, "gRPC listening")  # the second may still be loading its model
        for i in range(16):  # each on a connection of its own
            with grpc.insecure_channel(
                server.grpc_target, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                health.Check(health_pb2.HealthCheckRequest(), metadata=(("x-request-id", f"w{i}"),))
        lines = server.logged(lambda line: line["request_id"][:1] == "w", at_least=16)
        pids = {line["pid"] for line in lines}
        assert len(pids) == 2, pids
        with (
            triton.InferenceServerClient(server.grpc_target) as connected,
            ThreadPoolExecutor(1) as pool,
        ):
            waiting = pool.submit(connected.infer, MODEL, [images_input(jpeg_bytes())])
            time.sleep(0.5)
            server.process.send_signal(signal.SIGTERM)
            assert waiting.result(timeout=30).as_numpy("probabilities").shape == (1, 2)
        assert server.process.wait(timeout=60) == 0


def test_a_stopping_server_ends_open_watches_without_waiting_out_its_grace(models_template):
    """On SIGTERM an open Watch is sent NOT_SERVING, then ended (OK, logged), and the server
    stops at once (before: the stream held the stop for all of GRACEFUL_TIMEOUT)."""
    env = {"MODEL_NAME": MODEL, "MODEL_POLL_SECONDS": "0", "GRACEFUL_TIMEOUT": "60"}
    with Server(models_template, **env) as server:
        server.wait_ready()
        with grpc.insecure_channel(server.grpc_target) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(), metadata=(("x-request-id", "watch-stop"),)
            )
            assert next(watch).status == SERVING
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            assert [answer.status for answer in watch] == [
                health_pb2.HealthCheckResponse.NOT_SERVING
            ]
            assert server.process.wait(timeout=90) == 0
        assert time.monotonic() - started < 30  # far from the 60 s it waited before
        [line] = server.logged(lambda line: line["request_id"] == "watch-stop")
        assert line["endpoint"] == WATCH and line["status"] == "OK"


def handled(server, method: str, code: str, headers: dict | None = None) -> float:
    """grpc_server_handled_total of one method and status code (0 when never counted)."""
    text = requests.get(f"{server.url}/metrics", headers=headers, timeout=10).text
    wanted = f'grpc_server_handled_total{{grpc_code="{code}",grpc_method="{method}"}} '
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(wanted))


@pytest.fixture(scope="module")
def few_threads(models_template):
    """Two call threads per worker (GUNICORN_THREADS=2)."""
    env = {"MODEL_NAME": MODEL, "MODEL_POLL_SECONDS": "0", "GUNICORN_THREADS": "2"}
    with Server(models_template, **env) as running:
        yield running.wait_ready()


def test_open_health_watches_leave_the_threads_to_other_calls(few_threads):
    """Five open Watch streams on a server of two call threads: each gets its status at once,
    and ServerLive and Check are still answered (before, two Watches held both threads: calls
    waited out their deadline, and from the fifth they were refused RESOURCE_EXHAUSTED)."""
    with grpc.insecure_channel(few_threads.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watches = []
        try:
            for _ in range(5):  # one after the other: a burst of any five calls is refused
                watches.append(health.Watch(health_pb2.HealthCheckRequest(), timeout=10))
                assert next(watches[-1]).status == SERVING
            with triton.InferenceServerClient(few_threads.grpc_target) as connected:
                assert connected.is_server_live(client_timeout=5)
            answer = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert answer.status == SERVING
        finally:
            for watch in watches:
                watch.cancel()


def test_calls_past_the_concurrent_call_limit_are_logged_and_counted(few_threads):
    """Past 2 * GUNICORN_THREADS calls at once grpc refuses the call (RESOURCE_EXHAUSTED)
    without running any handler: each refusal has its log line and its count (before:
    neither, an overloaded server's metrics showed only the calls it answered)."""
    server = few_threads
    before = handled(server, INFER, "RESOURCE_EXHAUSTED")
    data = jpeg_bytes((600, 600))

    def call(index: int) -> str:
        try:
            connected.infer(MODEL, [images_input(data)], headers={"x-request-id": f"burst-{index}"})
        except InferenceServerException as exc:
            return exc.status()
        return "OK"

    with (
        triton.InferenceServerClient(server.grpc_target) as connected,
        ThreadPoolExecutor(24) as pool,
    ):
        statuses = list(pool.map(call, range(48)))
    refused = statuses.count("StatusCode.RESOURCE_EXHAUSTED")
    assert refused and refused + statuses.count("OK") == 48, statuses
    lines = server.logged(lambda line: line["request_id"].startswith("burst-"), at_least=48)
    assert sum(line["status"] == "RESOURCE_EXHAUSTED" for line in lines) == refused
    assert len(lines) == 48
    assert handled(server, INFER, "RESOURCE_EXHAUSTED") == before + refused


def test_a_watch_sends_the_status_once_while_it_does_not_change(server):
    """The protocol sends a status, then only its changes (before: SERVING again every
    second)."""
    with grpc.insecure_channel(server.grpc_target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"), timeout=3.5
        )
        received = []
        with pytest.raises(grpc.RpcError) as ended:
            for answer in watch:
                received.append(answer.status)
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert received == [SERVING]


def test_a_call_to_an_unknown_method_is_logged_and_counted_unmatched(server):
    """A method the server lacks is UNIMPLEMENTED, with its log line and its count under the
    method label "unmatched" (as HTTP's unknown paths: a client's names never become a label;
    before: neither, such calls left no trace)."""
    before = handled(server, "unmatched", "UNIMPLEMENTED")
    with grpc.insecure_channel(server.grpc_target) as channel:
        for method in ("/no.Such/Method", "/inference.GRPCInferenceService/ModelInfr"):
            call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
            with pytest.raises(grpc.RpcError) as refused:
                call(b"", metadata=(("x-request-id", f"unknown-{method[1:3]}"),), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    lines = server.logged(lambda line: line["request_id"].startswith("unknown-"), at_least=2)
    assert [(line["endpoint"], line["status"]) for line in lines] == [
        ("unmatched", "UNIMPLEMENTED")
    ] * 2
    assert handled(server, "unmatched", "UNIMPLEMENTED") == before + 2


@pytest.mark.parametrize(
    ("method", "data"),
    [
        ("/inference.GRPCInferenceService/ModelReady", b"\x0a\x02\xff\xfe"),  # name: not UTF-8
        (INFER, b"\x0a\x02\xff\xfe"),  # model_name: not UTF-8
        (INFER, b"\xff\xff\xff\xff\xff"),  # garbage
        (INFER, v2_messages.ModelInferRequest(model_name=MODEL, id="x").SerializeToString()[:-2]),
        ("/grpc.health.v1.Health/Check", b"\x0a\x02\xff\xfe"),  # service: not UTF-8
    ],
    ids=["ready-name", "infer-model-name", "garbage", "truncated", "health-service"],
)
def test_malformed_request_bytes_are_invalid_argument_logged_and_counted(server, method, data):
    """Bytes that are not the method's message: INVALID_ARGUMENT naming it, with a log line
    and a count (before: INTERNAL 'Exception deserializing request!', neither)."""
    before = handled(server, method, "INVALID_ARGUMENT")
    request_id = f"malformed-{abs(hash((method, data)))}"
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as refused:
            call(data, metadata=(("x-request-id", request_id),), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is not a valid" in refused.value.details(), refused.value.details()
    [line] = server.logged(lambda line: line["request_id"] == request_id)
    assert line["endpoint"] == method and line["status"] == "INVALID_ARGUMENT"
    assert line["error"] == "invalid_request"
    assert handled(server, method, "INVALID_ARGUMENT") == before + 1


def test_a_health_watch_is_logged_and_counted_once_when_it_ends(server):
    before = handled(server, WATCH, "CANCELLED")
    with grpc.insecure_channel(server.grpc_target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(), metadata=(("x-request-id", "watch-ended"),)
        )
        assert next(watch).status == SERVING
        watch.cancel()
        late = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(), metadata=(("x-request-id", "watch-late"),), timeout=1
        )
        with pytest.raises(grpc.RpcError):
            list(late)
    [line] = server.logged(lambda line: line["request_id"] == "watch-ended")
    assert line["endpoint"] == WATCH and line["status"] == "CANCELLED"
    assert line["method"] == "GRPC"
    assert handled(server, WATCH, "CANCELLED") == before + 1
    [line] = server.logged(lambda line: line["request_id"] == "watch-late")
    assert line["status"] == "DEADLINE_EXCEEDED" and line["latency_ms"] >= 900


def test_reflection_calls_are_logged_and_counted_with_keys_on(keyed):
    """Refused without a key (UNAUTHENTICATED) and answered with one: a line and a count each
    (before: streaming calls had neither)."""
    server, key = keyed
    auth = {"authorization": f"Bearer {key}"}
    refused_before = handled(server, REFLECT, "UNAUTHENTICATED", auth)
    ok_before = handled(server, REFLECT, "OK", auth)
    listing = reflection_pb2.ServerReflectionRequest(list_services="")
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.ServerReflectionInfo(iter([listing]), metadata=(("x-request-id", "refl-0"),)))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        metadata = (("x-request-id", "refl-1"), ("authorization", auth["authorization"]))
        [answer] = list(stub.ServerReflectionInfo(iter([listing]), metadata=metadata))
    assert "inference.GRPCInferenceService" in str(answer.list_services_response)
    [line] = server.logged(lambda line: line["request_id"] == "refl-0")
    assert line["endpoint"] == REFLECT and line["status"] == "UNAUTHENTICATED"
    assert line["error"] == "unauthorized"
    [line] = server.logged(lambda line: line["request_id"] == "refl-1")
    assert line["status"] == "OK" and line["api_key"] == "grpc-test"
    assert handled(server, REFLECT, "UNAUTHENTICATED", auth) == refused_before + 1
    assert handled(server, REFLECT, "OK", auth) == ok_before + 1


def test_a_health_check_of_an_unknown_service_is_logged_with_its_status(server):
    """NOT_FOUND, as answered (before: logged and counted OK, health's Check sets the code
    instead of raising)."""
    with (
        grpc.insecure_channel(server.grpc_target) as channel,
        pytest.raises(grpc.RpcError) as unknown,
    ):
        health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="other"),
            metadata=(("x-request-id", "check-unknown"),),
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    [line] = server.logged(lambda line: line["request_id"] == "check-unknown")
    assert line["status"] == "NOT_FOUND"
