"""The labelling page in a real headless Chromium (Debian's), against a real gunicorn with
capture on: the captured photos not labelled yet, newest first, with the model's answer; a key
or a click per class sends the feedback; keys and the API key form."""

from __future__ import annotations

import json
import time

import pytest
import requests

from benchmarks.harness import Server
from service.keys import new_key
from tests.browser import chromium
from tests.helpers import SHIPPED_MODELS, jpeg_bytes

pytestmark = pytest.mark.e2e

WAIT_S = 30


@pytest.fixture(scope="module")
def browser():
    yield from chromium(log_network=False)


@pytest.fixture
def served(tmp_path):
    """A fresh server and feedback folder per test: each starts from its own captures."""
    feedback = tmp_path / "feedback"
    env = {"MODEL_POLL_SECONDS": "0", "FEEDBACK_DIR": str(feedback), "CAPTURE_RATE": "1"}
    with Server(SHIPPED_MODELS, **env) as server:
        yield server.wait_ready(), feedback


def by_id(browser, element_id):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, element_id)


def css(browser, selector, within=None):
    from selenium.webdriver.common.by import By

    return (within or browser).find_elements(By.CSS_SELECTOR, selector)


def wait(browser, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, WAIT_S).until(condition, message=what)


def classify(server, request_ids: list[str], headers: dict | None = None) -> dict[str, str]:
    """One photo per request, in order (so the last is the newest); their answers by id, once
    all are captured."""
    answers = {}
    for seed, request_id in enumerate(request_ids):
        response = requests.post(
            f"{server.url}/predict",
            files={"image": (f"{request_id}.jpg", jpeg_bytes((160, 120), seed=seed))},
            headers={"X-Request-ID": request_id, **(headers or {})},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        answers[request_id] = response.json()["predictions"][0]["label"]
        time.sleep(0.02)  # distinct capture times
    deadline = time.monotonic() + WAIT_S
    captures = f"{server.url}/v1/models/cats_vs_dogs/captures"
    while len(requests.get(captures, headers=headers, timeout=10).json()["captures"]) < len(
        request_ids
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return answers


def cards(browser):
    return css(browser, "#queue .capture")


def journal(feedback) -> list[dict]:
    path = feedback / "cats_vs_dogs" / "feedback.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def loaded(browser, count: int):
    wait(browser, lambda b: len(cards(b)) == count, f"{count} cards")
    wait(
        browser,
        lambda b: all(
            b.execute_script("return arguments[0].naturalWidth", img) > 0
            for img in css(b, "#queue img")
        ),
        "every photo shown",
    )


def test_newest_first_with_the_answer_and_a_key_per_class(browser, served):
    server, feedback = served
    answers = classify(server, ["first", "second", "third"])
    browser.get(server.url + "/label")
    loaded(browser, 3)
    assert [c.get_attribute("data-request-id") for c in cards(browser)] == [
        "third",
        "second",
        "first",
    ]
    for card in cards(browser):
        assert css(card, ".model-label")[0].text == answers[card.get_attribute("data-request-id")]
        buttons = css(card, ".classes button")
        assert [b.text for b in buttons] == ["1 cats", "2 dogs"]
    assert by_id(browser, "status").text == "3 photos to label."
    assert by_id(browser, "class-keys").text == "1 cats, 2 dogs"
    first = cards(browser)[0]
    assert first.get_attribute("aria-current") == "true"
    assert browser.switch_to.active_element == first

    from selenium.webdriver.common.keys import Keys

    body = css(browser, "body")[0]
    body.send_keys("2")  # the newest photo is a dog
    wait(browser, lambda b: "done" in cards(b)[0].get_attribute("class"), "labelled")
    assert cards(browser)[1].get_attribute("aria-current") == "true"  # on to the next
    outcome = css(cards(browser)[0], ".outcome")[0].text
    assert outcome.startswith("Labelled dogs: the model was ")
    assert ("right" in outcome) == (answers["third"] == "dogs")
    [line] = journal(feedback)
    assert (line["request_id"], line["label"]) == ("third", "dogs")
    assert line["predicted"]["label"] == answers["third"]

    browser.switch_to.active_element.send_keys(Keys.ARROW_DOWN)  # skip "second"
    assert cards(browser)[2].get_attribute("aria-current") == "true"
    browser.switch_to.active_element.send_keys("1")
    wait(browser, lambda b: "done" in cards(b)[2].get_attribute("class"), "labelled")
    assert cards(browser)[1].get_attribute("aria-current") == "true"  # the one left
    css(cards(browser)[1], ".classes button")[1].click()  # a click works as well
    wait(browser, lambda b: by_id(b, "status").text.startswith("All labelled"), "all labelled")
    assert [(e["request_id"], e["label"]) for e in journal(feedback)] == [
        ("third", "dogs"),
        ("first", "cats"),
        ("second", "dogs"),
    ]
    stored = sorted(p.parent.name for p in (feedback / "cats_vs_dogs").rglob("*.jpg"))
    assert stored == ["cats", "dogs", "dogs"]
    pressed = css(cards(browser)[0], "button[aria-pressed='true']")
    assert [b.text for b in pressed] == ["2 dogs"]

    body.send_keys("r")  # reload: nothing waits any more
    wait(browser, lambda b: not cards(b) and "Nothing to label" in by_id(b, "status").text, "empty")


def test_class_buttons_are_reachable_with_tab_and_enter(browser, served):
    server, feedback = served
    classify(server, ["only"])
    browser.get(server.url + "/label")
    loaded(browser, 1)
    from selenium.webdriver.common.keys import Keys

    active = browser.switch_to.active_element
    for _ in range(5):  # from the card to its first class button
        active.send_keys(Keys.TAB)
        active = browser.switch_to.active_element
        if active.get_attribute("data-label"):
            break
    assert active.get_attribute("data-label") == "cats"
    active.send_keys(Keys.ENTER)
    wait(browser, lambda b: "done" in cards(b)[0].get_attribute("class"), "labelled")
    assert [e["label"] for e in journal(feedback)] == ["cats"]


def test_with_api_keys_the_page_asks_for_one(browser, tmp_path):
    key, line = new_key("labeller")
    (tmp_path / "keys").write_text(line + "\n")
    env = {
        "MODEL_POLL_SECONDS": "0",
        "FEEDBACK_DIR": str(tmp_path / "feedback"),
        "CAPTURE_RATE": "1",
        "API_KEYS_FILE": str(tmp_path / "keys"),
    }
    with Server(SHIPPED_MODELS, **env) as server:
        server.wait_ready()
        classify(server, ["keyed"], headers={"X-API-Key": key})
        browser.get(server.url + "/label")
        wait(browser, lambda b: by_id(b, "key-form").is_displayed(), "the key form")
        assert "could not be loaded" in by_id(browser, "error").text
        field = by_id(browser, "api-key")
        assert browser.switch_to.active_element == field
        field.send_keys(key + "\n")
        loaded(browser, 1)
        assert not by_id(browser, "key-form").is_displayed()
        css(browser, "body")[0].send_keys("1")
        wait(browser, lambda b: "done" in cards(b)[0].get_attribute("class"), "labelled")
        browser.execute_script("sessionStorage.clear()")
