"""The demo page in a real headless Chromium (Debian's), against a real gunicorn."""

import base64

import pytest

from benchmarks.harness import Server
from service.keys import new_key
from tests.browser import chromium
from tests.helpers import SHIPPED_MODELS, jpeg_bytes, png_with_header_size

pytestmark = pytest.mark.e2e

CLASSES = ["cats", "dogs"]
WAIT_S = 30


@pytest.fixture(scope="module")
def browser():
    yield from chromium(log_network=False)


@pytest.fixture(scope="module")
def server():
    with Server(SHIPPED_MODELS, MODEL_POLL_SECONDS="0") as srv:
        yield srv.wait_ready()


@pytest.fixture(scope="module")
def small_requests_server():
    """A server that takes two images to a request at most."""
    with Server(SHIPPED_MODELS, MODEL_POLL_SECONDS="0", MAX_IMAGES_PER_REQUEST="2") as srv:
        yield srv.wait_ready()


@pytest.fixture(scope="module")
def not_ready_server(tmp_path_factory):
    """A server whose default model has no loadable version: live, never ready."""
    models = tmp_path_factory.mktemp("models")
    version = models / "cats_vs_dogs" / "1"
    version.mkdir(parents=True)
    (version / "model.keras").write_text("not a model")
    with Server(models, MODEL_POLL_SECONDS="0") as srv:
        yield srv.wait_ready(path="/healthz")


# -- helpers ----------------------------------------------------------------------------------


def by_id(browser, element_id):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, element_id)


def css(browser, selector, within=None):
    from selenium.webdriver.common.by import By

    return (within or browser).find_elements(By.CSS_SELECTOR, selector)


def upload(browser, *paths):
    """What choosing files does; several paths are one multiple selection."""
    by_id(browser, "file").send_keys("\n".join(str(p) for p in paths))


def wait_until_done(browser, cards: int):
    """Until `cards` result cards exist and none is waiting; the busy state must be gone."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, WAIT_S).until(
        lambda b: (
            len(css(b, "#results .card")) == cards
            and not css(b, "#results .card.pending")
            and by_id(b, "results").get_attribute("aria-busy") == "false"
        )
    )
    assert_not_busy(browser)
    return css(browser, "#results .card")


def assert_not_busy(browser):
    assert by_id(browser, "results").get_attribute("aria-busy") == "false"
    assert by_id(browser, "drop").get_attribute("aria-disabled") == "false"
    assert by_id(browser, "file").is_enabled()
    assert "Classifying" not in by_id(browser, "status").text
    assert "Classifying" not in by_id(browser, "drop").text


def assert_result_card(card, filename):
    assert card.get_attribute("data-filename") == filename
    assert "ok" in card.get_attribute("class").split()
    assert css(card, "h2")[0].text == filename
    label = css(card, ".label-name")[0].text
    assert label in CLASSES
    rows = css(card, ".bars .class")
    assert [r.get_attribute("data-class") for r in rows] == CLASSES  # the model's order
    for row in rows:
        width = css(row, ".bar > div")[0].value_of_css_property("width")
        assert width.endswith("px")
    assert [r.get_attribute("data-class") for r in css(card, ".class.top")] == [label]
    (preview,) = css(card, "img.preview")
    assert preview.is_displayed()
    assert card.parent.execute_script("return arguments[0].naturalWidth", preview) > 0
    return label


def jpegs(tmp_path, *names):
    paths = []
    for seed, name in enumerate(names):
        path = tmp_path / name
        path.write_bytes(jpeg_bytes((160 + 40 * seed, 120), seed=seed))
        paths.append(path)
    return paths


def hold_requests(browser):
    """Make the page's fetch wait until the test calls window.__release()."""
    browser.execute_script(
        """
        const real = window.fetch;
        window.__release = null;
        window.fetch = (...args) => new Promise((resolve) => {
          window.__release = () => resolve(real(...args));
        });
        """
    )


