"""Captured requests on disk: found by request id, listed newest first, and kept within their
bounds (oldest first, an image as long as its newest capture, the age limit)."""

import os
import time

from service.capture import Capture, CaptureStore
from service.photos import sha256
from tests.helpers import jpeg_bytes


def capture(request_id: str, data: bytes, when: float, index: int = 0, label: str = "cats"):
    return Capture(
        request_id=request_id,
        index=index,
        model="pets",
        version=1,
        label=label,
        probabilities={"cats": 0.7, "dogs": 0.3},
        captured_at=when,
        image=f"{sha256(data)}.jpg",
    )


def test_a_capture_is_found_by_its_request_id_and_index_and_listed_until_labelled(tmp_path):
    store = CaptureStore(tmp_path, max_bytes=10**9, max_age_s=3600)
    now = time.time()
    data = [jpeg_bytes(seed=i) for i in range(3)]
    for i, d in enumerate(data):
        store.write(capture(f"req-{i}", d, now - 10 + i), d)
    store.write(capture("req-2", data[0], now - 5, index=1), data[0])  # a second image
    found = store.find("pets", "req-1", 0)
    assert found.request_id == "req-1" and found.image == f"{sha256(data[1])}.jpg"
    assert store.image("pets", found.image) == data[1]
    assert store.find("pets", "req-1", 1) is None and store.find("pets", "other", 0) is None
    assert store.find("other", "req-1", 0) is None
    listed = [(c.request_id, c.index) for c in store.unlabelled("pets", 10)]
    assert listed == [("req-2", 1), ("req-2", 0), ("req-1", 0), ("req-0", 0)]  # newest first
    assert len(store.unlabelled("pets", 2)) == 2
    store.mark_labelled(found)
    assert ("req-1", 0) not in [(c.request_id, c.index) for c in store.unlabelled("pets", 10)]
    assert store.find("pets", "req-1", 0) is not None  # still found: labelled again, say
    store.mark_labelled(found)  # twice (two workers): no error


def test_a_client_request_id_never_becomes_a_path(tmp_path):
    store = CaptureStore(tmp_path, max_bytes=10**9, max_age_s=3600)
    data = jpeg_bytes()
    store.write(capture("../../etc", data, time.time()), data)
    assert store.find("pets", "../../etc", 0) is not None
    assert {p.parent.name for p in tmp_path.rglob("*.json")} == {"requests"}
    assert store.image("pets", "../../../etc/passwd") is None


def test_the_sweep_keeps_the_bytes_within_the_limit_oldest_first(tmp_path):
    data = [jpeg_bytes((120, 90), seed=i) for i in range(6)]
    store = CaptureStore(tmp_path, max_bytes=10**9, max_age_s=3600)
    now = time.time()
    for i, d in enumerate(data):
        store.write(capture(f"req-{i}", d, now - 100 + i), d)
    total = store.sweep(now)["bytes"]
    each = total / 6
    store.max_bytes = int(each * 3.5)
    result = store.sweep(now)
    assert result["size"] == 6 and result["bytes"] <= store.max_bytes  # 3 requests, 3 images
    kept = [c.request_id for c in store.unlabelled("pets", 10)]
    assert kept == ["req-5", "req-4", "req-3"]


def test_an_image_lives_as_long_as_its_newest_capture(tmp_path):
    same, other = jpeg_bytes(seed=1), jpeg_bytes(seed=2)
    store = CaptureStore(tmp_path, max_bytes=10**9, max_age_s=3600)
    now = time.time()
    store.write(capture("old", same, now - 30), same)
    store.write(capture("middle", other, now - 20), other)
    store.write(capture("new", same, now - 10), same)  # the same photo sent again
    images = tmp_path / ".captured" / "pets" / "images"
    assert len(list(images.iterdir())) == 2
    store.max_bytes = store.sweep(now)["bytes"] - 1  # room for all but the oldest file
    store.sweep(now)
    assert store.find("pets", "old", 0) is None
    assert store.find("pets", "new", 0) is not None and store.image("pets", f"{sha256(same)}.jpg")


