"""Optional API keys: who may call the API, when API_KEYS_FILE names a key file. The HTTP
edge (service/http/auth.py) and the gRPC edge (service/grpc/calls.py) both check them here.

The file holds one `name:sha256-of-the-key` line per key (comments with #); the keys
themselves are never stored or logged. A key comes as `Authorization: Bearer <key>` or
`X-API-Key: <key>` and is compared with every stored hash in constant time. The file is
re-read when it changes, so keys are added or revoked without a restart.

    classifier-api-key NAME      prints a new key, and the line to add to the file
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from classifier.errors import ClassifierError

log = logging.getLogger(__name__)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
LINE = re.compile(r"^(?P<name>[^:\s]+):(?P<digest>[0-9a-f]{64})$")
# nginx's reading of `Authorization` for its per-client limit (deploy/nginx.conf), in ASCII
BEARER = re.compile(r"bearer[ \t]+(?P<key>.+)", re.IGNORECASE | re.ASCII)
RECHECK_SECONDS = 1.0


class Unauthorized(ClassifierError):
    code = "unauthorized"


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: bytes


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def read_keys(path: str | os.PathLike) -> tuple[ApiKey, ...]:
    """Parse a key file; ValueError names the first bad line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read the API keys file {path}: {exc.strerror}") from None
    keys = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = LINE.match(line)
        if match is None or not NAME.match(match["name"]):
            raise ValueError(f"{path} line {number} is not name:sha256-hex")
        keys.append(ApiKey(match["name"], bytes.fromhex(match["digest"])))
    return tuple(keys)


class KeyFile:
    """The keys of one file, re-read when its size, time or inode change (checked each second)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._keys = read_keys(path)
        self._stamp = self._stat()
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def _stat(self) -> tuple:
        try:
            st = os.stat(self.path)
        except OSError:
            return ()
        return (st.st_size, st.st_mtime_ns, st.st_ino)

    def keys(self) -> tuple[ApiKey, ...]:
        now = time.monotonic()
        if now - self._checked >= RECHECK_SECONDS and self._lock.acquire(blocking=False):
            try:
                self._checked = now
                stamp = self._stat()
                if stamp != self._stamp:
                    self._reload(stamp)
            finally:
                self._lock.release()
        return self._keys

    def _reload(self, stamp: tuple) -> None:
        try:
            self._keys = read_keys(self.path)
        except ValueError as exc:  # keep serving with the keys last read
            log.error("API keys file not reloaded: %s", exc)
            return
        self._stamp = stamp
        log.info("API keys reloaded: %d keys", len(self._keys))

    def identify(self, key: str) -> str | None:
        """The name of the key, comparing with every stored hash (no early exit)."""
        presented = digest(key)
        found = None
        for candidate in self.keys():
            if hmac.compare_digest(presented, candidate.digest):
                found = candidate.name
        return found


def exempt(path: str, patterns: tuple[str, ...]) -> bool:
    """Whether a path (an HTTP path, or a gRPC method's /package.Service/Method) needs no key:
    equal to a pattern, or starting with one that ends in `*` (a prefix, nothing more: `?`
    and `[` are a path's own characters, not wildcards)."""
    return any(path.startswith(p[:-1]) if p.endswith("*") else path == p for p in patterns)


def bearer(authorization: str) -> str | None:
    """The key of an `Authorization: Bearer <key>` value, read as nginx reads it for its
    per-client limit: a key the service takes is then the very key nginx counts (only
    spaces and tabs around it, never Unicode spaces such as U+00A0, which Python's
    `strip()` would drop and nginx would count as another client)."""
    match = BEARER.fullmatch(authorization.strip(" \t"))
    return match["key"] if match else None


def check(keys: KeyFile, presented: list[str]) -> str:
    """The name of the first key presented; Unauthorized when there is none, or when any
    presented key is unknown: nginx limits each client by the first key it carries, so a
    made-up key beside a known one would be a new client to nginx on every request."""
    if not presented:
        raise Unauthorized(
            "this API needs a key: send Authorization: Bearer <key> or X-API-Key: <key>"
        )
    names = [keys.identify(key) for key in presented]  # each compared, no early exit
    if None in names:
        raise Unauthorized("the API key is not valid")
    return names[0]


def new_key(name: str) -> tuple[str, str]:
    """A new random key and the line that lets it in."""
    if not NAME.match(name):
        raise ValueError("a key name is letters, digits, '_', '.', '@', '-' (max 64)")
    key = secrets.token_urlsafe(32)
    return key, f"{name}:{digest(key).hex()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="classifier-api-key",
        description="Make a new API key. The key is printed once and stored nowhere; add the "
        "second line to the API_KEYS_FILE (the service re-reads it within a second).",
    )
    p.add_argument("name", help="who the key is for; it names the key in logs and metrics")
    p.add_argument("--append", type=Path, help="append the line to this keys file")
    p.add_argument(
        "--key-only",
        action="store_true",
        help="print only the key (with --append, which keeps the line), e.g. "
        "export CLASSIFIER_API_KEY=$(classifier-api-key alice --append keys.txt --key-only)",
    )
    args = p.parse_args(argv)
    if args.key_only and not args.append:
        p.error("--key-only needs --append: the line that lets the key in would be lost")
    try:
        key, line = new_key(args.name)
    except ValueError as exc:
        p.error(str(exc))
    if args.append:
        try:
            with open(args.append, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError as exc:
            p.exit(1, f"{p.prog}: error: cannot append to {args.append}: {exc.strerror}\n")
    print(key if args.key_only else f"key:  {key}\nline: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
