"""The HTTP client: multipart batches to the service's predict route, with bounded retries,
an API key and any extra headers; a refused key (401/403) stops the run."""

from __future__ import annotations

import email.utils
import itertools
import math
import mimetypes
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import requests
import urllib3

from client.base import AccessRefused, BadParameter, BaseClient, NotThere
from client.inputs import Item
from client.results import Failure, Prediction, Result, top_of

# The environment variable a Client (and classify-images) takes its API key from when it is
# given none; sent as the service expects it (service/keys.py): Authorization: Bearer <key>.
API_KEY_VARIABLE = "CLASSIFIER_API_KEY"

# Statuses worth another try: a rate limit (nginx's per-client one), a proxy without a
# backend, a full queue, a missed deadline.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Those whose Retry-After says when to come back.
RETRY_AFTER_STATUSES = frozenset({429, 503, 504})
# Statuses about the request as a whole (too big, too many images): its files go one by one.
SPLIT_STATUSES = frozenset({413})
# Statuses about the client itself (no key, or a key not accepted): the run stops.
REFUSED_STATUSES = frozenset({401, 403})
# The route itself is not there (no such model or version, or not this service's URL): every
# other file would get the same answer, so the run stops too.
NOT_THERE_STATUSES = frozenset({404})
# A query parameter out of its range (top_k beyond the model's classes): the same for every
# file, so the run stops rather than record it as each file's result.
BAD_PARAMETER_CODES = frozenset({"invalid_parameter"})

Pending = tuple[int, Item, bytes]  # index in the chunk, input, its bytes


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one request is tried: at most `tries` times within `total_s` seconds."""

    tries: int = 5
    total_s: float = 60.0
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        times = (self.total_s, self.backoff_s, self.max_backoff_s)
        if (
            self.tries < 1
            or self.total_s <= 0
            or min(times) < 0
            or not all(map(math.isfinite, times))
        ):
            raise ValueError("tries must be >= 1, total_s > 0, and backoffs >= 0, all finite")

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """The server's Retry-After when it sends one; else exponential backoff with jitter,
        so that threads refused together do not all come back together."""
        if retry_after is not None:
            return retry_after
        return min(self.max_backoff_s, self.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class Refusal:
    """A try that may succeed later: a busy or unreachable server."""

    code: str
    message: str
    retry_after: float | None = None


class GaveUp(Exception):
    """Every try allowed was refused."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def predict_path(model: str | None, version: int | None) -> str:
    """The service's own predict route: the default model, a model, or one of its versions."""
    if model is None:
        if version is not None:
            raise ValueError("a version needs a model name")
        return "/predict"
    name = quote(model, safe="")
    if version is None:
        return f"/v1/models/{name}:predict"
    return f"/v1/models/{name}/versions/{int(version)}:predict"


def check_url(url: str) -> str:
    """The base URL without a trailing slash; raises ValueError when it is not http(s)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {shown(url)!r}")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError as exc:
        raise ValueError(f"not an http(s) URL: {shown(url)!r} ({exc})") from None
    return url.rstrip("/")


def shown(url: str) -> str:
    """The URL without a user and password in it (requests sends them as Basic auth): what
    messages, and so the results file, may carry."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def retry_after(response: requests.Response) -> float | None:
    """Retry-After in seconds (a number or an HTTP date), None when absent or unreadable."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_of(response: requests.Response) -> tuple[str, str, int | None]:
    """The error code, message and bad image's index of an error answer (any error shape)."""
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}", plain_message(response), None
    if not isinstance(error, dict):  # the V2 / TensorFlow Serving shape: {"error": "..."}
        return f"http_{response.status_code}", str(error), None
    # Google's shape (a gateway's): a numeric code, and details as a list.
    details = error.get("details")
    index = details.get("index") if isinstance(details, dict) else None
    code = error.get("code")
    code = code if isinstance(code, str) and code else f"http_{response.status_code}"
    return code, str(error.get("message", "")), index if isinstance(index, int) else None


def plain_message(response: requests.Response) -> str:
    """An answer that is not a JSON error as one line: an HTML page (a proxy's own 502) by
    its reason phrase, other text with its line breaks folded, at most 200 characters."""
    text = " ".join(response.text[:400].split())[:200]
    if not text or "html" in response.headers.get("Content-Type", "").lower():
        return response.reason or f"HTTP {response.status_code}"
    return text


