"""The training-pipeline benchmark runs end to end (on a tiny dataset: speed is not tested)."""

from pathlib import Path

import pytest

from benchmarks import training_pipeline
from tests.helpers import jpeg_bytes, make_dataset, publish_model


def tiny_store(tmp_path) -> list[str]:
    """Four photos and a model "pets": the options every serving benchmark takes for them."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        (photos / f"{i}.jpg").write_bytes(jpeg_bytes(seed=i))
    models = tmp_path / "models"
    publish_model(models, "pets")
    return ["--data-dir", str(photos), "--models-dir", str(models), "--model-name", "pets"]


def test_training_pipeline_benchmark_times_every_variant(tmp_path, capsys):
    data = make_dataset(tmp_path, per_class=8, val_per_class=1) / "train"
    argv = ["--data-dir", str(data), "--epochs", "1", "--precision", "float32"]
    assert training_pipeline.main(argv) == 0  # float32: bf16 is emulated, slowly, without AMX
    out = capsys.readouterr().out
    assert "16 training images" in out
    assert out.startswith("host: {'cpu': ")
    rows = [line for line in out.splitlines() if line.startswith("| ") and "x |" in line]
    assert len(rows) == 3 and "1.00x" in rows[0]


def test_serving_benchmark_runs_every_request_form(tmp_path, capsys):
    """Every setup answers without errors on a tiny run (speed is not tested)."""
    import json

    from benchmarks import serving

    output = tmp_path / "run.json"
    argv = tiny_store(tmp_path)
    argv += ["--files", "4", "--concurrency", "2", "--requests", "8", "--batch-sizes", "2"]
    argv += ["--protocol-concurrency", "2", "--skip-naive", "--output", str(output)]
    assert serving.main(argv) == 0
    rows = json.loads(output.read_text())["service"]
    setups = {row["setup"] for row in rows}
    assert {"service, batching, v2 binary", "service, batching, v2 json"} <= setups
    assert all(row["errors"] == 0 and row["requests"] == 8 for row in rows)


def test_serving_benchmark_splits_the_load_over_processes_and_workers(tmp_path):
    """--load-processes: every request of the step is counted once, from all the clients;
    the batch sizes are the workers' together."""
    import json

    from benchmarks import serving

    output = tmp_path / "run.json"
    argv = tiny_store(tmp_path)
    argv += ["--files", "4", "--concurrency", "3", "--requests", "9", "--batch-sizes", "2"]
    argv += ["--protocol-concurrency", "", "--skip-naive", "--output", str(output)]
    assert serving.main([*argv, "--workers", "2", "--load-processes", "2"]) == 0
    rows = json.loads(output.read_text())["service"]
    assert [(r["concurrency"], r["requests"], r["errors"]) for r in rows] == [(3, 9, 0)] * 2
    # from /metrics, summed over both workers: every image counted in some model call
    assert rows[0]["mean_batch_size"] >= 1 and rows[1]["mean_batch_size"] == 1.0


def _counted_drive(port, path, bodies, threads, count, max_seconds=300, headers=None):
    """`harness.drive` without a server: each of `count` requests answered 200 at once (at
    module level: the process pool sends it to its workers by name)."""
    from benchmarks.harness import LoadResult

    assert threads >= 1, "a client process without a client"
    return LoadResult(threads, count, 0.1, [1.0] * count, 0, {200: count})


@pytest.mark.parametrize(("concurrency", "processes"), [(1, 2), (1, 4), (3, 4), (3, 2)])
def test_load_over_processes_sends_every_request_when_clients_are_fewer(
    monkeypatch, concurrency, processes
):
    """--load-processes above a level's concurrency (the default levels start at 1): every
    request is still sent; before, the shares of the processes left without a client were
    dropped, so c=1 over four processes sent a quarter of its requests."""
    from benchmarks import harness

    monkeypatch.setattr(harness, "drive", _counted_drive)
    result = harness.drive_processes(processes, 1, "/predict", [b"x"], concurrency, 1000)
    assert (result.concurrency, result.requests, len(result.latencies_ms)) == (
        concurrency, 1000, 1000
    )  # fmt: skip
    assert result.statuses == {200: 1000}


