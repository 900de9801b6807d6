"""classify-images against a real gunicorn, and with the model in process: same answers."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import requests

from client import BadParameter, Client, Failure, LocalClient, NotThere, Prediction
from client.cli import main
from tests.client.fakes import GOOD, FlakyServer, make_folder, read_jsonl
from tests.helpers import jpeg_bytes

pytestmark = pytest.mark.e2e

QUIET = ["--no-progress"]


def by_name(records: list[dict]) -> dict[str, dict]:
    return {Path(r["file"]).name: r for r in records}


def direct(server, path: Path) -> dict:
    """What the service answers for this file when it is POSTed directly."""
    answer = requests.post(
        f"{server.url}/predict", files={"image": (path.name, path.read_bytes())}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_folder_matches_direct_posts_and_local_mode(server, models_template, tmp_path):
    folder = make_folder(tmp_path / "images")
    out = tmp_path / "out.jsonl"
    argv = ["--url", server.url, "--output", str(out), "--concurrency", "2", *QUIET, str(folder)]
    assert main(argv) == 1  # the corrupt file
    records = read_jsonl(out)
    assert len(records) == 5
    found = by_name(records)
    assert found["broken.jpg"]["error"]["code"] == "not_an_image"
    assert "notes.txt" not in found
    for name in GOOD:
        record, answer = found[Path(name).name], direct(server, folder / name)
        assert record["file"] == str(folder / name)
        assert record["probabilities"] == answer["predictions"][0]["probabilities"]
        assert record["label"] == answer["predictions"][0]["label"]
        assert (record["model"], record["version"]) == ("pets", 1)

    local = tmp_path / "local.jsonl"
    argv = ["--local", "--models-dir", str(models_template), "--model-name", "pets"]
    assert main([*argv, "--output", str(local), *QUIET, str(folder)]) == 1
    here = by_name(read_jsonl(local))
    assert here["broken.jpg"]["error"]["code"] == "not_an_image"
    for name in GOOD:
        remote, mine = found[Path(name).name], here[Path(name).name]
        assert mine["label"] == remote["label"]
        assert mine["probabilities"] == pytest.approx(remote["probabilities"], abs=1e-5)


def test_a_rerun_skips_what_is_done_and_sends_only_new_files(server, tmp_path):
    folder = make_folder(tmp_path / "images")
    out = tmp_path / "out.jsonl"
    assert main(["--url", server.url, "--output", str(out), *QUIET, str(folder)]) == 1
    before = out.read_text()
    with FlakyServer(server.url, fail_first=0) as counting:
        argv = ["--url", counting.url, "--output", str(out), *QUIET, str(folder)]
        assert main(argv) == 1  # the corrupt file's record is still there
        assert counting.requests == 0 and out.read_text() == before
        (folder / "sub" / "new.jpg").write_bytes(jpeg_bytes(seed=9))
        assert main(argv) == 1
        assert counting.requests == 1
    records = read_jsonl(out)
    assert out.read_text().startswith(before) and len(records) == 6
    assert len({r["file"] for r in records}) == 6
    assert by_name(records)["new.jpg"]["model"] == "pets"


def test_batches_of_several_images_give_the_same_answers(server, tmp_path):
    folder = make_folder(tmp_path / "images")
    single, batched = tmp_path / "single.jsonl", tmp_path / "batched.jsonl"
    assert main(["--url", server.url, "--output", str(single), *QUIET, str(folder)]) == 1
    argv = ["--url", server.url, "--batch-size", "3", "--concurrency", "2", "--output"]
    assert main([*argv, str(batched), *QUIET, str(folder)]) == 1
    one, many = by_name(read_jsonl(single)), by_name(read_jsonl(batched))
    assert one.keys() == many.keys() and many["broken.jpg"]["error"]["code"] == "not_an_image"
    for name in GOOD:
        key = Path(name).name
        assert many[key]["probabilities"] == pytest.approx(one[key]["probabilities"], abs=1e-5)


def test_csv_has_a_column_per_class_and_resumes(server, tmp_path):
    folder = make_folder(tmp_path / "images")
    out = tmp_path / "out.csv"
    # Only the corrupt file first: no class is known yet, so the header has no class column.
    assert (
        main(["--url", server.url, "--output", str(out), *QUIET, str(folder / "broken.jpg")]) == 1
    )
    assert "p_cats" not in out.read_text().splitlines()[0]
    assert main(["--url", server.url, "--output", str(out), *QUIET, str(folder)]) == 1
    text = out.read_text()
    reader = csv.DictReader(io.StringIO(text))
    rows = {Path(row["file"]).name: row for row in reader}
    assert reader.fieldnames == [
        *("file", "label", "p_cats", "p_dogs"),
        *("model", "version", "error", "message"),
    ]
    assert len(rows) == 5 and rows["broken.jpg"]["error"] == "not_an_image"
    for name in GOOD:
        row, answer = rows[Path(name).name], direct(server, folder / name)
        probabilities = answer["predictions"][0]["probabilities"]
        assert float(row["p_cats"]) == probabilities["cats"]
        assert float(row["p_dogs"]) == probabilities["dogs"]
        assert (row["model"], row["version"], row["error"]) == ("pets", "1", "")
    assert main(["--url", server.url, "--output", str(out), *QUIET, str(folder)]) == 1
    assert out.read_text() == text


def test_csv_and_jsonl_on_stdout(server, tmp_path, capsys):
    folder = make_folder(tmp_path / "images")
    assert main(["--url", server.url, "--format", "csv", *QUIET, str(folder)]) == 1
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 5 and sum(bool(row["error"]) for row in rows) == 1
    assert all(row["p_cats"] for row in rows if not row["error"])
    assert main(["--url", server.url, *QUIET, str(folder / "a.jpg")]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert '"label"' in line and '"probabilities"' in line


def test_a_file_that_failed_on_an_unreachable_server_is_sent_again(server, tmp_path):
    image = tmp_path / "one.jpg"
    image.write_bytes(jpeg_bytes(seed=5))
    out = tmp_path / "out.jsonl"
    with FlakyServer(None, retry_after="0") as down:
        argv = ["--url", down.url, "--tries", "2", "--output", str(out), *QUIET, str(image)]
        assert main(argv) == 1
    [record] = read_jsonl(out)
    assert record["error"]["code"] == "queue_full"
    assert main(["--url", server.url, "--output", str(out), *QUIET, str(image)]) == 0
    [record] = read_jsonl(out)  # the transient error was replaced, not duplicated
    assert record["model"] == "pets"


def test_python_api(server, models_template, tmp_path):
    folder = make_folder(tmp_path / "images")
    paths = [folder / "a.jpg", folder / "broken.jpg", folder / "sub/c.png", folder / "gone.jpg"]
    with Client(server.url, concurrency=2) as client:
        results = client.predict(paths)
    assert [r.file for r in results] == [str(p) for p in paths]
    first, broken, third, gone = results
    assert isinstance(first, Prediction) and isinstance(third, Prediction)
    assert first.label in first.probabilities and (first.model, first.version) == ("pets", 1)
    assert isinstance(broken, Failure) and broken.code == "not_an_image"
    assert isinstance(gone, Failure) and gone.code == "file_not_found"

    [again] = Client(server.url, "pets", 1).predict([paths[0]])
    assert again == first  # the named model and version route answer the same
    with pytest.raises(NotThere) as info:  # no image would fare better: none gets it
        Client(server.url, "nope").predict([paths[0]])
    assert (info.value.status, info.value.code) == (404, "model_not_found")

    with LocalClient(models_template, "pets", concurrency=2) as local:
        here = local.predict(paths)
    assert [type(r) for r in here] == [type(r) for r in results]
    assert here[0].probabilities == pytest.approx(first.probabilities, abs=1e-5)
    assert (here[1].code, here[3].code) == ("not_an_image", "file_not_found")


def test_a_model_the_server_lacks_stops_the_run_and_records_nothing(server, tmp_path, capsys):
    """A typo in --model-name is one answer for every file: stop, and leave the files to a
    rerun with the right name (recorded, they would be skipped as done)."""
    folder = make_folder(tmp_path / "images")
    out = tmp_path / "out.jsonl"
    argv = ["--url", server.url, "--output", str(out), *QUIET, str(folder)]
    assert main([*argv, "--model-name", "petz"]) == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert "404 model_not_found" in line and "check --url, --model-name and --version" in line
    assert not out.exists() or read_jsonl(out) == []
    assert main([*argv, "--model-name", "pets"]) == 1  # broken.jpg is not an image
    assert len(read_jsonl(out)) == 5


def test_a_top_k_the_model_lacks_stops_the_run_and_records_nothing(server, tmp_path, capsys):
    """--top-k 5 on a two-class model is a 400 invalid_parameter for every file: stop (exit 2)
    rather than record it as each file's result, which a rerun would skip as done."""
    folder = make_folder(tmp_path / "images")
    out = tmp_path / "out.jsonl"
    argv = ["--url", server.url, "--output", str(out), *QUIET, str(folder)]
    assert main([*argv, "--top-k", "5"]) == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert "400 invalid_parameter" in line and "check --top-k" in line
    assert not out.exists() or read_jsonl(out) == []
    assert main([*argv, "--top-k", "2"]) == 1  # broken.jpg is not an image
    assert len(read_jsonl(out)) == 5
    with pytest.raises(BadParameter) as info:
        Client(server.url, top_k=3).predict([folder / "a.jpg"])
    assert (info.value.status, info.value.code) == (400, "invalid_parameter")


