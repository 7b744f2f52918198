"""Which URLs a crawl visits, in what order: URL normalisation, domain rules, depth levels.

Pure: no I/O. The crawl is breadth-first and level-synchronous (every page of depth d is
visited before any page of depth d+1), so a page always gets its shortest link distance from
a start URL, whatever order concurrent fetches finish in.
"""

from collections import deque
from collections.abc import Callable, Iterable
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

MAX_URL_CHARS = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters left as they are when re-quoting a path or query (RFC 3986 reserved + unreserved + %).
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"


def canonical_host(host: str | None) -> str | None:
    """Lower-case, no trailing dot, IDNA-encoded ("Bücher.Example." -> "xn--bcher-kva.example")."""
    if not host:
        return None
    host = host.strip().rstrip(".").lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return host or None


def normalize_url(href: str, base: str) -> str | None:
    """The absolute, canonical form of a link found on page ``base``, or None if it is not a
    crawlable http(s) URL. Drops the fragment, credentials and default port; resolves relative
    paths and dot segments; percent-encodes what must be."""
    href = href.strip()
    if not href or href.startswith("#"):
        return None
    try:
        parts = urlsplit(urljoin(base, href))
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = canonical_host(parts.hostname)
    if scheme not in _DEFAULT_PORTS or host is None or parts.username or parts.password:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    path = quote(remove_dot_segments(parts.path), safe=_SAFE_PATH)
    query = quote(parts.query, safe=_SAFE_QUERY)
    url = urlunsplit((scheme, netloc, path, query, ""))
    return url if len(url) <= MAX_URL_CHARS else None


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 on an absolute path: "/a/./b/../c" -> "/a/c" (urljoin leaves an absolute
    link's dots alone, and "/a/../b" must not be crawled as a page of its own)."""
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if len(kept) > 1:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    joined = "/".join(kept) + ("/" if path.endswith(("/.", "/..")) else "")
    return joined if joined.startswith("/") else "/" + joined


def host_of(url: str) -> str:
    """The host of a normalised URL (what domain rules and politeness are keyed by)."""
    return urlsplit(url).hostname or ""


def origin_of(url: str) -> str:
    """scheme://host[:port] of a normalised URL: robots.txt applies per origin."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Frontier:
    """The URLs still to visit, by depth, each admitted once.

    ``allowed_hosts`` match exactly: a subdomain is crawled only if it is listed itself.
    ``max_urls`` bounds memory on huge sites: links past it are dropped (the crawl's page budget
    would never reach them anyway, unless robots.txt refuses most of what was admitted).
    """

    def __init__(self, allowed_hosts: Iterable[str], max_depth: int, max_urls: int) -> None:
        self.allowed = frozenset(h for h in (canonical_host(a) for a in allowed_hosts) if h)
        self.max_depth = max_depth
        self.max_urls = max_urls
        self._seen: set[str] = set()
        self._levels: dict[int, list[str]] = {}

    def allows(self, url: str) -> bool:
        return host_of(url) in self.allowed

    def add(self, url: str, depth: int) -> bool:
        """Admits a normalised URL found at ``depth``; False if out of bounds or already seen."""
        if depth > self.max_depth or url in self._seen or not self.allows(url):
            return False
        if len(self._seen) >= self.max_urls:
            return False
        self._seen.add(url)
        self._levels.setdefault(depth, []).append(url)
        return True

    def mark_seen(self, url: str) -> None:
        """A URL reached another way (a redirect target): never visit it again."""
        self._seen.add(url)

    def take_level(self) -> tuple[int, list[str]] | None:
        """Removes and returns the shallowest pending level, or None when the crawl is done."""
        if not self._levels:
            return None
        depth = min(self._levels)
        return depth, self._levels.pop(depth)


class HostQueue:
    """One level's URLs grouped by host; a worker takes the URL whose host is free soonest, so
    one slow (or strictly rate-limited) host never keeps every worker waiting."""

    def __init__(self, urls: Iterable[str]) -> None:
        self._by_host: dict[str, deque[str]] = {}
        for url in urls:
            self._by_host.setdefault(host_of(url), deque()).append(url)

    def __len__(self) -> int:
        return sum(len(q) for q in self._by_host.values())

    def pop(self, ready_at: Callable[[str], float]) -> str | None:
        """The next URL of the host with the earliest ``ready_at`` (ties: first listed), or None."""
        if not self._by_host:
            return None
        host = min(self._by_host, key=ready_at)
        queue = self._by_host[host]
        url = queue.popleft()
        if not queue:
            del self._by_host[host]
        return url
