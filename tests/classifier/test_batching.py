import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from classifier.batching import (
    Batcher,
    DeadlineExceeded,
    InferenceFailed,
    Pending,
    QueueFull,
    pad_to,
    padded_sizes,
    stack,
)

SHAPE = (2, 2, 3)


def image(value: int) -> np.ndarray:
    return np.full(SHAPE, value, dtype=np.uint8)


class Recorder:
    """A real function of the pixels (their mean / 255) that records the batches it saw."""

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.delay = delay
        self.gate = gate

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(10)
        self.shapes.append(batch.shape)
        if self.delay:
            time.sleep(self.delay)
        if (batch == 250).any():
            raise RuntimeError("poisoned batch")
        return batch.reshape(len(batch), -1).mean(axis=1, keepdims=True) / 255.0  # (n, 1)


@pytest.fixture
def make_batcher():
    made = []

    def make(run, **kwargs) -> Batcher:
        batcher = Batcher(run, **kwargs).start()
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        batcher.stop()


def test_padded_sizes():
    assert padded_sizes(1) == [1]
    assert padded_sizes(16) == [1, 2, 4, 8, 16]
    assert padded_sizes(24) == [1, 2, 4, 8, 16, 24]
    assert pad_to([1, 2, 4, 8], 3) == 4
    with pytest.raises(ValueError):
        pad_to([1, 2], 3)


def test_each_caller_gets_its_own_results_in_order(make_batcher):
    run = Recorder(delay=0.01)
    batcher = make_batcher(run, max_batch_size=8, timeout_s=0.005)

    def call(value: int) -> list[float]:
        images = np.stack([image(value), image(value + 1)])
        return batcher.predict(images, timeout_s=10).reshape(-1).tolist()

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(0, 64, 2)))
    for value, result in zip(range(0, 64, 2), results, strict=True):
        assert result == pytest.approx([value / 255, (value + 1) / 255])
    assert max(shape[0] for shape in run.shapes) > 1  # concurrent requests were batched


def test_batches_are_padded_to_allowed_sizes(make_batcher):
    gate = threading.Event()
    run = Recorder(gate=gate)
    batcher = make_batcher(run, max_batch_size=8, timeout_s=0.0)
    first = batcher.submit(np.stack([image(1)]), time.monotonic() + 10)
    time.sleep(0.05)  # the loop now holds the first item, blocked in the gate
    rest = batcher.submit(np.stack([image(v) for v in range(2, 7)]), time.monotonic() + 10)
    gate.set()
    answers = np.concatenate([first.result(5), rest.result(5)]).ravel()
    assert answers == pytest.approx([v / 255 for v in range(1, 7)])
    assert [shape[0] for shape in run.shapes] == [1, 8]  # 1 alone, then 5 padded to 8


def test_timeout_flushes_a_partial_batch(make_batcher):
    run = Recorder()
    batcher = make_batcher(run, max_batch_size=16, timeout_s=0.05)
    started = time.monotonic()
    out = batcher.predict(np.stack([image(5), image(6), image(7)]), timeout_s=5)
    assert out == pytest.approx([5 / 255, 6 / 255, 7 / 255])
    assert time.monotonic() - started < 4  # flushed by the timeout, not the deadline
    assert [shape[0] for shape in run.shapes] == [4]


def test_full_queue_rejects_at_once_all_or_none(make_batcher):
    gate = threading.Event()
    batcher = make_batcher(Recorder(gate=gate), max_batch_size=2, capacity=3)
    held = batcher.submit(np.stack([image(1)]), time.monotonic() + 10)
    time.sleep(0.05)  # taken by the loop, which waits on the gate
    queued = batcher.submit(np.stack([image(2), image(3)]), time.monotonic() + 10)
    with pytest.raises(QueueFull) as info:
        batcher.submit(np.stack([image(4), image(5)]), time.monotonic() + 10)
    assert info.value.code == "queue_full"
    assert batcher.queued() == 2  # nothing of the refused request was queued
    gate.set()
    answers = np.concatenate([held.result(5), queued.result(5)]).ravel()
    assert answers == pytest.approx([1 / 255, 2 / 255, 3 / 255])
    assert batcher.stats.rejected == 2


