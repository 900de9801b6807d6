"""docker-compose.yml as users run it, as its own project on loopback ports chosen here.

- `up -d --wait --scale api=3` from a fresh `models` volume, several times in a row: every
  start must succeed (models-init seeds the volume once, before any replica starts);
- requests through nginx reach every replica and keep their X-Request-ID;
- the trainer service retrains (its own command, one short epoch on a small data folder,
  published whatever the gate says) while requests flow through nginx: every replica moves
  to the new version and no request fails;
- with the GPU override the project still renders (there is no GPU here to run it).
Everything the project made is removed at the end (`down --volumes`).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections import Counter
from datetime import datetime

import pytest
import requests

from tests.containers.conftest import PROJECT
from tests.helpers import REPO

pytestmark = [pytest.mark.timeout(1200), pytest.mark.shared_data]

REPLICAS = 3
FRESH_STARTS = 3  # `up` from a new volume, in a row; the last one stays up for the tests
TRAIN_PER_CLASS, HELD_OUT_PER_CLASS = 32, 16
LOAD_CLIENTS = 2  # each its own X-API-Key: nginx limits each client to 20 requests/s
LOAD_PAUSE_S = 0.1
LOAD_MAX_S = 900  # the load stops by then whatever happens
SWAP_WITHIN_S = 60
COMPLAINTS = ("permission denied", "read-only file system", "mkdir -p failed")
# Added to the trainer's own command: one epoch (the shipped recipe warms up for some), and
# published whatever the retrain gate says of so short a training.
SHORT_TRAINING = ("--epochs", "1", "--warmup-epochs", "0", "--force")


def replicas(compose) -> list[str]:
    return compose("ps", "--quiet", "api").stdout.split()


def replica_url(compose, index: int) -> str:
    address = compose("port", "--index", str(index), "api", "8000").stdout.strip()
    return "http://127.0.0.1:" + address.rsplit(":", 1)[1]


def serving_version(url: str) -> int | None:
    try:
        answer = requests.get(f"{url}/v1/models/cats_vs_dogs", timeout=2)
    except requests.RequestException:
        return None
    return answer.json().get("serving_version") if answer.ok else None


def log_records(engine, container: str) -> list[dict]:
    result = engine.docker("logs", container)
    lines = (result.stdout + result.stderr).splitlines()
    return [json.loads(line) for line in lines if line.strip()]  # every line must be JSON


@pytest.fixture(scope="module")
def stack(engine, compose, images, figures):
    """The project started from a new volume FRESH_STARTS times in a row, the last left up."""
    starts = []
    try:
        for attempt in range(FRESH_STARTS):
            started = time.monotonic()
            compose("up", "--detach", "--wait", "--scale", f"api={REPLICAS}", timeout=600)
            starts.append(time.monotonic() - started)
            assert len(replicas(compose)) == REPLICAS
            seeded = compose("logs", "models-init").stdout
            assert "seeded" in seeded and "seeded before" not in seeded, seeded
            if attempt < FRESH_STARTS - 1:
                compose.down()
        figures[f"compose up --wait --scale api={REPLICAS}, fresh volume"] = ", ".join(
            f"{seconds:.0f} s" for seconds in starts
        )
        yield compose
    finally:
        compose.down()
        label = f"label=com.docker.compose.project={PROJECT}"
        for kind in ("container", "network", "volume"):
            listed = "ps --all" if kind == "container" else f"{kind} ls"
            left = engine.docker(*listed.split(), "--quiet", "--filter", label).stdout.split()
            assert not left, f"{kind}s left behind: {left}"


def test_the_gpu_override_renders(compose):
    rendered = json.loads(
        compose(
            "--file", "docker-compose.yml", "--file", "docker-compose.gpu.yml",
            "config", "--format", "json",
        ).stdout
    )  # fmt: skip
    api = rendered["services"]["api"]
    assert api["build"]["target"] == "train" and api["build"]["args"]["TF_VARIANT"] == "gpu"
    [device] = api["deploy"]["resources"]["reservations"]["devices"]
    assert "gpu" in device["capabilities"]


def test_nginx_reaches_every_replica_and_keeps_the_request_id(stack, engine):
    sent = [f"container-test-{uuid.uuid4().hex[:12]}-{i}" for i in range(30)]
    photo = REPO / "samples" / "cat.jpg"  # shipped: no ../shared needed
    for request_id in sent:
        answer = requests.post(
            f"http://127.0.0.1:{stack.port}/predict",
            files={"image": (photo.name, photo.read_bytes())},
            headers={"X-Request-ID": request_id},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Request-ID"] == request_id
    seen = {}
    for container in replicas(stack):
        ids = {r.get("request_id") for r in log_records(engine, container)}
        seen[container] = ids & set(sent)
    assert all(seen.values()), {c[:12]: len(ids) for c, ids in seen.items()}
    assert set().union(*seen.values()) == set(sent)


def test_the_trainer_publishes_and_every_replica_swaps_with_no_failed_request(
    stack, engine, compose, images, figures, shared_data
):
    data = compose.data_dir
    for split, count in (("train", TRAIN_PER_CLASS), ("validation", HELD_OUT_PER_CLASS)):
        for label in ("cats", "dogs"):
            folder = data / split / label
            folder.mkdir(parents=True)
            for photo in sorted((shared_data / split / label).glob("*.jpg"))[:count]:
                shutil.copy(photo, folder / photo.name)
    for path in (data, *data.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)  # the trainer reads as its own user
    urls = [replica_url(compose, i + 1) for i in range(REPLICAS)]
    before = {serving_version(url) for url in urls}
    assert len(before) == 1 and None not in before
    old = before.pop()

    load, watch = Load(stack.port), SwapWatch(urls, old + 1)
    try:
        load.start()
        watch.start()
        command = compose.config()["services"]["trainer"]["command"]
        started = time.monotonic()
        run = compose("run", "--rm", "--no-TTY", "trainer", *command, *SHORT_TRAINING)
        trained = time.monotonic() - started
        output = (run.stdout + run.stderr).lower()  # matplotlib and Keras write under HOME
        assert not [c for c in COMPLAINTS if c in output], output[-3000:]
        assert watch.done.wait(SWAP_WITHIN_S), {url: serving_version(url) for url in urls}
        time.sleep(2)  # answers from the new version through nginx
    finally:
        watch.stop()
        load.stop()
    assert load.statuses and set(load.statuses) == {200}, load.statuses
    assert load.versions[old] and load.versions[old + 1], load.versions
    for container in replicas(stack):
        failed = [r for r in log_records(engine, container) if r.get("status", 200) >= 500]
        assert not failed, failed[:3]
    status = requests.get(f"{urls[0]}/v1/models/cats_vs_dogs", timeout=5).json()
    published = datetime.fromisoformat(status["metadata"]["created_at"]).timestamp()
    figures["trainer run, one epoch (compose run --rm trainer)"] = f"{trained:.0f} s"
    figures[f"swap: v{old + 1} published to all {REPLICAS} replicas serving it"] = (
        f"{watch.all_serving - published:.1f} s (publish time to the second), "
        f"{sum(load.statuses.values())} requests through nginx during the run, "
        f"{sum(n for s, n in load.statuses.items() if s != 200)} failed"
    )


class SwapWatch(threading.Thread):
    """Polls every replica's serving version; notes the wall-clock time all serve `version`."""

    def __init__(self, urls: list[str], version: int) -> None:
        super().__init__(daemon=True)
        self.urls, self.version = urls, version
        self.done, self._quit = threading.Event(), threading.Event()
        self.all_serving: float | None = None

    def run(self) -> None:
        deadline = time.monotonic() + LOAD_MAX_S
        while not self._quit.is_set() and time.monotonic() < deadline:
            if all(serving_version(url) == self.version for url in self.urls):
                self.all_serving = time.time()
                self.done.set()
                return
            self._quit.wait(0.2)

    def stop(self) -> None:
        self._quit.set()
        if self.is_alive():
            self.join(10)


class Load:
    """Bounded predictions through nginx while the trainer runs: LOAD_CLIENTS threads, one
    request each every LOAD_PAUSE_S, until stopped or LOAD_MAX_S. Counts statuses (0: no
    answer) and the versions that answered."""

    def __init__(self, port: int) -> None:
        photo = REPO / "samples" / "dog.jpg"
        self.body = photo.read_bytes()
        self.url = f"http://127.0.0.1:{port}/predict"
        self.statuses: Counter = Counter()
        self.versions: Counter = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True)
            for i in range(LOAD_CLIENTS)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(60)

    def _client(self, index: int) -> None:
        headers = {"X-API-Key": f"container-test-{index}", "Content-Type": "image/jpeg"}
        deadline = time.monotonic() + LOAD_MAX_S
        with requests.Session() as session:
            while not self._stop.is_set() and time.monotonic() < deadline:
                version = None
                try:
                    answer = session.post(self.url, data=self.body, headers=headers, timeout=30)
                    status = answer.status_code
                    if status == 200:
                        version = answer.json()["model"]["version"]
                except requests.RequestException:
                    status = 0
                with self._lock:
                    self.statuses[status] += 1
                    self.versions[version] += 1
                self._stop.wait(LOAD_PAUSE_S)
