"""URL normalisation, domain and depth rules, and the per-level host queue."""

import pytest

from services.scraper.crawler.frontier import Frontier, HostQueue, normalize_url, origin_of

BASE = "https://Shop.Example/c/bags/index.html?page=2"


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("item.html", "https://shop.example/c/bags/item.html"),
        ("../shoes/", "https://shop.example/c/shoes/"),
        ("/p/1#reviews", "https://shop.example/p/1"),
        ("?page=3", "https://shop.example/c/bags/index.html?page=3"),
        ("//cdn.shop.example/x.jpg", "https://cdn.shop.example/x.jpg"),
        ("HTTP://SHOP.EXAMPLE:80/A/./b/../C", "http://shop.example/A/C"),
        ("https://shop.example:443/", "https://shop.example/"),
        ("https://shop.example:8443", "https://shop.example:8443/"),
        ("https://shop.example./p", "https://shop.example/p"),
        ("/p/red bag", "https://shop.example/p/red%20bag"),
        ("/p/red%20bag", "https://shop.example/p/red%20bag"),
        ("/p/käse", "https://shop.example/p/k%C3%A4se"),
        ("https://bücher.example/", "https://xn--bcher-kva.example/"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("  /p/2  ", "https://shop.example/p/2"),
    ],
)
def test_normalize_url(href: str, expected: str) -> None:
    assert normalize_url(href, BASE) == expected


@pytest.mark.parametrize(
    "href",
    [
        "",
        "#top",
        "mailto:shop@example.com",
        "javascript:alert(1)",
        "ftp://shop.example/file",
        "data:text/html,hi",
        "https://user:pw@shop.example/",
        "https://shop.example:99999/",
        "/" + "a" * 3000,
    ],
)
def test_uncrawlable_links_are_dropped(href: str) -> None:
    assert normalize_url(href, BASE) is None


def test_origin_of() -> None:
    assert origin_of("http://127.0.0.1:8000/a/b?c") == "http://127.0.0.1:8000"


def test_frontier_admits_each_url_once_within_domains_and_depth() -> None:
    frontier = Frontier(["Shop.Example"], max_depth=2, max_urls=100)
    assert frontier.add("https://shop.example/", 0)
    assert not frontier.add("https://shop.example/", 1)  # seen
    assert not frontier.add("https://www.shop.example/", 1)  # a subdomain must be listed itself
    assert not frontier.add("https://other.example/", 1)
    assert frontier.add("http://shop.example:8080/x", 1)  # any scheme and port of an allowed host
    assert not frontier.add("https://shop.example/deep", 3)  # beyond max_depth
    assert frontier.take_level() == (0, ["https://shop.example/"])
    assert frontier.add("https://shop.example/a", 2)
    assert frontier.take_level() == (1, ["http://shop.example:8080/x"])
    assert frontier.take_level() == (2, ["https://shop.example/a"])
    assert frontier.take_level() is None


def test_frontier_memory_bound_and_redirect_targets() -> None:
    frontier = Frontier(["shop.example"], max_depth=5, max_urls=2)
    frontier.mark_seen("https://shop.example/moved")
    assert not frontier.add("https://shop.example/moved", 1)
    assert frontier.add("https://shop.example/1", 1)
    assert not frontier.add("https://shop.example/2", 1)  # max_urls reached (2 seen)


def test_host_queue_takes_the_host_that_is_free_soonest() -> None:
    urls = ["https://a.example/1", "https://a.example/2", "https://b.example/1"]
    queue = HostQueue(urls)
    ready = {"a.example": 5.0, "b.example": 1.0}
    assert len(queue) == 3
    assert queue.pop(lambda host: ready[host]) == "https://b.example/1"
    assert queue.pop(lambda host: ready[host]) == "https://a.example/1"
    assert queue.pop(lambda host: ready[host]) == "https://a.example/2"
    assert queue.pop(lambda host: ready[host]) is None
