"""A crawl job's spec as the crawler reads it from the job (pure).

The gateway validated the request and stored every field explicitly; this re-checks types and
ranges so a spec written some other way fails the job with a precise message, not a crash.
"""

from dataclasses import dataclass
from typing import Any


class SpecError(ValueError):
    pass


@dataclass(frozen=True)
class CrawlSpec:
    start_urls: tuple[str, ...]
    allowed_domains: tuple[str, ...]
    max_pages: int
    max_depth: int
    rate_per_host: float
    concurrency: int
    source: str
    mode: str = "upsert"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "CrawlSpec":
        return cls(
            start_urls=_strings(raw, "start_urls"),
            allowed_domains=_strings(raw, "allowed_domains"),
            max_pages=_int(raw, "max_pages", 1),
            max_depth=_int(raw, "max_depth", 0),
            rate_per_host=_positive(raw, "rate_per_host"),
            concurrency=_int(raw, "concurrency", 1),
            source=_string(raw, "source"),
            mode=_string(raw, "mode") if "mode" in raw else "upsert",
        )


def _strings(raw: dict[str, Any], name: str) -> tuple[str, ...]:
    value = raw.get(name)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise SpecError(f"{name} must be a non-empty list of strings")
    return tuple(value)


def _string(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value:
        raise SpecError(f"{name} must be a non-empty string")
    return value


def _int(raw: dict[str, Any], name: str, minimum: int) -> int:
    value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{name} must be an integer >= {minimum}")
    return value


def _positive(raw: dict[str, Any], name: str) -> float:
    value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise SpecError(f"{name} must be a number > 0")
    return float(value)
