"""POST /v1/crawls request and response models: the validation and the OpenAPI schema."""

import contextlib
import ipaddress
import re
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, model_validator

from services.common.catalog import MAX_URL_CHARS, check_absolute_url
from services.gateway.import_schemas import JobOptions

MAX_START_URLS = 100
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def canonical_host(host: str) -> str:
    """Lower-case, no trailing dot, IDNA-encoded; raises ValueError for anything else than a
    host name or an IP address."""
    host = host.strip().rstrip(".").lower()
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"{host!r} is not a valid host name") from None
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{host!r} is not a host name (give a bare host such as shop.example)")
    return host


def _start_url(value: str) -> str:
    check_absolute_url(value)
    canonical_host(urlsplit(value).hostname or "")
    return value


def _domain(value: str) -> str:
    bare = value.strip().strip("[]")
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(bare))
    if any(ch in value for ch in "/:@"):
        raise ValueError("must be a bare host name, without scheme, port or path")
    return canonical_host(value)


StartUrl = Annotated[str, Field(min_length=1, max_length=MAX_URL_CHARS), AfterValidator(_start_url)]
Domain = Annotated[str, Field(min_length=1, max_length=253), AfterValidator(_domain)]


class CrawlRequest(JobOptions):
    start_urls: list[StartUrl] = Field(min_length=1, max_length=MAX_START_URLS)
    allowed_domains: list[Domain] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="hosts the crawl may visit (default: the hosts of start_urls); a subdomain "
        "is crawled only if listed itself",
    )
    max_pages: int = Field(default=200, ge=1, le=10_000, description="pages fetched at most")
    max_depth: int = Field(default=3, ge=0, le=10, description="links followed from a start URL")
    rate_per_host: float = Field(
        default=1.0, gt=0, le=10, description="requests per second per host (robots.txt may lower it)"
    )
    concurrency: int = Field(default=4, ge=1, le=32, description="requests in flight at once")

    @model_validator(mode="after")
    def _defaults_and_scope(self) -> Self:
        hosts = [canonical_host(urlsplit(url).hostname or "") for url in self.start_urls]
        if self.allowed_domains is None:
            self.allowed_domains = list(dict.fromkeys(hosts))
        allowed = set(self.allowed_domains)
        for number, (url, host) in enumerate(zip(self.start_urls, hosts, strict=True)):
            if host not in allowed:
                raise ValueError(
                    f"start_urls[{number}] ({url}) is on {host}, which is not in allowed_domains"
                )
        if self.source is None:
            self.source = f"crawl:{hosts[0]}"
        return self

    def spec(self) -> dict[str, Any]:
        """The job spec, every field explicit, as the crawler reads it."""
        return self.model_dump(mode="json")


class CrawlAccepted(BaseModel):
    job_id: str
    status_url: str = Field(description="GET it for the job's progress and counts")
    errors_url: str = Field(description="GET it for the reason of every page or product that failed")