def fake_answer(browser, status, body, headers=None):
    """Make the page's fetch answer with this status and JSON body, without the server."""
    browser.execute_script(
        """
        const [status, body, headers] = arguments;
        window.fetch = async () => new Response(JSON.stringify(body),
          { status, headers: { "Content-Type": "application/json", ...headers } });
        """,
        status,
        body,
        headers or {},
    )


# -- one image ----------------------------------------------------------------------------------


def test_the_page_shows_the_model_its_classes_and_version(browser, server):
    browser.get(server.url + "/")
    assert by_id(browser, "model-name").text == "cats_vs_dogs"
    version = by_id(browser, "model-version").text
    assert version.startswith("version ") and version.split()[1].isdigit()
    assert by_id(browser, "model-classes").text == "cats, dogs"
    assert not css(browser, "#not-ready")
    assert not css(browser, "img")  # nothing to preview before anything was sent
    assert not css(browser, "script[src], link[href], img[src]")  # self-contained


def test_upload_a_jpeg_and_see_the_label(browser, server, tmp_path):
    (photo,) = jpegs(tmp_path, "photo.jpg")
    browser.get(server.url + "/")
    upload(browser, photo)
    (card,) = wait_until_done(browser, 1)
    label = assert_result_card(card, "photo.jpg")
    assert by_id(browser, "answered-model").text == "cats_vs_dogs"
    assert (
        by_id(browser, "answered-version").text == by_id(browser, "model-version").text.split()[1]
    )
    assert float(by_id(browser, "latency").text) > 0
    assert by_id(browser, "meta").is_displayed()
    assert by_id(browser, "error").text == ""
    assert not by_id(browser, "retry").is_displayed()
    status = by_id(browser, "status")
    assert status.get_attribute("aria-live") == "polite"
    assert status.text == f"Classified 1 image. photo.jpg: {label}."


