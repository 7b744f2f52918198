"""``VS_FETCH_ALLOW``: the hosts and networks a URL fetch may reach although they are not public.

Every service that fetches URLs from untrusted input (the gateway's ``image_url`` and
``video_url``, feeds, the crawler, catalog images) refuses loopback, private, link-local and
other non-public addresses (services.common.fetch). Deployments that keep a catalog on an internal
host, and tests that serve from loopback, name exactly what they trust here, instead of switching
the guard off: comma-separated host names (matched exactly, case-insensitively) and IP networks
in CIDR form (a bare address is a /32 or /128).
"""

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# A DNS name: dot-separated labels of letters, digits and hyphens (no wildcards: exact names only).
_HOST = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


@dataclass(frozen=True)
class AllowList:
    hosts: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> "AllowList":
        """``"cdn.internal, 10.1.0.0/16, ::1"`` -> an AllowList; ValueError names a bad entry."""
        hosts: set[str] = set()
        networks: list[Network] = []
        for raw in spec.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if not _HOST.match(entry):
                raise ValueError(f"{raw.strip()!r} is neither a host name nor an IP network (CIDR)")
            hosts.add(entry)
        return cls(frozenset(hosts), tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.hosts or self.networks)

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows_address(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)


def _validated(spec: str) -> str:
    AllowList.parse(spec)  # a bad entry stops the service at start-up, with the entry named
    return spec


# The settings field type: the raw comma-separated text, checked when the settings load.
FetchAllow = Annotated[str, AfterValidator(_validated)]
FETCH_ALLOW_HELP = "hosts and CIDRs that URL fetches may reach although not public (VS_FETCH_ALLOW)"
