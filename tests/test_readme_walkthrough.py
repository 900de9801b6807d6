"""The README's front part as a new user meets it, on a fresh clone.

Every `sh` block between the README's walkthrough markers is pasted, in order, into one
shell in the clone (`set -eo pipefail`: the first failing command fails the test); a
`sh server` block runs in a terminal of its own, here in the background, and is stopped as
Ctrl-C stops it (SIGINT to its process group) when the next one starts or the shell ends.
From `make serve` (which makes the clone's own .venv) to the demo's first request, a
classified folder, an API key and a server that needs it, `make train-setup`, a trained
model and a retrained one rolled out without a restart.

Only what a user would choose changes: the ports (free loopback ones, by PORT and
GRPC_PORT, and `localhost:8000` in the blocks), `DATA` (a tiny set of photos made here) and
`EPOCHS`. The clone is of the checkout's working tree as committed, plus its uncommitted
changes to tracked files (`git stash create`); untracked files are not in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.harness import free_port
from tests.helpers import REPO, make_dataset

pytestmark = [pytest.mark.e2e, pytest.mark.walkthrough, pytest.mark.timeout(1500)]

WALKTHROUGH = re.compile(r"<!-- walkthrough:begin.*?-->(.*?)<!-- walkthrough:end -->", re.DOTALL)
BLOCK = re.compile(r"^```(sh(?: server)?)\n(.*?)^```", re.DOTALL | re.MULTILINE)
EPOCHS = 8  # enough for the tiny set's two colours: both trainings reach 100%, so retrain publishes
SCRIPT_TIMEOUT_S = 1200

# Run before the blocks: how a block is marked in the log, how a `sh server` block runs in
# "its own terminal", and the stop at the end (Ctrl-C in that terminal).
PREAMBLE = r"""
set -eo pipefail
__server=
__block() { echo "=== README block $1 (at ${SECONDS} s)" >&2; }
__stop() {
  if [ -n "$__server" ]; then
    kill -INT -- "-$__server" 2>/dev/null || true
    wait "$__server" 2>/dev/null || true
    __server=
  fi
}
trap __stop EXIT
__serve() {
  echo "=== README block $1 (at ${SECONDS} s; its own terminal: $__logs/server-$1.log)" >&2
  __stop
  set -m  # its own process group, as a terminal's foreground job has
  bash -c "$2" > "$__logs/server-$1.log" 2>&1 &
  __server=$!
  set +m
  echo "$__server" >> "$__logs/pids"
  for _ in $(seq 1 1200); do  # up to 10 min: the first start makes .venv
    if curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz"; then return 0; fi
    if ! kill -0 "$__server" 2>/dev/null; then tail -40 "$__logs/server-$1.log" >&2; return 1; fi
    sleep 0.5
  done
  tail -40 "$__logs/server-$1.log" >&2
  return 1
}
"""

# Run after the blocks: wait (bounded) until the retrained version serves, and keep what
# the service says of the model for the test to read.
EPILOGUE = r"""
__block rollout-check
for _ in $(seq 1 120); do
  curl -sf -H "Authorization: Bearer $CLASSIFIER_API_KEY" \
    "http://127.0.0.1:$PORT/v1/models/my_model" > "$__logs/my_model.json" || true
  if grep -q '"serving_version":2' "$__logs/my_model.json"; then break; fi
  sleep 0.5