def test_a_non_image_is_explained_and_never_previewed(browser, server, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture")
    browser.get(server.url + "/")
    upload(browser, bad)
    (card,) = wait_until_done(browser, 1)
    assert "failed" in card.get_attribute("class").split()
    assert css(card, "h2")[0].text == "notes.jpg"
    assert "not a recognised image" in css(card, ".message")[0].text
    assert css(card, ".message")[0].is_displayed()
    assert not [img for img in css(browser, "img") if img.is_displayed()]
    assert not css(card, "img")
    assert not css(card, ".bars")
    assert "Classified 0 of 1 image" in by_id(browser, "status").text
    assert not by_id(browser, "meta").is_displayed()
    assert not by_id(browser, "retry").is_displayed()  # retrying would not help


# -- several images -----------------------------------------------------------------------------


def test_three_files_at_once_give_three_cards_in_order(browser, server, tmp_path):
    names = ["first.jpg", "second.jpg", "third.jpg"]
    browser.get(server.url + "/")
    upload(browser, *jpegs(tmp_path, *names))
    cards = wait_until_done(browser, 3)
    labels = [assert_result_card(card, name) for card, name in zip(cards, names, strict=True)]
    assert by_id(browser, "error").text == ""
    assert by_id(browser, "requests").text == ""  # one multipart request for all three
    expected = "; ".join(f"{n}: {label}" for n, label in zip(names, labels, strict=True))
    assert by_id(browser, "status").text == f"Classified 3 images. {expected}."


def test_one_bad_file_among_three_gets_its_own_error_card(browser, server, tmp_path):
    first, third = jpegs(tmp_path, "a.jpg", "c.jpg")
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    browser.get(server.url + "/")
    upload(browser, first, bad, third)
    cards = wait_until_done(browser, 3)
    assert_result_card(cards[0], "a.jpg")
    assert "failed" in cards[1].get_attribute("class").split()
    assert cards[1].get_attribute("data-filename") == "b.jpg"
    assert css(cards[1], ".message")[0].text.startswith("b.jpg: ")
    assert not css(cards[1], "img")
    assert_result_card(cards[2], "c.jpg")  # sent again without the bad one
    assert by_id(browser, "error").text == ""
    assert "Classified 2 of 3 images" in by_id(browser, "status").text
    assert "b.jpg: not classified" in by_id(browser, "status").text


def test_one_image_with_too_many_pixels_among_three_gets_its_own_error_card(
    browser, server, tmp_path
):
    # 413 image_too_large names the file (details.index) as 400 does; before, the whole
    # request's cards failed with "Send fewer or smaller images" for one huge photo.
    first, third = jpegs(tmp_path, "a.jpg", "c.jpg")
    huge = tmp_path / "panorama.png"
    huge.write_bytes(png_with_header_size(20_000, 10_000))  # 200 megapixels: over 40
    browser.get(server.url + "/")
    upload(browser, first, huge, third)
    cards = wait_until_done(browser, 3)
    assert_result_card(cards[0], "a.jpg")
    assert "failed" in cards[1].get_attribute("class").split()
    message = css(cards[1], ".message")[0].text
    assert message.startswith("panorama.png: ") and "pixels" in message
    assert_result_card(cards[2], "c.jpg")  # sent again without the huge one
    assert by_id(browser, "error").text == ""
    assert "Classified 2 of 3 images" in by_id(browser, "status").text


def test_more_files_than_one_request_takes_are_sent_in_several(
    browser, small_requests_server, tmp_path
):
    names = [f"photo-{i}.jpg" for i in range(5)]
    browser.get(small_requests_server.url + "/")
    assert "sent 2 to a request at most" in by_id(browser, "drop-hint").text
    upload(browser, *jpegs(tmp_path, *names))
    cards = wait_until_done(browser, 5)
    for card, name in zip(cards, names, strict=True):
        assert_result_card(card, name)
    assert by_id(browser, "requests").text == "over 3 requests"
    assert by_id(browser, "error").text == ""


def test_files_dropped_on_the_box_are_classified(browser, server):
    browser.get(server.url + "/")
    browser.execute_script(
        """
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "dropped-1.jpg", { type: "image/jpeg" }));
        transfer.items.add(new File([bytes], "dropped-2.jpg", { type: "image/jpeg" }));
        const box = document.getElementById("drop");
        box.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        box.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        """,
        base64.b64encode(jpeg_bytes((200, 150))).decode(),
    )
    cards = wait_until_done(browser, 2)
    assert_result_card(cards[0], "dropped-1.jpg")
    assert_result_card(cards[1], "dropped-2.jpg")
    assert "over" not in by_id(browser, "drop").get_attribute("class").split()


# -- busy, not ready ----------------------------------------------------------------------------


def test_busy_while_waiting_and_cleared_after(browser, server, tmp_path):
    (photo,) = jpegs(tmp_path, "slow.jpg")
    browser.get(server.url + "/")
    hold_requests(browser)
    upload(browser, photo)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, WAIT_S).until(lambda b: b.execute_script("return !!window.__release"))
    assert by_id(browser, "results").get_attribute("aria-busy") == "true"
    assert by_id(browser, "drop").get_attribute("aria-disabled") == "true"
    assert not by_id(browser, "file").is_enabled()
    assert by_id(browser, "status").text == "Classifying 1 image…"
    assert "Classifying…" in by_id(browser, "drop").text
    assert css(browser, "#results .card.pending .state")[0].text == "Classifying…"
    assert not css(browser, "#results img")
    browser.execute_script("window.__release()")
    (card,) = wait_until_done(browser, 1)
    assert_result_card(card, "slow.jpg")


def test_a_busy_server_says_so_and_offers_a_retry(browser, server, tmp_path):
    (photo,) = jpegs(tmp_path, "busy.jpg")
    browser.get(server.url + "/")
    fake_answer(
        browser,
        503,
        {"error": {"code": "queue_full", "message": "the inference queue is full"}},
        {"Retry-After": "1"},
    )
    upload(browser, photo)
    (card,) = wait_until_done(browser, 1)
    error = by_id(browser, "error").text
    assert "busy" in error and "try again" in error and "the inference queue is full" in error
    assert "server is busy" in css(card, ".message")[0].text
    assert not css(card, "img")
    assert by_id(browser, "retry").is_displayed()


