"""Per-host request pacing: at most one request per host every ``interval`` seconds.

Pure scheduling math over a caller-supplied clock. A caller *reserves* the next free slot of a
host before it waits, so concurrent workers never pick the same slot; the interval of a host
can be raised later (robots.txt Crawl-delay), never lowered below the crawl's rate.
"""


class Pacer:
    def __init__(self, interval_s: float) -> None:
        if interval_s < 0:
            raise ValueError("interval_s must be >= 0")
        self.interval_s = interval_s
        self._interval: dict[str, float] = {}  # hosts slower than the default (Crawl-delay)
        self._last: dict[str, float] = {}  # start of each host's latest reserved slot
        self._next: dict[str, float] = {}  # earliest start of each host's next slot

    @classmethod
    def per_second(cls, rate: float) -> "Pacer":
        if rate <= 0:
            raise ValueError("rate must be > 0")
        return cls(1.0 / rate)

    def interval(self, host: str) -> float:
        return self._interval.get(host, self.interval_s)

    def slow_down(self, host: str, interval_s: float) -> None:
        """Spaces this host's requests at least ``interval_s`` apart from now on, counting from
        the slot already reserved (so the request after robots.txt also waits the Crawl-delay)."""
        if interval_s <= self.interval(host):
            return
        self._interval[host] = interval_s
        if host in self._last:
            self._next[host] = self._last[host] + interval_s

    def ready_at(self, host: str) -> float:
        """When the host's next slot starts (0.0 for a host never requested)."""
        return self._next.get(host, 0.0)

    def reserve(self, host: str, now: float) -> float:
        """Books the host's next free slot at or after ``now`` and returns its start time."""
        slot = max(now, self.ready_at(host))
        self._last[host] = slot
        self._next[host] = slot + self.interval(host)
        return slot
