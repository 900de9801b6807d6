"""The feedback store: a class-folder dataset and a journal, written whole or not at all."""

import io
import json
from pathlib import Path

import pytest

from service.feedback import FeedbackNotStored, FeedbackStore, Predicted, Stored
from service.photos import sha256
from tests.helpers import app_config, encode, jpeg_bytes, noise_image


def stored(label: str, data: bytes, ext: str = "jpg") -> Stored:
    return Stored(
        "pets", label, f"{label}/{sha256(data)}.{ext}", sha256(data), "r1", Predicted("dogs", 1)
    )


def test_a_photo_lands_in_its_class_folder_and_the_journal_has_a_line(tmp_path):
    store = FeedbackStore(tmp_path)
    data = jpeg_bytes()
    store.add(stored("cats", data), data, {"label": "cats"})
    assert (tmp_path / "pets" / "cats" / f"{sha256(data)}.jpg").read_bytes() == data
    assert json.loads((tmp_path / "pets" / "feedback.jsonl").read_text()) == {"label": "cats"}
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_the_latest_label_wins_and_the_journal_keeps_both(tmp_path):
    store = FeedbackStore(tmp_path)
    data = jpeg_bytes()
    store.add(stored("cats", data), data, {"label": "cats"})
    store.add(stored("dogs", data), data, {"label": "dogs"})
    assert not list((tmp_path / "pets" / "cats").iterdir())
    assert (tmp_path / "pets" / "dogs" / f"{sha256(data)}.jpg").exists()
    lines = (tmp_path / "pets" / "feedback.jsonl").read_text().splitlines()
    assert [json.loads(line)["label"] for line in lines] == ["cats", "dogs"]


def test_an_older_label_that_cannot_be_removed_leaves_the_feedback_recorded(
    tmp_path, monkeypatch, caplog
):
    """The photo and the journal line are in: refusing now would have a retry record it
    twice. The stale copy is logged and goes with the photo's next feedback."""
    store = FeedbackStore(tmp_path)
    data = jpeg_bytes()
    store.add(stored("cats", data), data, {"label": "cats"})

    def stuck(folder, stored):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(FeedbackStore, "_leave_other_classes", staticmethod(stuck))
    store.add(stored("dogs", data), data, {"label": "dogs"})  # no FeedbackNotStored
    assert (tmp_path / "pets" / "dogs" / f"{sha256(data)}.jpg").exists()
    lines = (tmp_path / "pets" / "feedback.jsonl").read_text().splitlines()
    assert [json.loads(line)["label"] for line in lines] == ["cats", "dogs"]
    assert "an older label's copy" in caplog.text
    monkeypatch.undo()
    store.add(stored("dogs", data), data, {"label": "dogs"})
    assert not list((tmp_path / "pets" / "cats").iterdir())


def test_a_write_that_fails_stores_nothing(tmp_path):
    store = FeedbackStore(tmp_path)
    (tmp_path / "pets").mkdir()
    (tmp_path / "pets" / "cats").write_text("a file where the class folder should be")
    data = jpeg_bytes()
    with pytest.raises(FeedbackNotStored, match="could not be stored"):
        store.add(stored("cats", data), data, {"label": "cats"})
    assert not (tmp_path / "pets" / "feedback.jsonl").exists()
    (tmp_path / "pets" / "feedback.jsonl").mkdir()  # the journal cannot be appended to
    with pytest.raises(FeedbackNotStored):
        store.add(stored("dogs", data), data, {"label": "dogs"})
    assert not list((tmp_path / "pets" / "dogs").iterdir())  # the photo went with it


def test_new_folders_and_the_journal_are_fsynced_in_their_parents(tmp_path, monkeypatch):
    """A photo fsynced into a folder made a moment before, or a journal just created, would
    vanish in a crash with the folder entry that names it."""
    import classifier.durable
    import service.feedback

    synced = []

    def record(path):
        synced.append(Path(path))

    for module in (classifier.durable, service.feedback):
        monkeypatch.setattr(module, "fsync", record)
    store = FeedbackStore(tmp_path / "feedback")
    data = jpeg_bytes()
    store.add(stored("cats", data), data, {"label": "cats"})
    pets = tmp_path / "feedback" / "pets"
    for folder in (tmp_path, tmp_path / "feedback", pets, pets / "cats"):
        assert folder in synced, folder
    assert synced.index(pets) < synced.index(pets / "cats")  # made, then written into
    synced.clear()
    store.add(stored("cats", jpeg_bytes(seed=1)), jpeg_bytes(seed=1), {"label": "cats"})
    assert synced == [pets / "cats"]  # nothing new but the photo: only its folder


def test_a_journal_line_the_disk_took_half_of_is_taken_back(tmp_path, monkeypatch):
    import errno
    import os

    store = FeedbackStore(tmp_path)
    first, second = jpeg_bytes(seed=1), jpeg_bytes(seed=2)
    store.add(stored("cats", first), first, {"label": "cats"})
    write = os.write

    def full_disk(fd, data):
        if bytes(data).startswith(b'{"label": "dogs"'):
            write(fd, bytes(data)[:5])
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(FeedbackNotStored, match="No space left"):
        store.add(stored("dogs", second), second, {"label": "dogs"})
    monkeypatch.setattr(os, "write", write)
    journal = tmp_path / "pets" / "feedback.jsonl"
    assert journal.read_text() == '{"label": "cats"}\n'
    assert not (tmp_path / "pets" / "dogs" / f"{sha256(second)}.jpg").exists()
    store.add(stored("dogs", second), second, {"label": "dogs"})  # tried again: whole lines
    assert [json.loads(line) for line in journal.read_text().splitlines()] == [
        {"label": "cats"},
        {"label": "dogs"},
    ]


