"""The feedback store: a class-folder dataset and a journal, written whole or not at all."""

import io
import json

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