def test_a_password_in_the_url_is_never_written(server, tmp_path, capsys):
    """http://user:password@host sends Basic auth (a proxy's, say): the password stays out of
    the records and the error lines, which name the host."""
    from benchmarks.harness import free_port

    image = tmp_path / "one.jpg"
    image.write_bytes(jpeg_bytes(seed=1))
    out = tmp_path / "out.jsonl"
    argv = ["--output", str(out), "--tries", "1", *QUIET, str(image)]
    written = ""
    dead = f"http://user:s3cret@127.0.0.1:{free_port()}"
    assert main(["--url", dead, *argv]) == 1
    [record] = read_jsonl(out)
    assert record["error"]["code"] == "connection_error"
    assert "cannot reach http://127.0.0.1:" in record["error"]["message"]
    written += out.read_text()
    with_password = server.url.replace("http://", "http://user:s3cret@")
    assert main(["--url", with_password, "--model-name", "nope", *argv]) == 2
    assert main(["--url", "http://user:s3cret@127.0.0.1:99999", *argv]) == 2
    assert main(["--url", with_password, *argv]) == 0
    err = capsys.readouterr().err
    assert "404 model_not_found" in err and "not an http(s) URL" in err
    assert "s3cret" not in written + out.read_text() + err


def test_a_folder_that_cannot_be_listed_gets_an_error_record(server, tmp_path, monkeypatch):
    """A folder without read permission is one error record and exit 1, not skipped without a
    word (a folder given that cannot be read was "0 predicted, 0 failed", exit 0)."""
    import os

    folder = make_folder(tmp_path / "images")
    locked = [folder / "sub", tmp_path / "locked"]
    locked[1].mkdir()
    (locked[1] / "x.jpg").write_bytes(jpeg_bytes(seed=8))
    for path in locked:
        path.chmod(0)
    try:
        if os.access(locked[1], os.R_OK):  # root reads anyway: fail as the kernel would
            scandir = os.scandir

            def refused(path="."):
                if Path(path) in locked:
                    raise PermissionError(13, "Permission denied", os.fspath(path))
                return scandir(path)

            monkeypatch.setattr(os, "scandir", refused)
        out = tmp_path / "out.jsonl"
        argv = ["--url", server.url, "--output", str(out), *QUIET, str(folder), str(locked[1])]
        assert main(argv) == 1
    finally:
        for path in locked:
            path.chmod(0o755)
    found = {r["file"]: r for r in read_jsonl(out)}
    assert sorted(found) == sorted(
        [*(str(folder / name) for name in ("a.jpg", "b.jpeg", "broken.jpg")), *map(str, locked)]
    )
    assert all(found[str(path)]["error"]["code"] == "unreadable_file" for path in locked)