def test_deadline_gives_504_and_frees_the_place(make_batcher):
    gate = threading.Event()
    run = Recorder(gate=gate)
    batcher = make_batcher(run, max_batch_size=1, capacity=2)
    busy = batcher.submit(np.stack([image(1)]), time.monotonic() + 10)
    time.sleep(0.05)
    with pytest.raises(DeadlineExceeded) as info:
        batcher.predict(np.stack([image(2)]), timeout_s=0.05)
    assert info.value.code == "deadline_exceeded"
    # its place is free at once, while the model is still busy: the whole capacity fits
    assert batcher.queued() == 0
    room = batcher.submit(np.stack([image(3), image(4)]), time.monotonic() + 10)
    gate.set()
    assert busy.result(5).ravel() == pytest.approx([1 / 255])
    assert room.result(5).ravel() == pytest.approx([3 / 255, 4 / 255])
    assert all(shape[0] == 1 for shape in run.shapes)
    assert len(run.shapes) == 3  # the abandoned image never reached the model


def test_an_answer_in_just_as_the_deadline_passes_is_the_answer(make_batcher, monkeypatch):
    """The wait timed out, but the rows were in before the request was given up: they are
    answered, not a 504 (the request thread checks under the answer lock)."""
    real_wait = Pending.wait

    def late(self: Pending, timeout: float) -> bool:
        assert real_wait(self, 5)  # the batch answers...
        self._done.release()
        return False  # ...but the caller sees its deadline pass first

    monkeypatch.setattr(Pending, "wait", late)
    batcher = make_batcher(Recorder(), max_batch_size=2)
    answer = batcher.predict(np.stack([image(7), image(8)]), timeout_s=1)
    assert answer.ravel() == pytest.approx([7 / 255, 8 / 255])
    assert batcher.queued() == 0


def test_items_expired_in_the_queue_are_not_run(make_batcher):
    gate = threading.Event()
    run = Recorder(gate=gate)
    batcher = make_batcher(run, max_batch_size=4)
    busy = batcher.submit(np.stack([image(1)]), time.monotonic() + 10)
    time.sleep(0.05)
    stale = batcher.submit(np.stack([image(2), image(3)]), time.monotonic() + 0.01)
    time.sleep(0.05)
    gate.set()
    assert busy.result(5).ravel() == pytest.approx([1 / 255])
    with pytest.raises(DeadlineExceeded):
        stale.result(5)
    assert batcher.stats.expired == 2  # each image of the request
    assert len(run.shapes) == 1  # none of them reached the model


def test_an_exception_fails_only_its_own_batch(make_batcher):
    gate = threading.Event()
    batcher = make_batcher(Recorder(gate=gate), max_batch_size=2)
    first = batcher.submit(np.stack([image(1)]), time.monotonic() + 10)
    time.sleep(0.05)
    poisoned = batcher.submit(np.stack([image(250), image(2)]), time.monotonic() + 10)
    after = batcher.submit(np.stack([image(3)]), time.monotonic() + 10)
    gate.set()
    assert first.result(5).ravel() == pytest.approx([1 / 255])
    with pytest.raises(InferenceFailed) as info:
        poisoned.result(5)
    assert info.value.code == "inference_failed"
    assert after.result(5).ravel() == pytest.approx([3 / 255])
    assert batcher.stats.failed_batches == 1


def test_a_failed_image_withdraws_the_rest_of_its_request(make_batcher):
    """Batches of one: the request's first image fails, and what is still queued of it leaves
    the queue, never reaching the model (before, it ran after the request had its error)."""
    second = threading.Event()
    seen: list[int] = []

    def run(batch: np.ndarray) -> np.ndarray:
        seen.append(int(batch[0, 0, 0, 0]))
        if len(seen) == 1:
            time.sleep(0.05)  # the request's other images are queued by now
            raise RuntimeError("poisoned batch")
        if seen[-1] == 5:
            second.wait(10)  # the lane holds image 5 if it took it before the withdrawal
        return batch.reshape(len(batch), -1).mean(axis=1, keepdims=True) / 255.0

    batcher = make_batcher(run, max_batch_size=1)
    with pytest.raises(Exception) as info:
        batcher.predict(np.stack([image(250), image(5), image(6)]), timeout_s=10)
    assert getattr(info.value, "code", None) == "inference_failed"
    assert batcher.queued() == 0  # image 6 left the queue (5 too, unless the lane took it)
    second.set()
    assert batcher.predict(np.stack([image(3)]), timeout_s=5).ravel() == pytest.approx([3 / 255])
    assert seen[0] == 250 and seen[-1] == 3 and 6 not in seen


def test_a_failing_batch_observer_neither_holds_answers_nor_stops_the_lane(make_batcher):
    def observer(*_: object) -> None:
        raise RuntimeError("metrics down")

    batcher = make_batcher(Recorder(), max_batch_size=2, on_batch=observer)
    for value in (1, 2, 3):  # before: the first waited out its deadline, and the lane was dead
        answer = batcher.predict(np.stack([image(value)]), timeout_s=2)
        assert answer.ravel() == pytest.approx([value / 255])