def test_keras_backend_benchmark_agrees_with_onnx_runtime(tmp_path, capsys):
    """The Keras model on this install's backend (TensorFlow here) against ONNX Runtime, on
    photos taken in turn from each class folder (speed is not tested)."""
    import json

    from benchmarks import keras_backend

    argv = tiny_store(tmp_path)
    for i, name in enumerate(("cats", "dogs", "cats", "dogs")):
        folder = tmp_path / "classes" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.jpg").write_bytes(jpeg_bytes(seed=i))
    argv[1] = str(tmp_path / "classes")
    output = tmp_path / "run.json"
    argv += ["--files", "3", "--batch-sizes", "1,2", "--seconds", "0.05", "--output", str(output)]
    assert keras_backend.main(argv) == 0
    run = json.loads(output.read_text())
    assert run["parity"]["images"] == 3 and run["parity"]["same_label"] == 1.0
    assert run["parity"]["max_abs_probability_difference"] < 1e-4
    assert [(r["path"], r["batch"]) for r in run["rows"]] == [
        ("backend", 1), ("onnx cpu", 1), ("backend", 2), ("onnx cpu", 2)
    ]  # fmt: skip
    assert "backend tensorflow" in capsys.readouterr().out


def test_keras_backend_benchmark_needs_a_folder_per_class(tmp_path):
    from benchmarks import keras_backend

    argv = tiny_store(tmp_path)  # photos straight in the folder: no class to read
    with pytest.raises(SystemExit, match="named for a class"):
        keras_backend.main([*argv, "--files", "2"])


def test_grpc_against_rest_benchmark_runs_both_forms(tmp_path, capsys):
    """gRPC and V2 REST binary answer without errors at each level (speed is not tested)."""
    import json

    from benchmarks import grpc_vs_rest

    output = tmp_path / "run.json"
    argv = tiny_store(tmp_path)
    argv += ["--files", "4", "--concurrency", "1,2", "--requests", "8", "--output", str(output)]
    assert grpc_vs_rest.main(argv) == 0
    rows = json.loads(output.read_text())["rows"]
    assert [(r["form"], r["concurrency"]) for r in rows] == [
        ("v2 rest binary", 1),
        ("grpc", 1),
        ("v2 rest binary", 2),
        ("grpc", 2),
    ]
    assert all(r["errors"] == 0 and r["requests"] == 8 for r in rows)
    assert json.loads(output.read_text())["host"]["cpu"]
    out = capsys.readouterr().out
    assert "| grpc | 2 |" in out and out.startswith("host: {'cpu': ")


def test_request_path_benchmark_prints_the_cost_per_stage(tmp_path, capsys):
    """A tiny run with the profile (speed is not tested): every stage row is printed."""
    import json

    from benchmarks import request_path

    output = tmp_path / "run.json"
    argv = tiny_store(tmp_path)
    argv += ["--files", "4", "--concurrency", "1,2", "--seconds", "3", "--segments", "2"]
    assert request_path.main([*argv, "--output", str(output)]) == 0
    run = json.loads(output.read_text())
    rows = run["services"]["service"]["rows"]
    assert [r["concurrency"] for r in rows] == [1, 2] and all(r["errors"] == 0 for r in rows)
    assert all("request_path_ms_per_image" in r for r in rows)
    # measured in process before, between and after the two parts: the median of the parts
    assert all(len(r["in_process_ms_per_image"]) == 3 for r in rows)
    for row in rows:
        parts = row["request_path_ms_per_part"]
        middle = pytest.approx((parts[0] + parts[1]) / 2, abs=0.002)  # each part rounded
        assert len(parts) == 2 and row["request_path_ms_per_image"] == middle
    out = capsys.readouterr().out
    assert "| request threads |" in out and "| worker, all threads |" in out
    assert "where the request threads' time goes" in out


