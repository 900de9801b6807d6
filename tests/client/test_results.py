"""Result files (JSONL and CSV) read back for a rerun; file discovery; options and help."""

from __future__ import annotations

import email.utils
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from client.cli import build_parser, main
from client.files import find_images
from client.remote import RetryPolicy, predict_path, retry_after
from client.results import Failure, OutputError, Prediction, open_output, resume
from tests.client.fakes import make_folder

A = Prediction("a.jpg", "dogs", {"cats": 0.25, "dogs": 0.75}, "pets", 1)
BAD = Failure("b.jpg", "not_an_image", "b.jpg: not an image")
BUSY = Failure("c.jpg", "queue_full", "gave up after 5 tries")


def write(path: Path, fmt: str, *results) -> None:
    sink, _ = open_output(path, fmt)
    for result in results:
        sink.write(result)
    sink.close()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_results_read_back_as_written(tmp_path, fmt):
    path = tmp_path / f"out.{fmt}"
    write(path, fmt, BAD, A)
    columns, kept = resume(path, fmt)
    assert sorted(kept, key=lambda r: r.file) == [A, BAD]
    assert fmt == "jsonl" or columns == [
        *("file", "label", "p_cats", "p_dogs", "model", "version", "error", "message")
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_transient_failures_and_a_cut_line_are_dropped_on_resume(tmp_path, fmt):
    path = tmp_path / f"out.{fmt}"
    write(path, fmt, A, BUSY, BAD)
    with path.open("a") as stream:
        stream.write('{"file": "d.jpg", "lab' if fmt == "jsonl" else "d.jpg,cats,0.")
    sink, done = open_output(path, fmt)
    sink.close()
    assert sorted(done.values(), key=lambda r: r.file) == [A, BAD]
    assert "c.jpg" not in path.read_text() and "d.jpg" not in path.read_text()


def test_a_line_cut_inside_a_character_is_dropped_on_resume(tmp_path):
    """A full disk can stop a CSV record in the middle of a name's UTF-8 bytes."""
    path = tmp_path / "out.csv"
    e_acute = Prediction("caf\u00e9.jpg", "cats", {"cats": 0.9, "dogs": 0.1}, "pets", 1)
    write(path, "csv", A, e_acute)
    data = path.read_bytes()
    path.write_bytes(data[: data.index("\u00e9".encode()) + 1])  # é's first byte of two
    _, kept = resume(path, "csv")
    assert kept == [A]
    assert path.read_text().splitlines() == data.decode().splitlines()[:2]  # header and A


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_name_that_is_not_utf8_reads_back_as_it_was(tmp_path, fmt):
    """A file name is a file's identity across runs, whatever its bytes."""
    import os

    name = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes: not UTF-8
    latin = Prediction(name, "cats", {"cats": 0.9, "dogs": 0.1}, "pets", 1)
    path = tmp_path / f"out.{fmt}"
    write(path, fmt, latin, BAD)
    _, kept = resume(path, fmt)
    assert sorted(kept, key=lambda r: r.file) == sorted([latin, BAD], key=lambda r: r.file)


def test_a_rate_limit_is_tried_again_on_a_rerun():
    assert Failure("a.jpg", "rate_limited", "429 too many requests").transient
    assert Failure("a.jpg", "http_429", "429").transient
    # nginx's own 502 when no replica is reachable (deploy/nginx.conf): down, not wrong.
    assert Failure("a.jpg", "upstream_unavailable", "502 no API replica").transient
    assert not Failure("a.jpg", "model_not_found", "no such model").transient


def test_a_new_class_widens_the_csv_header(tmp_path):
    path = tmp_path / "out.csv"
    write(path, "csv", A)
    write(path, "csv", Prediction("e.jpg", "birds", {"cats": 0.1, "birds": 0.9}, "zoo", 2))
    header = path.read_text().splitlines()[0]
    assert header == "file,label,p_cats,p_dogs,p_birds,model,version,error,message"
    _, kept = resume(path, "csv")
    assert kept[0] == A and kept[1].probabilities == {"cats": 0.1, "birds": 0.9}


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_file_that_is_not_results_is_refused_and_left_alone(tmp_path, fmt):
    path = tmp_path / "notes.txt"
    path.write_text("my precious notes\nsecond line\n")
    with pytest.raises(OutputError):
        resume(path, fmt)
    argv = ["--url", "http://127.0.0.1:9", "--format", fmt, "--output", str(path), "x.jpg"]
    assert main(argv) == 2
    assert path.read_text() == "my precious notes\nsecond line\n"


def test_folders_are_searched_recursively_for_images(tmp_path):
    folder = make_folder(tmp_path / "images")
    (folder / ".hidden.jpg").write_bytes(b"x")
    found = find_images([folder, folder / "a.jpg", folder / "notes.txt"])
    names = [p.relative_to(folder).as_posix() for p in found]
    assert names == ["a.jpg", "b.jpeg", "broken.jpg", "sub/c.png", "sub/deeper/d.PNG", "notes.txt"]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["x.jpg"],
        ["--url", "http://127.0.0.1:9", "--local", "x.jpg"],
        ["--url", "ftp://127.0.0.1", "x.jpg"],
        ["--url", "http://127.0.0.1:9", "--output", "out.txt", "x.jpg"],
        ["--url", "http://127.0.0.1:9", "--version", "2", "x.jpg"],
        ["--url", "http://127.0.0.1:9", "--concurrency", "0", "x.jpg"],
        ["--url", "http://127.0.0.1:9", "--format", "xml", "x.jpg"],
        ["--url", "http://127.0.0.1:99999", "x.jpg"],
        ["--url", "http://:80", "x.jpg"],
        ["--url", "http://127.0.0.1:9", "--timeout", "inf", "x.jpg"],
        ["--url", "http://127.0.0.1:9", "--retry-time", "nan", "x.jpg"],
        ["--url", "http://127.0.0.1:9", "--output", "no-such-folder/out.jsonl", "x.jpg"],
        ["--url", "http://127.0.0.1:9", "--output", "/dev/null", "x.jpg"],
    ],
)
def test_bad_usage_exits_2(argv, capsys):
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_an_output_that_is_a_pipe_is_refused_not_waited_on(tmp_path, capsys):
    """Resuming reads the output first: a FIFO (or /dev/stdout on a pipe) would never end."""
    import os

    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    assert main(["--url", "http://127.0.0.1:9", "--output", str(fifo), "x.jpg"]) == 2
    assert f"--output {fifo} is not a regular file" in capsys.readouterr().err