done
"""


def walkthrough_blocks(readme: str) -> list[tuple[str, str]]:
    """The (info string, text) of every sh block between the markers, in order."""
    part = WALKTHROUGH.search(readme)
    assert part, "README.md lacks the walkthrough markers"
    return BLOCK.findall(part.group(1))


def script(blocks: list[tuple[str, str]], port: int) -> str:
    """One shell script: the preamble, each block as a user would paste it, the epilogue."""
    chunks = [PREAMBLE]
    for index, (info, text) in enumerate(blocks, 1):
        text = text.replace("localhost:8000", f"localhost:{port}")  # only the port changes
        if info == "sh server":
            chunks.append(f"__serve {index} {shlex.quote(text)}")
        else:
            chunks.append(f"__block {index}\n{text}")
    chunks.append(EPILOGUE)
    return "\n".join(chunks)


def fresh_clone(target: Path) -> None:
    """A clone of the checkout, with its uncommitted changes to tracked files."""
    snapshot = subprocess.run(
        ["git", "stash", "create"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True)
    if snapshot:  # a local clone has every object, the snapshot's too
        subprocess.run(["git", "checkout", "--quiet", snapshot], cwd=target, check=True)


def user_environment(home: Path, logs: Path, data: Path, port: int, grpc_port: int) -> dict:
    """A new terminal's environment: none of the checkout's venv, keys or store settings."""
    path = [p for p in os.environ["PATH"].split(os.pathsep) if not p.startswith(str(REPO))]
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return {
        "PATH": os.pathsep.join(path),
        "HOME": str(home),  # gunicorn's control socket and the tools' caches, apart
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR") or str(Path(cache) / "pip"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        "PORT": str(port),
        "GRPC_PORT": str(grpc_port),
        "DATA": str(data),
        "EPOCHS": str(EPOCHS),
        "__logs": str(logs),
    }


def stop_everything(logs: Path) -> None:
    """Every server process group the script started, whatever state it ended in."""
    pids = logs / "pids"
    for pid in (int(x) for x in pids.read_text().split()) if pids.exists() else ():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def test_the_readme_front_part_runs_in_order_on_a_fresh_clone(tmp_path):
    for tool in ("git", "curl", "make"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    blocks = walkthrough_blocks((REPO / "README.md").read_text())
    assert [info for info, _ in blocks].count("sh server") == 2  # served, then with keys
    clone, home, logs = tmp_path / "repo", tmp_path / "home", tmp_path / "logs"
    home.mkdir()
    logs.mkdir()
    fresh_clone(clone)
    data = make_dataset(tmp_path / "data")  # two classes of colours, 24 + 8 photos each
    port = free_port()
    grpc_port = free_port(port)
    env = user_environment(home, logs, data, port, grpc_port)
    started = time.monotonic()
    try:
        done = subprocess.run(
            ["bash", "-c", script(blocks, port)],
            cwd=clone, env=env, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S,
        )  # fmt: skip
    finally:
        stop_everything(logs)
    took = time.monotonic() - started
    print(f"walkthrough: {len(blocks)} blocks in {took:.0f} s")
    report = f"{done.stdout[-6000:]}\n--- stderr ---\n{done.stderr[-8000:]}"
    assert done.returncode == 0, report

    # The quick start's request: the sample cat is a cat (curl ends its answer without a
    # newline: the next command's output follows on the same line).
    first, _ = json.JSONDecoder().raw_decode(done.stdout, done.stdout.index('{"model"'))
    assert first["predictions"][0]["label"] == "cats", report
    # The folder, classified: a CSV row per sample, and (with the key) a record per sample.
    rows = (clone / "results.csv").read_text().splitlines()
    assert rows[0].startswith("file,label,p_cats,p_dogs") and len(rows) == 3
    records = [json.loads(x) for x in done.stdout.splitlines() if x.startswith('{"file"')]
    keyed = [r for r in records if r.get("model") == "cats_vs_dogs"]
    assert {Path(r["file"]).name for r in keyed} == {"cat.jpg", "dog.jpg"}, report
    assert len((clone / "keys.txt").read_text().splitlines()) == 1
    # Trained, retrained, published, and the service serves the new version.
    assert (clone / "models" / "my_model" / "2" / "report.html").is_file()
    assert "published my_model v2" in done.stdout, report
    status = json.loads((logs / "my_model.json").read_text())
    assert status["ready"] is True and status["serving_version"] == 2, status
    # Nothing is left running: the port is free again.
    free = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/healthz"], check=False)
    assert free.returncode != 0