def test_preprocess_benchmark_prints_the_host(tmp_path, capsys):
    """Its figures come with the CPU they were measured on (speed is not tested)."""
    from benchmarks import preprocess

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        (photos / f"{i}.jpg").write_bytes(jpeg_bytes(seed=i))
    assert preprocess.main(["--data-dir", str(photos), "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("host: {'cpu': ") and "jpeg_draft_gap 2:" in out


@pytest.mark.parametrize(
    "option", ["--seconds=0", "--seconds=inf", "--concurrency=0", "--window=-1"]
)
def test_soak_refuses_a_run_that_measures_nothing_in_one_line(option, tmp_path, capsys):
    """Before: --seconds 0 served, collected no sample and ended in an IndexError (no photos
    here: were the option taken, the run would stop at once for want of them, not serve)."""
    from benchmarks import soak

    with pytest.raises(SystemExit) as ended:
        soak.main([option, "--data-dir", str(tmp_path)])
    assert ended.value.code == 2
    assert "must be above 0 and finite" in capsys.readouterr().err


def test_soak_benchmark_records_the_host_with_its_samples(tmp_path, capsys):
    """A tiny soak (speed and memory are not tested): the host, then the samples."""
    import json

    from benchmarks import soak

    output = tmp_path / "run.json"
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        (photos / f"{i}.jpg").write_bytes(jpeg_bytes(seed=i))
    publish_model(tmp_path / "models", "cats_vs_dogs")  # the model soak serves
    argv = ["--data-dir", str(photos), "--models-dir", str(tmp_path / "models")]
    argv += ["--seconds", "2", "--concurrency", "2", "--window", "4", "--output", str(output)]
    assert soak.main(argv) == 0
    run = json.loads(output.read_text())
    assert run["host"]["cpu"] and run["samples"]
    assert all(sample["errors"] == 0 for sample in run["samples"])
    assert capsys.readouterr().out.startswith("host: {'cpu': ")


def test_request_path_stage_costs_leave_no_metrics_folder_behind(tmp_path, monkeypatch):
    """The in-process stage costs' metrics folder is gone after them, and out of the
    environment: the servers the run starts next, and this process's /metrics, never see it."""
    import os
    import tempfile

    from benchmarks import request_path
    from tests.helpers import REPO, SHIPPED_MODELS

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    bodies, headers = request_path.multipart_bodies(sorted((REPO / "samples").glob("*.jpg")))
    stages = request_path.stage_costs(SHIPPED_MODELS, "cats_vs_dogs", bodies, headers, 1)
    assert {"decode", "multipart", "body read", "encode", "HTTP metrics"} <= set(stages)
    assert "hooks before" not in stages  # plain uploads: the fast path, no Flask hooks
    assert all(ms > 0 for ms in stages.values()), stages
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert not list(tmp_path.glob("metrics-*"))


def test_answered_fails_a_run_with_a_step_where_every_request_failed(capsys):
    from benchmarks.harness import EXIT_NOTHING_ANSWERED, answered

    assert answered([("a c=1", 8, 0), ("a c=2", 8, 3)]) == 0
    assert "a c=2 (3 of 8)" in capsys.readouterr().err
    assert answered([("a c=1", 8, 0), ("b c=2", 8, 8), ("c c=4", 0, 0)]) == EXIT_NOTHING_ANSWERED
    assert capsys.readouterr().err.strip() == (
        "every request failed (or none was sent) in: b c=2, c c=4"
    )


def test_soak_where_every_request_fails_says_so_and_exits_3(tmp_path, capsys):
    """Before: every request answered 400 (these are no photos) and the run exited 0, its
    figures those of the error path."""
    from benchmarks import soak

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        (photos / f"{i}.jpg").write_bytes(b"not a photo %d" % i)
    publish_model(tmp_path / "models", "cats_vs_dogs")
    argv = ["--data-dir", str(photos), "--models-dir", str(tmp_path / "models")]
    argv += ["--seconds", "2", "--concurrency", "2", "--window", "4"]
    assert soak.main(argv) == 3
    assert "every request failed (or none was sent) in: t=" in capsys.readouterr().err


def test_request_threads_waiting_with_a_timeout_are_not_counted_as_running():
    """py-spy counts a lock's or select's wait with a timeout as running: those samples are
    what the thread waits for, not stages of its CPU (stacks as py-spy --threads writes them)."""
    from benchmarks import request_path

    head = "thread (0x7f01): ThreadPoolExecutor-0_3;_worker (concurrent/futures/thread.py:83)"
    handle = ";ThreadWorker.handle (service/http/worker.py:51)"
    samples = [
        (head, 5),
        (head + handle + ";ThreadWorker._next_request_here (service/http/worker.py:76)", 4),
        (head + handle + ";ThreadWorker._next_request_here (service/http/worker.py:240)"
         ";_WaitingUnreader.wait (service/http/worker.py:93)", 3),
        (head + handle + ";Batcher.predict (classifier/batching.py:207)"
         ";Pending.wait (classifier/batching.py:104)", 11),
        (head + handle + ";decode_image (classifier/preprocess.py:79)", 3),
        (head + handle + ";Batcher.submit (classifier/batching.py:190)", 2),
        (head + handle + ";Response.write (gunicorn/http/wsgi.py:475)", 4),
        ("thread (0x7f02): batcher-model;Pending.wait (classifier/batching.py:104)", 13),
    ]  # fmt: skip
    stages = request_path.request_stages(samples, worker=1)
    assert stages == {
        "idle in the thread pool (no request)": 5,
        "waiting for the next request on its connection": 7,
        "waiting for the answer (queue, batch, model)": 11,
        "decode": 3,
        "queueing, batch hand-off": 2,
        "response write": 4,  # once counted as the hand-off: every stack starts in the pool
    }
    assert set(stages) - request_path.WAITING == {
        "decode", "queueing, batch hand-off", "response write"
    }  # fmt: skip


def test_alternate_benchmark_loads_both_checkouts_in_turn(tmp_path, capsys):
    """A tiny run against this same checkout (speed is not tested): each checkout gets its
    steps, ABBA, and the medians and ratios are printed and written."""
    import json

    from benchmarks import alternate

    output = tmp_path / "run.json"
    repo = str(Path(alternate.__file__).resolve().parents[1])
    argv = [*tiny_store(tmp_path), "--other", repo, "--rounds", "2", "--seconds", "2"]
    argv += ["--concurrency", "2", "--output", str(output), "--env", "MAX_BATCH_SIZE=1"]
    assert alternate.main(argv) == 0
    run = json.loads(output.read_text())
    assert [len(run["rows"][name]) for name in ("this", "other")] == [2, 2]
    assert run["env"] == {"MAX_BATCH_SIZE": "1"}  # both services: two connections, batches of 1
    assert all(r["mean_batch"] == 1 for rows in run["rows"].values() for r in rows)
    assert all(
        r["errors"] == 0 and r["images_per_s"] > 0 for rows in run["rows"].values() for r in rows
    )
    assert set(run["ratios"]) == {"server_cpu_ms_per_image", "images_per_s"}
    out = capsys.readouterr().out
    assert (
        out.startswith("host: ") and "round 2 other" in out and "| images_per_s (median) |" in out
    )


def test_alternate_benchmark_refuses_a_folder_that_is_no_checkout(tmp_path):
    from benchmarks import alternate

    with pytest.raises(SystemExit, match="not a checkout"):
        alternate.main([*tiny_store(tmp_path), "--other", str(tmp_path)])


def test_alternate_benchmark_refuses_an_env_that_is_no_setting(tmp_path, capsys):
    from benchmarks import alternate

    argv = [*tiny_store(tmp_path), "--other", str(tmp_path), "--env"]
    for bad in ("RUNTIME", "=onnx"):
        with pytest.raises(SystemExit) as ended:
            alternate.main([*argv, bad])
        assert ended.value.code == 2 and "not NAME=VALUE" in capsys.readouterr().err


def test_request_path_variants_are_read_before_any_work():
    import argparse

    from benchmarks import request_path

    assert request_path.variant("2 workers:WEB_CONCURRENCY=2,INFERENCE_THREADS=1") == (
        "2 workers", {"WEB_CONCURRENCY": "2", "INFERENCE_THREADS": "1"}
    )  # fmt: skip
    assert request_path.variant("lanes:INFERENCE_LANES=2,") == ("lanes", {"INFERENCE_LANES": "2"})
    with pytest.raises(argparse.ArgumentTypeError, match="not NAME=VALUE"):
        request_path.variant("lanes:INFERENCE_LANES")
    with pytest.raises(SystemExit) as ended:
        request_path.main(["--variant", "x:BAD"])
    assert ended.value.code == 2


def test_request_path_counts_the_batches_of_every_worker(tmp_path):
    """A step's mean batch comes from all workers' counts (/metrics sums them); the model's
    status answers for one worker, and with two the mean batch came out negative."""
    import time

    from benchmarks import request_path
    from benchmarks.harness import Server, drive

    models = tmp_path / "models"
    publish_model(models, "pets")
    body = jpeg_bytes(seed=1)
    env = {"WEB_CONCURRENCY": "2", "MAX_BATCH_SIZE": "1", "MODEL_POLL_SECONDS": "0"}
    with Server(models, GRPC_PORT="0", MODEL_NAME="pets", **env) as server:
        server.wait_ready()
        assert request_path.batches(server, "pets") == (0, 0)
        result = drive(server.port, "/predict", [body], 4, 40)
        assert result.errors == 0 and result.requests == 40
        until = time.monotonic() + 10  # a batch is counted just after its answers
        while request_path.batches(server, "pets") != (40, 40) and time.monotonic() < until:
            time.sleep(0.05)
        assert request_path.batches(server, "pets") == (40, 40)  # batches of 1, both workers


def test_request_path_checks_the_targets_for_its_processor():
    """The peer ratio wanted is 2x with AMX and 1.3x without; what a run lacks is left out."""
    from benchmarks import request_path

    rows = [{"concurrency": 1, "request_path_ms_per_image": 1.9},
            {"concurrency": 32, "request_path_ms_per_image": 0.72}]  # fmt: skip
    summary = {"c32_vs_best_peer": 1.64, "c1_p50_ms": 4.1, "best_peer_c1_p50_ms": 6.9}
    met = {v["target"]: v["met"] for v in request_path.verdicts({}, rows, summary)}
    assert list(met.values()) == [True, True, True]
    amx = request_path.verdicts({"amx_bf16": True}, rows, {**summary, "c1_p50_ms": 7.0})
    assert [v["met"] for v in amx] == [True, False, False]
    assert amx[1]["wanted"] == ">= 2.0" and "with AMX" in amx[1]["target"]
    slow = request_path.verdicts({}, [{**rows[1], "request_path_ms_per_image": 0.81}], {})
    assert [(v["value"], v["met"]) for v in slow] == [(0.81, False)]
    assert request_path.verdicts({}, rows[:1], {}) == []