def test_a_server_that_is_not_ready_says_so_and_stays_usable(browser, not_ready_server, tmp_path):
    (photo,) = jpegs(tmp_path, "early.jpg")
    browser.get(not_ready_server.url + "/")
    notice = by_id(browser, "not-ready")
    assert notice.is_displayed()
    assert "not ready" in notice.text and "try again" in notice.text
    assert by_id(browser, "model-version").text == "not loaded yet"
    assert by_id(browser, "drop").is_enabled()
    upload(browser, photo)
    (card,) = wait_until_done(browser, 1)
    error = by_id(browser, "error").text
    assert "not ready" in error and "try again" in error
    assert "no loadable version" in error  # the service's own message
    assert "not ready" in css(card, ".message")[0].text
    assert not css(card, "img")
    retry = by_id(browser, "retry")
    assert retry.is_displayed()
    retry.click()  # still not ready: the same answer, and the page still works
    (card,) = wait_until_done(browser, 1)
    assert "not ready" in by_id(browser, "error").text


# -- API keys -----------------------------------------------------------------------------------


def test_with_api_keys_the_page_asks_for_one_and_sends_the_images_with_it(browser, tmp_path):
    # The page is served without a key (API_KEY_EXEMPT_PATHS), /predict needs one; before,
    # the page only said that it "cannot send" one, so it was of no use with keys on.
    key, line = new_key("demo")
    (tmp_path / "keys").write_text(line + "\n")
    (photo,) = jpegs(tmp_path, "keyed.jpg")
    with Server(
        SHIPPED_MODELS, MODEL_POLL_SECONDS="0", API_KEYS_FILE=str(tmp_path / "keys")
    ) as srv:
        srv.wait_ready()
        browser.get(srv.url + "/")
        assert not by_id(browser, "key-form").is_displayed()
        upload(browser, photo)
        (card,) = wait_until_done(browser, 1)
        assert "failed" in card.get_attribute("class").split()
        assert "API key" in by_id(browser, "error").text
        assert by_id(browser, "key-form").is_displayed()
        field = by_id(browser, "api-key")
        assert field.get_attribute("type") == "password" and not field.get_attribute("name")
        assert browser.switch_to.active_element == field
        field.send_keys(key + "\n")  # the same photos are sent again, with the key
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(browser, WAIT_S).until(lambda b: css(b, "#results .card.ok"))
        (card,) = wait_until_done(browser, 1)
        assert_result_card(card, "keyed.jpg")
        assert by_id(browser, "error").text == ""
        assert not by_id(browser, "key-form").is_displayed()
        assert key not in browser.current_url
        browser.execute_script("sessionStorage.clear()")


# -- keyboard -----------------------------------------------------------------------------------


def test_the_drop_box_is_a_labelled_button_reached_and_opened_by_keyboard(browser, server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser.get(server.url + "/")
    # Count the file chooser opening (and keep it shut: headless cannot drive it).
    browser.execute_script(
        """
        window.__opened = 0;
        document.getElementById("file").addEventListener("click", (e) => {
          window.__opened += 1; e.preventDefault();
        });
        """
    )
    drop = by_id(browser, "drop")
    assert drop.tag_name == "button" and drop.accessible_name.startswith("Choose images")
    assert drop.aria_role == "button"
    assert drop.get_attribute("aria-describedby") == "drop-hint"
    ActionChains(browser).send_keys(Keys.TAB).perform()
    assert browser.switch_to.active_element == drop  # the first stop of Tab
    assert drop.value_of_css_property("outline-style") != "none"  # visible focus
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert browser.execute_script("return window.__opened") == 1
    ActionChains(browser).send_keys(Keys.SPACE).perform()
    assert browser.execute_script("return window.__opened") == 2
    assert browser.switch_to.active_element == drop
