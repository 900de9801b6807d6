"""Every sh and python snippet of the README's request sections runs as written against the
shipped model served by the product's own command, beside a copy of samples/ (only the port
is changed). tests/test_readme_walkthrough.py runs the front part's sh blocks in order on a
fresh clone."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.harness import Server
from tests.helpers import REPO, SHIPPED_MODELS, jpeg_bytes

pytestmark = pytest.mark.e2e

SECTIONS = ("## Sending images", "## Protocols", "## Classifying a folder")


def snippets(language: str) -> list[str]:
    readme = (REPO / "README.md").read_text()
    found = []
    for title in SECTIONS:
        start = readme.index(title)
        end = readme.index("\n## ", start + 1)
        found += re.findall(rf"```{language}\n(.*?)```", readme[start:end], flags=re.DOTALL)
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("readme")
    shutil.copytree(REPO / "samples", folder / "samples")  # the photos the snippets send
    with Server(SHIPPED_MODELS, MODEL_POLL_SECONDS="0") as server:
        yield server.wait_ready(), folder


def run(command: list[str], served) -> str:
    _, folder = served
    result = subprocess.run(
        command, cwd=folder, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"error"' not in result.stdout and "'error'" not in result.stdout, result.stdout
    return result.stdout


def port_of(text: str, served) -> str:
    text = text.replace("localhost:8001", served[0].grpc_target)
    return text.replace("localhost:8000", f"127.0.0.1:{served[0].port}")


def test_there_are_snippets_to_run():
    assert len(snippets("sh")) >= 2 and len(snippets("python")) >= 2


@pytest.mark.parametrize("index", range(len(snippets("sh"))))
def test_sh_snippet(served, index):
    script = port_of(snippets("sh")[index], served)
    env_path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # the venv's commands
    out = run(["env", f"PATH={env_path}", "bash", "-euo", "pipefail", "-c", script], served)
    assert '"label"' in out or "probabilities" in out or "p_dogs" in out


@pytest.mark.parametrize("index", range(len(snippets("python"))))
def test_python_snippet(served, index):
    snippet = snippets("python")[index]
    out = run([sys.executable, "-c", port_of(snippet, served)], served)
    assert "dogs" in out or "cats" in out
    # a print's comment that shows what it prints (`print(x)  # [[...]]: why`) shows it truly
    for shown in re.findall(r"^print\(.*\)  # (\[.*?\]): ", snippet, flags=re.MULTILINE):
        assert any(same_print(shown, line) for line in out.splitlines()), (shown, out)


NUMBER = r"\d+\.\d+"


def same_print(shown: str, printed: str) -> bool:
    """The same text, its decimals within 1e-3: the runtime differs by processor (bf16 on
    AMX, float32 elsewhere), so the last digits of a probability do too."""
    if re.sub(NUMBER, "#", shown) != re.sub(NUMBER, "#", printed):
        return False
    pairs = zip(re.findall(NUMBER, shown), re.findall(NUMBER, printed), strict=True)
    return all(abs(float(a) - float(b)) <= 1e-3 for a, b in pairs)


LOOP = "## Closing the loop"


def loop_snippets() -> list[str]:
    readme = (REPO / "README.md").read_text()
    start = readme.index(LOOP)
    return re.findall(r"```sh\n(.*?)```", readme[start : readme.index("\n## ", start + 1)], re.S)


def loop_examples() -> list[str]:
    """The answers the loop section shows (```json blocks): feedback's, then drift's."""
    readme = (REPO / "README.md").read_text()
    start = readme.index(LOOP)
    return re.findall(r"```json\n(.*?)```", readme[start : readme.index("\n## ", start + 1)], re.S)


def keys_of(value: object) -> set[str]:
    """Every key of a JSON value, at any depth."""
    if isinstance(value, dict):
        return set(value).union(*(keys_of(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(keys_of(v) for v in value))
    return set()


def answers(out: str) -> list[dict]:
    """The JSON objects curl printed one after another."""
    decoder, found, at, out = json.JSONDecoder(), [], 0, out.strip()
    while at < len(out):
        value, at = decoder.raw_decode(out, at)
        found.append(value)
        while at < len(out) and out[at].isspace():
            at += 1
    return found


def assert_shown_as_answered(example: str, answer: dict, version: int) -> None:
    """A README example answer has the real answer's keys and the served version."""
    assert set(re.findall(r'"(\w+)":', example)) == keys_of(answer), (example, answer)
    assert re.search(r'"version": (\d+)', example).group(1) == str(version), example


def test_the_loop_walkthrough_runs_as_written(tmp_path):
    """Classify with a request id, correct it by that id and by upload, read the drift: on a
    server with a feedback folder and capture on."""
    import requests

    for name, data in (
        ("photo.jpg", jpeg_bytes((300, 200), seed=2)),
        ("cat.jpg", jpeg_bytes(seed=1)),
    ):
        (tmp_path / name).write_bytes(data)
    env = {
        "MODEL_POLL_SECONDS": "0",
        "FEEDBACK_DIR": str(tmp_path / "feedback"),
        "CAPTURE_RATE": "1",
    }
    classify, correct, drift = loop_snippets()
    with Server(SHIPPED_MODELS, **env) as server:
        served = (server.wait_ready(), tmp_path)
        out = run(["bash", "-euo", "pipefail", "-c", port_of(classify, served)], served)
        assert '"label"' in out
        captures = f"{server.url}/v1/models/cats_vs_dogs/captures"
        while not requests.get(captures, timeout=10).json()["captures"]:
            time.sleep(0.05)  # the capture is written just after the answer
        out = run(["bash", "-euo", "pipefail", "-c", port_of(correct, served)], served)
        assert out.count('"correct":') == 2 and '"request_id":"photo-1"' in out
        by_id = answers(out)[0]
        out = run(["bash", "-euo", "pipefail", "-c", port_of(drift, served)], served)
        assert '"drifting"' in out and '"recorded_by"' in out
        ready = requests.get(f"{server.url}/readyz", timeout=10).json()
        version = ready["models"]["cats_vs_dogs"]["serving_version"]
    shown_feedback, shown_drift = loop_examples()
    assert_shown_as_answered(shown_feedback, by_id, version)
    assert_shown_as_answered(shown_drift, answers(out)[0], version)
    lines = (tmp_path / "feedback" / "cats_vs_dogs" / "feedback.jsonl").read_text().splitlines()
    assert len(lines) == 2