def request_headers(api_key: str | None, headers: Mapping[str, str] | None) -> dict[str, str]:
    """The headers every request carries: the extra ones, and the key as a Bearer token
    (`api_key`, else $CLASSIFIER_API_KEY; none when both are empty)."""
    extra = dict(headers or {})
    key = api_key if api_key is not None else os.environ.get(API_KEY_VARIABLE, "")
    if key.strip():
        if any(name.lower() in ("authorization", "x-api-key") for name in extra):
            raise ValueError("give the API key once: as api_key, or in an extra header")
        extra["Authorization"] = f"Bearer {key.strip()}"
    return extra


class Client(BaseClient):
    """Predicts through one or more of the service's hosts (a retry goes to the next one).

    `Client(url).predict(inputs)` gives one Prediction or Failure per input, in order, and
    raises AccessRefused when the server refuses the key (401/403), NotThere when it has no
    such model or version (404), BadParameter when it refuses top_k (400). `api_key` (default:
    $CLASSIFIER_API_KEY) is sent as `Authorization: Bearer`; `headers` go with every request;
    `top_k` asks for each image's k best classes (`Prediction.top`).
    """

    def __init__(
        self,
        url: str | Sequence[str],
        model: str | None = None,
        version: int | None = None,
        *,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        top_k: int | None = None,
        concurrency: int = 1,
        batch_size: int = 1,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(concurrency=concurrency, batch_size=batch_size)
        self.urls = [check_url(u) for u in ([url] if isinstance(url, str) else url)]
        if not self.urls:
            raise ValueError("at least one URL is needed")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        self.path = predict_path(model, version)
        self.params = {"top_k": str(top_k)} if top_k is not None else {}
        self.headers = request_headers(api_key, headers)
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._turn = itertools.count()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        # No answer yet, and a request gave up unable to connect: a wrong --url, most likely.
        # Each later request is then tried once until one is answered, so that a thousand
        # files end in seconds, each with its record, not after every file's retries.
        self._answered = False
        self._unreachable = False

    def predict_chunk(self, items: Sequence[Item]) -> list[Result]:
        results: list[Result | None] = [None] * len(items)
        pending: list[Pending] = []
        for index, item in enumerate(items):
            data = item.read()
            if isinstance(data, Failure):
                results[index] = data
            else:
                pending.append((index, item, data))
        while pending:
            pending = self._send(pending, results)
        return results  # type: ignore[return-value] - every slot is filled

    def close(self, wait: bool = True) -> None:
        super().close(wait)
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()

    def _send(self, pending: list[Pending], results: list[Result | None]) -> list[Pending]:
        """Send these files in one request; fill in what is settled, return what to resend."""
        try:
            response = self._post([(item.upload_name, data) for _, item, data in pending])
        except GaveUp as exc:
            if exc.code == "connection_error" and not self._answered:
                self._unreachable = True
            for index, item, _ in pending:
                results[index] = Failure(item.name, exc.code, exc.message)
            return []
        if response.status_code in REFUSED_STATUSES:
            code, message, _ = error_of(response)
            raise AccessRefused(response.status_code, code, message, shown(response.url))
        if response.status_code in NOT_THERE_STATUSES:
            code, message, _ = error_of(response)
            raise NotThere(response.status_code, code, message, shown(response.url))
        if response.status_code == 200:
            for (index, _, _), result in zip(pending, self._parse(response, pending), strict=True):
                results[index] = result
            return []
        code, message, bad = error_of(response)
        if response.status_code == 400 and code in BAD_PARAMETER_CODES:
            raise BadParameter(response.status_code, code, message, shown(response.url))
        if bad is not None and 0 <= bad < len(pending):  # one bad image: the others go again
            index, item, _ = pending[bad]
            results[index] = Failure(item.name, code, message)
            return pending[:bad] + pending[bad + 1 :]
        if response.status_code in SPLIT_STATUSES and len(pending) > 1:
            return [item for single in pending for item in self._send([single], results)]
        for index, item, _ in pending:
            results[index] = Failure(item.name, code, message)
        return []

    def _parse(self, response: requests.Response, pending: list[Pending]) -> list[Result]:
        """A Prediction per file from a 200 answer, or a Failure each if it is not one."""
        try:
            body = response.json()
            name, version = str(body["model"]["name"]), int(body["model"]["version"])
            answers = body["predictions"]
            if len(answers) != len(pending):
                raise ValueError(f"{len(answers)} predictions for {len(pending)} images")
            return [
                Prediction(
                    item.name,
                    str(answer["label"]),
                    {str(k): float(v) for k, v in answer["probabilities"].items()},
                    name,
                    version,
                    top_of(answer.get("top")),
                )
                for (_, item, _), answer in zip(pending, answers, strict=True)
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            message = f"not a predict answer from {shown(response.url)}: {exc}"
            return [Failure(item.name, "bad_response", message) for _, item, _ in pending]

    def _post(self, files: list[tuple[str, bytes]]) -> requests.Response:
        """POST with retries, each try on the next host; raises GaveUp after the last one."""
        policy, started, first = self.retry, time.monotonic(), next(self._turn)
        tries = 1 if self._unreachable and not self._answered else policy.tries
        for attempt in range(tries):
            url = self.urls[(first + attempt) % len(self.urls)] + self.path
            left = policy.total_s - (time.monotonic() - started)
            outcome = self._try(url, files, left)
            if isinstance(outcome, requests.Response):
                return outcome
            wait = policy.delay(attempt, outcome.retry_after)
            elapsed = time.monotonic() - started
            if attempt + 1 >= tries or elapsed + wait >= policy.total_s:
                once = (
                    " (one: no request of this run reached the server)"
                    if tries < policy.tries
                    else ""
                )
                raise GaveUp(
                    outcome.code,
                    f"gave up after {attempt + 1} tries{once} in {elapsed:.1f} s: "
                    f"{outcome.message}",
                )
            if self.stopping.wait(wait):  # closed meanwhile (Ctrl-C): no further try
                raise GaveUp(outcome.code, f"stopped before try {attempt + 2}: {outcome.message}")
        raise AssertionError("unreachable: the loop returns or raises")

    def _try(
        self, url: str, files: list[tuple[str, bytes]], left: float
    ) -> requests.Response | Refusal:
        """One POST: the response, or a Refusal when it is worth trying again."""
        parts = [("image", (name, data, _mimetype(name))) for name, data in files]
        budget = max(0.1, min(self.timeout_s, left))
        timeout = (max(0.1, min(self.connect_timeout_s, left)), budget)
        began = time.monotonic()
        try:
            response = self._session().post(
                url,
                files=parts,
                params=self.params,
                headers=self.headers,
                timeout=timeout,
                stream=True,
            )
            _read_within(response, began + budget)
        except requests.Timeout as exc:
            return Refusal("timeout", f"no answer from {shown(url)} in time: {exc}")
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            return Refusal("connection_error", f"cannot reach {shown(url)}: {exc}")
        self._answered = True  # any HTTP answer: the URL reaches a server
        if response.status_code not in RETRY_STATUSES:
            return response
        code, message, _ = error_of(response)
        wait = retry_after(response) if response.status_code in RETRY_AFTER_STATUSES else None
        return Refusal(code, f"{response.status_code} {message}", wait)

    def _session(self) -> requests.Session:
        """This thread's own session (requests' sessions are not shared across threads)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._lock:
                self._sessions.append(session)
        return session


def _read_within(response: requests.Response, deadline: float) -> None:
    """Read the answer's body by `deadline` (time.monotonic; the try's start + its timeout):
    requests' read timeout bounds each read, so a server trickling its answer byte by byte
    would hold the try for ever. read1 returns what one read of the socket gives
    (iter_content would wait for a whole chunk); one read in progress may pass the deadline
    by at most the read timeout."""
    body = bytearray()
    try:
        while time.monotonic() <= deadline:
            chunk = response.raw.read1(64 * 1024, decode_content=True)
            if not chunk:
                response._content = bytes(body)  # what requests keeps when not streaming
                return
            body += chunk
        raise requests.Timeout("the answer took longer than the try's timeout")
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.Timeout(str(exc)) from None
    except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError) as exc:
        raise requests.ConnectionError(str(exc)) from None
    finally:
        response.close()


def _mimetype(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"