def test_warm_up_runs_every_padded_size():
    run = Recorder()
    Batcher(run, max_batch_size=12).warm_up(SHAPE)
    assert [shape[0] for shape in run.shapes] == [1, 2, 4, 8, 12]


def test_stop_finishes_queued_work_then_refuses():
    batcher = Batcher(Recorder(delay=0.01), max_batch_size=2).start()
    request = batcher.submit(np.stack([image(v) for v in range(5)]), time.monotonic() + 10)
    batcher.stop()
    assert request.result(5).ravel() == pytest.approx([v / 255 for v in range(5)])
    with pytest.raises(QueueFull):
        batcher.submit(np.stack([image(1)]), time.monotonic() + 10)


def test_check_room_refuses_before_any_work(make_batcher):
    gate = threading.Event()
    batcher = make_batcher(Recorder(gate=gate), max_batch_size=1, capacity=2)
    batcher.submit(np.stack([image(1)]), time.monotonic() + 10)
    time.sleep(0.05)
    batcher.submit(np.stack([image(2), image(3)]), time.monotonic() + 10)
    with pytest.raises(QueueFull):
        batcher.check_room(1)
    gate.set()


def test_every_size_runs_a_batch_as_it_is():
    assert padded_sizes(5, every=True) == [1, 2, 3, 4, 5]
    seen = []

    def run(batch):
        seen.append(len(batch))
        return batch.reshape(len(batch), -1)[:, :1].astype(np.float32)

    batcher = Batcher(run, max_batch_size=8, every_size=True)
    batcher.warm_up((2, 2, 3))
    assert seen == list(range(1, 9))  # each size once at warm-up
    batcher.start()
    try:
        out = batcher.predict(np.ones((3, 2, 2, 3), np.uint8), timeout_s=5)
    finally:
        batcher.stop()
    assert out.shape == (3, 1) and seen[-1] == 3  # three images, no padding to four