def test_file_names_that_are_not_utf8_are_classified_and_resumed(server, tmp_path, capsys):
    import os

    folder = tmp_path / "images"
    folder.mkdir()
    latin = os.fsdecode(folder.as_posix().encode() + b"/caf\xe9.jpg")
    Path(latin).write_bytes(jpeg_bytes(seed=3))
    (folder / "ok.jpg").write_bytes(jpeg_bytes(seed=4))
    out = tmp_path / "out.csv"
    argv = ["--url", server.url, "--output", str(out), *QUIET, str(folder)]
    assert main(argv) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_bytes().decode(errors="surrogateescape"))))
    assert sorted(r["file"] for r in rows) == sorted([latin, str(folder / "ok.jpg")])
    assert all(r["label"] in ("cats", "dogs") for r in rows)
    capsys.readouterr()
    assert main(argv) == 0
    assert "0 predicted, 0 failed, 2 already in the output" in capsys.readouterr().err


def test_a_full_disk_is_one_line_and_a_rerun_goes_on(server, tmp_path):
    """Writing the results fails (here: a file size limit of 1 kB): exit 4 with one line; the
    records written are kept and the rerun sends only the rest."""
    import resource
    import subprocess
    import sys

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(12):
        (folder / f"{i:02d}.jpg").write_bytes(jpeg_bytes(seed=i))
    out = tmp_path / "out.jsonl"
    script = Path(sys.executable).parent / "classify-images"
    command = [str(script), "--url", server.url, "--output", str(out), *QUIET, str(folder)]

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    full = subprocess.run(
        command, preexec_fn=small_files, capture_output=True, text=True, timeout=120
    )
    assert full.returncode == 4, full.stderr
    assert (
        full.stderr.strip()
        .splitlines()[-1]
        .startswith(f"classify-images: error: cannot write {out}")
    )
    assert "Traceback" not in full.stderr
    complete = out.read_bytes()[: out.read_bytes().rfind(b"\n") + 1]  # the last one was cut
    assert 0 < len(complete.splitlines()) < 12
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    records = read_jsonl(out)
    assert sorted(Path(r["file"]).name for r in records) == [f"{i:02d}.jpg" for i in range(12)]


def test_a_reader_that_stops_early_ends_the_run_quietly(server, tmp_path):
    """`classify-images ... | head`: the reader gone, exit 4 without a word (before: an error
    line telling to rerun with an --output the run did not have)."""
    import subprocess
    import sys

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(jpeg_bytes(seed=i))
    script = Path(sys.executable).parent / "classify-images"
    process = subprocess.Popen(
        [str(script), "--url", server.url, *QUIET, str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.close()  # gone before the first record is written
    _, err = process.communicate(timeout=120)
    assert process.returncode == 4, err
    assert "error" not in err and "Traceback" not in err and "Exception" not in err