def test_the_age_limit(tmp_path):
    store = CaptureStore(tmp_path, max_bytes=10**9, max_age_s=60)
    now = time.time()
    old, new = jpeg_bytes(seed=1), jpeg_bytes(seed=2)
    store.write(capture("old", old, now - 120), old)
    store.write(capture("new", new, now - 10), new)
    assert store.sweep(now)["age"] == 2
    assert [c.request_id for c in store.unlabelled("pets", 10)] == ["new"]


def test_a_crashed_write_is_cleaned_and_one_in_progress_is_left(tmp_path):
    store = CaptureStore(tmp_path, max_bytes=1, max_age_s=3600)
    data = jpeg_bytes()
    store.write(capture("a", data, time.time()), data)
    requests = tmp_path / ".captured" / "pets" / "requests"
    stale, fresh = requests / ".tmp-stale", requests / ".tmp-fresh"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    store.sweep()
    assert not stale.exists() and fresh.exists()


def test_a_capture_labelled_while_the_queue_is_listed_leaves_the_others_listed(
    tmp_path, monkeypatch
):
    """Another worker labels (renames) a capture between the listing and its stat: the
    others are still listed, not an empty queue."""
    store = CaptureStore(tmp_path, max_bytes=10**9, max_age_s=3600)
    now = time.time()
    for i in range(3):
        data = jpeg_bytes(seed=i)
        store.write(capture(f"req-{i}", data, now - 10 + i), data)
    scandir = os.scandir
    taken = []

    class Racing:
        """os.scandir whose first record is labelled by someone else once it is listed."""

        def __init__(self, path):
            self.listing = scandir(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.listing.close()

        def __iter__(self):
            for entry in self.listing:
                if not taken and entry.name.endswith(".json"):
                    taken.append(entry.name)
                    os.replace(entry.path, entry.path.replace(".json", ".labelled.json"))
                yield entry

    monkeypatch.setattr(os, "scandir", Racing)
    listed = store.unlabelled("pets", 10)
    monkeypatch.setattr(os, "scandir", scandir)
    assert taken and len(listed) == 2


def test_a_file_another_workers_sweep_removed_is_not_counted_twice(tmp_path, monkeypatch):
    """Two workers sweep the same folder: each file removed counts once over both (the
    capture_removed_total counter is summed over workers), and its bytes are gone for both."""
    store = CaptureStore(tmp_path, max_bytes=10**9, max_age_s=60)
    other = CaptureStore(tmp_path, max_bytes=10**9, max_age_s=60)
    now = time.time()
    for i in range(3):
        data = jpeg_bytes(seed=i)
        store.write(capture(f"old-{i}", data, now - 120), data)
    unlink = os.unlink

    def after_the_other_sweep(path):
        """The other worker sweeps between this sweep's listing and its first removal."""
        monkeypatch.setattr(os, "unlink", unlink)
        swept.update(other.sweep(now))
        unlink(path)

    swept: dict[str, int] = {}
    monkeypatch.setattr(os, "unlink", after_the_other_sweep)
    result = store.sweep(now)
    assert swept["age"] == 6 and result["age"] == 0  # 3 requests and 3 images, counted once
    assert result["bytes"] == swept["bytes"] == 0


def test_an_older_capture_written_after_a_newer_one_keeps_the_image_as_long(tmp_path):
    """Two workers capture the same photo; the one with the older capture writes it last
    (each worker's monitor thread has a queue of its own): the image still lives as long as
    the newer capture."""
    same, other = jpeg_bytes(seed=1), jpeg_bytes(seed=2)
    store = CaptureStore(tmp_path, max_bytes=10**9, max_age_s=3600)
    now = time.time()
    store.write(capture("new", same, now - 10), same)
    store.write(capture("middle", other, now - 20), other)
    store.write(capture("old", same, now - 30), same)  # written last
    requests = tmp_path / ".captured" / "pets" / "requests"
    record = max(p.stat().st_size for p in requests.iterdir())
    store.max_bytes = store.sweep(now)["bytes"] - record - 1  # the two oldest files go
    store.sweep(now)
    assert store.find("pets", "old", 0) is None and store.find("pets", "middle", 0) is None
    assert store.image("pets", f"{sha256(same)}.jpg") == same
    assert [c.request_id for c in store.unlabelled("pets", 10)] == ["new"]