def test_local_mode_without_the_model_exits_2(tmp_path, capsys):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    assert main(["--local", "--models-dir", str(tmp_path), "--model-name", "pets", str(image)]) == 2
    assert "pets" in capsys.readouterr().err


def test_help_lists_every_option():
    script = Path(sys.executable).parent / "classify-images"
    shown = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    options = [o for a in build_parser()._actions for o in a.option_strings]
    required = ["--url", "--local", "--models-dir", "--model-name", "--version", "--concurrency"]
    required += ["--batch-size", "--output", "--format", "--tries", "--retry-time", "--timeout"]
    for option in {*options, *required, "--backoff", "--no-progress"}:
        assert option in shown, option
    assert "exit status" in shown


def test_predict_routes_and_retry_after():
    assert predict_path(None, None) == "/predict"
    assert predict_path("pets", None) == "/v1/models/pets:predict"
    assert predict_path("pets", 3) == "/v1/models/pets/versions/3:predict"
    response = requests.Response()
    response.headers["Retry-After"] = "2"
    assert retry_after(response) == 2.0
    response.headers["Retry-After"] = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after(response) <= 30
    policy = RetryPolicy(backoff_s=1, max_backoff_s=4)
    assert policy.delay(0, 7.0) == 7.0
    assert 0.5 <= policy.delay(0, None) <= 1 and 2 <= policy.delay(5, None) <= 4
