"""What `predict` takes besides paths (bytes, file objects, PIL images, uint8 arrays), top_k,
results in input order whatever the concurrency, and --local finding the models the way the
service does, from any current directory; against a real gunicorn."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from client import Client, Failure, LocalClient, Prediction
from client.cli import Exit, main
from client.files import find_images
from tests.client.fakes import FlakyServer, make_folder, read_jsonl
from tests.helpers import SHIPPED_MODELS, jpeg_bytes

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).parent / "classify-images")


def every_kind(path: Path) -> list:
    """The same photo as each kind of input predict takes."""
    data = path.read_bytes()
    pixels = np.asarray(Image.open(path).convert("RGB"))
    return [
        path,
        str(path),
        data,
        bytearray(data),
        io.BytesIO(data),
        path.open("rb"),
        Image.open(path),
        pixels,
    ]


NAMES = ["<bytes #2>", "<bytes #3>", "<file #4>", None, "<image #6>", "<array #7>"]


@pytest.mark.parametrize("kind", ["remote", "local"])
def test_every_kind_of_input_gets_the_same_answer_in_input_order(
    server, models_template, tmp_path, kind
):
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg_bytes((120, 90), seed=11))
    inputs = every_kind(path)
    if kind == "remote":
        client = Client(server.url, concurrency=3, top_k=1)
    else:
        client = LocalClient(models_template, "pets", concurrency=3, top_k=1)
    with client:
        results = client.predict(inputs)
    inputs[5].close()
    assert all(isinstance(r, Prediction) for r in results), results
    assert [r.file for r in results] == [str(path), str(path), *NAMES[:3], str(path), *NAMES[4:]]
    first = results[0].probabilities
    for result in results:
        assert result.probabilities == pytest.approx(first, abs=1e-6)
        assert result.top == ((result.label, result.probabilities[result.label]),)


def test_inputs_that_are_no_image_give_a_failure_or_a_clear_type_error(server):
    bad = [np.zeros((4, 4, 3), dtype=np.float32), io.StringIO("text"), b"not an image"]
    with Client(server.url) as client:
        results = client.predict(bad)
        assert [type(r) for r in results] == [Failure] * 3
        assert results[0].code == "unreadable_input" and "uint8" in results[0].message
        assert "binary mode" in results[1].message
        assert results[2].code == "not_an_image"
        with pytest.raises(TypeError, match="input #1 is a int"):
            client.predict([b"x", 3])
        with pytest.raises(TypeError, match="a list of inputs"):
            client.predict(b"one image")


def test_records_come_in_input_order_even_when_the_first_answer_is_last(server, tmp_path):
    """The first request is refused once (Retry-After: 1 s): every other file is answered
    before it, yet the records keep the order of the inputs."""
    folder = make_folder(tmp_path / "images")
    for i in range(6):
        (folder / f"more{i}.jpg").write_bytes(jpeg_bytes(seed=20 + i))
    out = tmp_path / "out.jsonl"
    with FlakyServer(server.url, fail_first=1, retry_after="1") as flaky:
        argv = ["--url", flaky.url, "--concurrency", "4", "--top-k", "2", "--output", str(out)]
        assert main([*argv, "--no-progress", str(folder)]) == Exit.SOME_FAILED  # broken.jpg
    records = read_jsonl(out)
    assert [r["file"] for r in records] == [str(p) for p in find_images([folder])]
    predicted = [r for r in records if "error" not in r]
    assert all(len(r["top"]) == 2 and r["top"][0]["label"] == r["label"] for r in predicted)


def test_local_finds_the_services_models_from_any_directory(tmp_path):
    """Without --models-dir or MODELS_DIR, --local reads the checkout's models/ (what the
    service serves), wherever it runs; a store without the model is named in one line."""
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(seed=3))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [CLI, "--local", "--no-progress", "photo.jpg"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == Exit.OK, done.stderr
    [record] = read_jsonl_text(done.stdout)
    assert record["model"] == "cats_vs_dogs"
    assert (SHIPPED_MODELS / "cats_vs_dogs" / str(record["version"])).is_dir()

    (tmp_path / "empty").mkdir()
    done = subprocess.run(
        [CLI, "--local", "photo.jpg"],
        cwd=tmp_path, env={**env, "MODELS_DIR": "empty"}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == Exit.USAGE
    [line] = done.stderr.splitlines()
    assert f"in {tmp_path / 'empty'}" in line and "MODELS_DIR" in line


def read_jsonl_text(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]
