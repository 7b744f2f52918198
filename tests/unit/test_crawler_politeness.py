"""Per-host pacing math, robots.txt rules, and the crawl spec the worker reads."""

import pytest

from services.common.fetch import Fetched, FetchError
from services.scraper.crawler.politeness import Pacer
from services.scraper.crawler.robots import ALLOW_ALL, DISALLOW_ALL, parse_robots, rules_from_fetch
from services.scraper.crawler.spec import CrawlSpec, SpecError


def test_reservations_are_spaced_by_the_interval_per_host() -> None:
    pacer = Pacer.per_second(4.0)  # 0.25 s apart
    # Three workers ask at t=10 for the same host: they get consecutive slots, not the same one.
    assert [pacer.reserve("a", 10.0) for _ in range(3)] == [10.0, 10.25, 10.5]
    assert pacer.reserve("b", 10.0) == 10.0  # hosts are independent
    assert pacer.ready_at("a") == 10.75
    assert pacer.reserve("a", 20.0) == 20.0  # idle hosts do not bank credit
    assert pacer.ready_at("never-seen") == 0.0


def test_crawl_delay_slows_a_host_from_its_last_request() -> None:
    pacer = Pacer.per_second(2.0)
    assert pacer.reserve("a", 0.0) == 0.0  # robots.txt
    pacer.slow_down("a", 3.0)  # its Crawl-delay
    assert pacer.reserve("a", 0.1) == 3.0
    assert pacer.reserve("a", 0.1) == 6.0
    pacer.slow_down("a", 0.1)  # never faster than the crawl's own rate
    assert pacer.interval("a") == 3.0
    assert pacer.interval("b") == 0.5


def test_pacer_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="rate"):
        Pacer.per_second(0)


ROBOTS = """
User-agent: *
Disallow: /private/
Disallow: /cart

User-agent: visualsearch-bot
Disallow: /private/
Allow: /private/catalog/
Crawl-delay: 2
"""


def test_robots_rules_for_our_user_agent() -> None:
    rules = parse_robots(ROBOTS)
    assert rules.allowed("https://shop.example/p/1")
    assert rules.allowed("https://shop.example/cart")  # only the * group forbids it
    assert not rules.allowed("https://shop.example/private/secret.html")
    assert rules.allowed("https://shop.example/private/catalog/x")
    assert rules.delay_s() == 2.0


def test_robots_request_rate_and_default_group() -> None:
    rules = parse_robots("User-agent: *\nDisallow: /tmp/\nRequest-rate: 1/5\n")
    assert not rules.allowed("http://h/tmp/x")
    assert rules.delay_s() == 5.0
    assert parse_robots("").delay_s() is None
    assert parse_robots("").allowed("http://h/anything")


def test_robots_availability_rules() -> None:
    assert rules_from_fetch(FetchError("http_status", "returned HTTP 404", 404)) is ALLOW_ALL
    assert rules_from_fetch(FetchError("http_status", "returned HTTP 403", 403)) is ALLOW_ALL
    assert rules_from_fetch(FetchError("http_status", "returned HTTP 503", 503)) is DISALLOW_ALL
    assert rules_from_fetch(FetchError("timeout", "timed out")) is DISALLOW_ALL
    assert rules_from_fetch(FetchError("unreachable", "refused")) is DISALLOW_ALL
    fetched = Fetched("http://h/robots.txt", 200, b"User-agent: *\nDisallow: /\n")
    assert not rules_from_fetch(fetched).allowed("http://h/")
    assert not DISALLOW_ALL.allowed("http://h/")
    assert ALLOW_ALL.allowed("http://h/")


SPEC = {
    "start_urls": ["https://shop.example/"],
    "allowed_domains": ["shop.example"],
    "max_pages": 200,
    "max_depth": 3,
    "rate_per_host": 1.0,
    "concurrency": 4,
    "source": "crawl:shop.example",
    "refresh_interval_s": None,
    "mode": "upsert",
    "schedule_id": "abc",  # fields for other stages are ignored
}


def test_crawl_spec_reads_the_gateway_spec() -> None:
    spec = CrawlSpec.from_dict(SPEC)
    assert spec.start_urls == ("https://shop.example/",)
    assert (spec.max_pages, spec.rate_per_host, spec.source) == (200, 1.0, "crawl:shop.example")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("start_urls", [], "start_urls must be a non-empty list of strings"),
        ("max_pages", 0, "max_pages must be an integer >= 1"),
        ("max_depth", "3", "max_depth must be an integer >= 0"),
        ("rate_per_host", 0, "rate_per_host must be a number > 0"),
        ("concurrency", True, "concurrency must be an integer >= 1"),
        ("source", "", "source must be a non-empty string"),
    ],
)
def test_crawl_spec_errors_are_precise(field: str, value: object, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        CrawlSpec.from_dict({**SPEC, field: value})
    assert str(raised.value) == message