@pytest.mark.parametrize("folder", ["cats", "."], ids=["photo's folder", "journal's folder"])
def test_a_folder_fsync_that_fails_stores_nothing(tmp_path, monkeypatch, folder):
    """The photo is renamed into its folder, or the journal made, before that folder is
    fsynced: when that fsync fails (EIO), neither stays behind the 503."""
    import errno

    import classifier.durable
    import service.feedback

    (tmp_path / "pets" / "cats").mkdir(parents=True)  # no journal yet
    failing = tmp_path / "pets" / folder
    fsync = classifier.durable.fsync

    def broken(path):
        if Path(path).resolve() == failing.resolve():
            raise OSError(errno.EIO, "Input/output error")
        fsync(path)

    for module in (classifier.durable, service.feedback):
        monkeypatch.setattr(module, "fsync", broken)
    store = FeedbackStore(tmp_path)
    data = jpeg_bytes()
    with pytest.raises(FeedbackNotStored, match="Input/output error"):
        store.add(stored("cats", data), data, {"label": "cats"})
    assert not list((tmp_path / "pets" / "cats").iterdir())
    journal = tmp_path / "pets" / "feedback.jsonl"
    assert not journal.exists() or not journal.read_bytes()


def test_a_failed_write_is_answered_503_in_the_route_shape(models_dir, tmp_path):
    from service.http.app import create_app

    feedback = tmp_path / "feedback"
    app = create_app(app_config(models_dir, FEEDBACK_DIR=str(feedback)))
    assert (feedback / "pets").is_dir()  # made at start, for a trainer pointed at it
    (feedback / "pets" / "cats").write_text("not a folder")
    photo = encode(noise_image(seed=3), "PNG")
    response = app.test_client().post(
        "/v1/models/pets/feedback", data={"image": (io.BytesIO(photo), "a.png"), "label": "cats"}
    )
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"]["code"] == "feedback_not_stored"
    assert response.headers["Retry-After"] == "1"
    assert not (feedback / "pets" / "feedback.jsonl").exists()


def mpo_bytes() -> bytes:
    """A JPEG file holding a second image (MPO, as many phones and cameras write): Pillow
    decodes it as a JPEG and names its format MPO."""
    buffer = io.BytesIO()
    first, second = noise_image(seed=5), noise_image(seed=6)
    first.save(buffer, "MPO", save_all=True, append_images=[second])
    return buffer.getvalue()


def test_a_phone_photo_with_a_second_image_is_stored_as_a_jpeg(models_dir, tmp_path):
    from service.http.app import create_app

    photo = mpo_bytes()
    feedback = tmp_path / "feedback"
    app = create_app(app_config(models_dir, FEEDBACK_DIR=str(feedback), CAPTURE_RATE=1))
    client = app.test_client()
    response = client.post(
        "/v1/models/pets/feedback", data={"image": (io.BytesIO(photo), "a.jpg"), "label": "cats"}
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["image"] == f"cats/{sha256(photo)}.jpg"
    assert (feedback / "pets" / "cats" / f"{sha256(photo)}.jpg").read_bytes() == photo
    # captured as well: predicted, then labelled by its request id
    predicted = client.post(
        "/v1/models/pets:predict",
        data={"image": (io.BytesIO(photo), "a.jpg")},
        headers={"X-Request-ID": "mpo-1"},
    )
    assert predicted.status_code == 200, predicted.get_json()
    assert app.extensions["dataplane"].monitor.wait_idle()
    labelled = client.post(
        "/v1/models/pets/feedback", json={"request_id": "mpo-1", "label": "dogs"}
    )
    assert labelled.status_code == 201, labelled.get_json()
    assert labelled.get_json()["image"] == f"dogs/{sha256(photo)}.jpg"


def test_a_captured_image_is_served_back_as_an_image_only(models_dir, tmp_path):
    from service.http.app import create_app

    app = create_app(app_config(models_dir, FEEDBACK_DIR=str(tmp_path), CAPTURE_RATE=1))
    client = app.test_client()
    photo = encode(noise_image(seed=7), "GIF")
    assert client.post("/predict", data={"image": (io.BytesIO(photo), "a.gif")}).status_code == 200
    assert app.extensions["dataplane"].monitor.wait_idle()
    [listed] = client.get("/v1/models/pets/captures").get_json()["captures"]
    response = client.get(f"/v1/models/pets/captures/{listed['image']}")
    assert response.status_code == 200 and response.data == photo
    assert response.mimetype == "image/gif"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("value", ["0", "201", "x", "", "%C2%B2", "%D9%A3"])
def test_a_bad_captures_limit_is_400_with_the_range(shared_app, value):
    response = shared_app.test_client().get(f"/v1/models/pets/captures?limit={value}")
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_parameter" and "from 1 to 200" in error["message"]
