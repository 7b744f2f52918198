"""Downloading weights: streamed, resumed, retried, and verified by sha256 before they land.

A download streams into ``<file>.part``. Only a file whose sha256 matches the expected hash is moved
to its real name (os.replace, atomic within a directory), so the models dir never holds unverified
or half-written weights under a name a service would load.
"""

import logging
import os
import re
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import httpx
from tqdm import tqdm

from services.embedder.manifest import file_sha256

log = logging.getLogger(__name__)

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE = re.compile(r"^bytes \*/(\d+)$")
# Worth another try: the server or a proxy may recover. Every 5xx is added to these.
_RETRY_STATUSES = frozenset({408, 425, 429})
# The network, not the request, failed: retrying (and resuming) can succeed.
_TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class FetchError(Exception):
    """A download that failed for good, or bytes that are not the expected ones; the message says which."""


class _Transient(Exception):
    """One attempt failed in a way another attempt may not."""


@dataclass(frozen=True)
class FetchPolicy:
    attempts: int = 5
    backoff_s: float = 1.0  # delay before the 2nd attempt, doubled before each later one
    timeout_s: float = 30.0  # per connect/read; a large file may take much longer in total
    chunk_bytes: int = 64 * 1024
    progress: bool | None = None  # None: a progress bar only when stderr is a terminal


@dataclass(frozen=True)
class FetchResult:
    path: Path
    sha256: str
    downloaded: bool  # False: a file with the expected hash was already there


class _Resume(NamedTuple):
    start: int  # byte offset the response body starts at
    total: int | None  # full file size, when the server says


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise FetchError(f"only http(s) URLs can be fetched, got {url!r}")
    return url


def check_sha256(value: str) -> str:
    digest = value.strip().lower()
    if not SHA256_HEX.match(digest):
        raise FetchError(f"a sha256 is 64 hex digits, got {value!r}")
    return digest


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def fetch_file(
    url: str,
    dest: Path,
    sha256: str,
    *,
    policy: FetchPolicy = FetchPolicy(),
    force: bool = False,
    client: httpx.Client | None = None,
) -> FetchResult:
    """Makes ``dest`` a file whose sha256 is ``sha256``, downloading it from ``url`` unless it already is.

    ``force`` downloads again from byte 0, even over a verified file or an interrupted ``.part``.
    """
    check_url(url)
    expected = check_sha256(sha256)
    part = part_path(dest)
    if force:
        part.unlink(missing_ok=True)
    elif dest.is_file():
        actual = file_sha256(dest)
        if actual == expected:
            log.info("%s is already present with the expected sha256; not downloading it again", dest)
            return FetchResult(dest, actual, downloaded=False)
        log.warning("%s exists but hashes to %s, not %s; downloading it again", dest, actual, expected)
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s -> %s", url, dest)
    started = time.perf_counter()
    with _client_scope(client, policy) as http:
        _download(http, url, part, policy)
    actual = file_sha256(part)
    if actual != expected:
        part.unlink(missing_ok=True)
        raise FetchError(
            f"sha256 mismatch for {url}: expected {expected}, got {actual}. The download was deleted "
            f"and nothing was installed at {dest}; check the URL and the hash you were given."
        )
    os.replace(part, dest)
    size = dest.stat().st_size
    log.info("verified %s (%d bytes, sha256 %s) in %.1fs", dest, size, actual, time.perf_counter() - started)
    return FetchResult(dest, actual, downloaded=True)


def make_client(policy: FetchPolicy) -> httpx.Client:
    # trust_env stays on: deployments reach the internet through HTTPS_PROXY and custom CA bundles.
    return httpx.Client(timeout=policy.timeout_s, follow_redirects=True)


def _client_scope(client: httpx.Client | None, policy: FetchPolicy) -> AbstractContextManager[httpx.Client]:
    # A caller's client is the caller's to close.
    return nullcontext(client) if client is not None else make_client(policy)


def _download(http: httpx.Client, url: str, part: Path, policy: FetchPolicy) -> None:
    """Fills ``part`` with the whole body, resuming it across attempts with exponential back-off."""
    for attempt in range(1, policy.attempts + 1):
        try:
            _attempt(http, url, part, policy)
            return
        except _Transient as exc:
            if attempt == policy.attempts:
                raise FetchError(f"giving up on {url} after {attempt} attempts: {exc}") from exc
            delay = policy.backoff_s * 2 ** (attempt - 1)
            log.warning("attempt %d/%d failed: %s; retrying in %.1fs", attempt, policy.attempts, exc, delay)
            time.sleep(delay)


def _attempt(http: httpx.Client, url: str, part: Path, policy: FetchPolicy) -> None:
    offset = part.stat().st_size if part.is_file() else 0
    # identity: byte ranges must count the file's own bytes, not a compressed encoding of them.
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with http.stream("GET", url, headers=headers) as response:
            resume = _plan(response, offset, part)
            if resume is not None:
                _write(response, part, resume, policy)
    except _TRANSIENT_ERRORS as exc:
        raise _Transient(f"{type(exc).__name__}: {exc or 'no detail'}") from exc
    except httpx.HTTPError as exc:
        raise FetchError(f"cannot download {url}: {type(exc).__name__}: {exc}") from exc


def _plan(response: httpx.Response, offset: int, part: Path) -> _Resume | None:
    """Where this response's body goes in ``part``; None when ``part`` already holds the whole file."""
    status = response.status_code
    if status == 200:
        if offset:
            log.info("the server does not resume downloads (200 to a Range request); restarting from 0")
        return _Resume(0, _int_header(response, "Content-Length"))
    if status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match is None or int(match[1]) != offset:
            part.unlink(missing_ok=True)
            raise _Transient(f"unexpected Content-Range {response.headers.get('Content-Range')!r}")
        total = None if match[3] == "*" else int(match[3])
        log.info("resuming at byte %d of %s", offset, total if total is not None else "?")
        return _Resume(offset, total)
    if status == 416 and offset:
        match = _UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
        if match is not None and int(match[1]) == offset:
            return None  # an earlier attempt got every byte but stopped before verifying
        part.unlink(missing_ok=True)
        raise _Transient("the partial download does not fit the remote file; restarting from 0")
    reason = f"HTTP {status} {response.reason_phrase}".rstrip()
    if status >= 500 or status in _RETRY_STATUSES:
        raise _Transient(reason)
    raise FetchError(f"{response.url} answered {reason}")


def _write(response: httpx.Response, part: Path, resume: _Resume, policy: FetchPolicy) -> None:
    mode = "ab" if resume.start else "wb"
    with (
        part.open(mode) as out,
        tqdm(
            total=resume.total,
            initial=resume.start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name.removesuffix(".part"),
            disable=None if policy.progress is None else not policy.progress,
        ) as bar,
    ):
        # Written chunk by chunk (never buffered whole) so an interrupted attempt leaves bytes to resume.
        for chunk in response.iter_bytes(policy.chunk_bytes):
            out.write(chunk)
            bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    size = part.stat().st_size
    if resume.total is not None and size != resume.total:
        raise _Transient(f"the connection ended after {size} of {resume.total} bytes")


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name, "")
    return int(value) if value.isdigit() else None