class Lanes:
    """A model whose calls overlap: records each call's `alone` and how many ran at once."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.calls: list[tuple[int, bool]] = []
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray, alone: bool = True) -> np.ndarray:
        with self._lock:
            self.calls.append((len(batch), alone))
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.delay)
        with self._lock:
            self.running -= 1
        return batch.reshape(len(batch), -1).mean(axis=1, keepdims=True) / 255.0


def test_a_lone_batch_runs_alone_and_batches_under_load_overlap(make_batcher):
    run = Lanes()
    batcher = make_batcher(run, max_batch_size=4, lanes=2, every_size=True)
    assert batcher.predict(np.stack([image(9)]), timeout_s=5)[:, 0] == pytest.approx([9 / 255])
    assert run.calls == [(1, True)]  # nothing else running, nothing waiting: every thread
    run.calls.clear()
    images = np.stack([image(v) for v in range(12)])
    request = batcher.submit(images, time.monotonic() + 10)
    assert request.result(5).ravel() == pytest.approx([v / 255 for v in range(12)])
    assert run.most_at_once == 2  # two lanes at once, never more
    assert sum(n for n, _ in run.calls) == 12
    assert all(not alone for _, alone in run.calls[:2])  # taken with more waiting: overlapped
    assert batcher.stats.images == 13 and batcher.stats.batches == len(run.calls) + 1
    assert batcher.stats.overlapped == sum(not alone for _, alone in run.calls) >= 2


def test_a_second_lane_starts_beside_a_running_batch_only_with_a_full_batch(make_batcher):
    """Lanes that took whatever had arrived split 32 connections into batches of about 8,
    dearer per image than 16 (docs/benchmarks.md); a lone lane would wait anyway."""
    release = threading.Event()
    calls: list[tuple[int, bool]] = []

    def run(batch: np.ndarray, alone: bool = True) -> np.ndarray:
        calls.append((len(batch), alone))
        if len(calls) == 1:
            release.wait(10)  # the first batch runs until released
        return batch.reshape(len(batch), -1).mean(axis=1, keepdims=True) / 255.0

    batcher = make_batcher(run, max_batch_size=4, lanes=2, every_size=True)
    deadline = time.monotonic() + 10
    first = batcher.submit(np.stack([image(1)]), deadline)
    while not calls:
        time.sleep(0.005)
    few = batcher.submit(np.stack([image(v) for v in (2, 3, 4)]), deadline)
    time.sleep(0.1)
    assert calls == [(1, True)]  # three waiting, the batch not full: no second batch beside it
    full = batcher.submit(np.stack([image(5)]), deadline)  # now four wait: a full batch
    assert few.result(5).ravel() == pytest.approx([2 / 255, 3 / 255, 4 / 255])
    assert full.result(5).ravel() == pytest.approx([5 / 255])
    assert calls == [(1, True), (4, False)]  # beside the running one, overlapped
    release.set()
    assert first.result(5).ravel() == pytest.approx([1 / 255])
    calls.clear()
    release.clear()
    first = batcher.submit(np.stack([image(6)]), time.monotonic() + 10)  # runs, holds
    while not calls:
        time.sleep(0.005)
    few = batcher.submit(np.stack([image(7)]), time.monotonic() + 10)
    time.sleep(0.05)
    release.set()  # the running batch ends: what waits runs, however few
    assert few.result(5).ravel() == pytest.approx([7 / 255])
    assert first.result(5).ravel() == pytest.approx([6 / 255])
    assert [n for n, _ in calls] == [1, 1]


def test_one_lane_never_overlaps_and_calls_the_plain_signature(make_batcher):
    run = Recorder(delay=0.01)  # takes no `alone`: one lane must not pass it
    batcher = make_batcher(run, max_batch_size=2)
    request = batcher.submit(np.stack([image(v) for v in range(6)]), time.monotonic() + 10)
    assert request.result(5).ravel() == pytest.approx([v / 255 for v in range(6)])


def test_warm_up_with_lanes_runs_each_size_alone_and_on_every_lane_at_once():
    run = Lanes(delay=0.0)
    met = threading.Barrier(2, timeout=5)  # broken (an error) unless both lanes run together

    def call(batch: np.ndarray, alone: bool = True) -> np.ndarray:
        if not alone:
            met.wait()
        return run(batch, alone)

    Batcher(call, max_batch_size=3, lanes=2, every_size=True).warm_up(SHAPE)
    assert run.calls == [(n, alone) for n in (1, 2, 3) for alone in (True, False, False)]


def test_stop_ends_every_lane():
    batcher = Batcher(Lanes(delay=0.01), max_batch_size=2, lanes=3).start()
    request = batcher.submit(np.stack([image(v) for v in range(7)]), time.monotonic() + 10)
    batcher.stop()
    assert request.result(5).ravel() == pytest.approx([v / 255 for v in range(7)])
    assert not any(
        thread.is_alive()
        for thread in threading.enumerate()
        if thread.name.startswith("batcher-model-")
    )
    with pytest.raises(ValueError):
        Batcher(Lanes(), lanes=0)


def test_run_here_after_stop_pads_counts_and_observes_like_a_batch():
    """A late request of a retired version (service/registry.py predict_alone). Before: run
    unpadded (a size never warmed: ONNX Runtime's arena grows) and left out of the batch
    metrics."""
    run, observed = Recorder(), []
    batcher = Batcher(
        run, max_batch_size=4, on_batch=lambda *batch: observed.append(batch[:2])
    ).start()
    with pytest.raises(RuntimeError, match="stopped batcher"):
        batcher.run_here(np.stack([image(1)]))
    batcher.stop()
    images = np.stack([image(i) for i in range(7)])
    rows = batcher.run_here(images)
    assert rows[:, 0] == pytest.approx([i / 255 for i in range(7)])
    assert [shape[0] for shape in run.shapes] == [4, 4]  # 4 + 3 padded to 4
    assert observed == [(4, 4), (3, 4)]
    assert (batcher.stats.batches, batcher.stats.images) == (2, 7)
    poisoned = np.stack([image(1), image(250)])
    with pytest.raises(InferenceFailed):
        batcher.run_here(poisoned)
    assert batcher.stats.failed_batches == 1


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_stack_copies_each_image_and_pads_with_zeros(dtype):
    images = [np.full(SHAPE, v, dtype=dtype) for v in (3, 5, 7)]
    batch = stack(images, 4)
    assert batch.shape == (4, *SHAPE) and batch.dtype == dtype
    assert [float(batch[i].mean()) for i in range(4)] == [3, 5, 7, 0]
    images[0][...] = 9  # a copy, not a view of the request's pixels
    assert batch[0].max() == 3
    batch[3] = 1  # writable, as a runtime may expect


def test_stack_of_mixed_dtypes_or_strided_views_takes_numpy_s_way():
    mixed = stack([image(2), np.full(SHAPE, 0.5, dtype=np.float32)], 2)
    assert mixed.dtype == np.float32 and mixed[0].max() == 2 and mixed[1].max() == 0.5
    wide = np.arange(2 * 2 * 6, dtype=np.uint8).reshape(2, 2, 6)
    strided = wide[:, :, ::2]  # not contiguous
    assert np.array_equal(stack([strided], 1)[0], strided)
