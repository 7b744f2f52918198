"""The parts of an HTML page the crawler reads, in one pass of the stdlib parser (pure).

Links, the canonical link, the base URL, <meta> properties, JSON-LD blocks and the robots
meta directives. The parser is forgiving: broken markup yields what could be read.
"""

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_JSON_LD = "application/ld+json"


@dataclass
class PageParts:
    links: list[str] = field(default_factory=list)  # raw href values, in document order
    base: str = ""  # <base href>, first one
    canonical: str = ""  # <link rel=canonical href>, first one
    meta: dict[str, list[str]] = field(default_factory=dict)  # property/name (lower) -> contents
    json_ld: list[str] = field(default_factory=list)  # text of each ld+json script
    title: str = ""
    noindex: bool = False  # <meta name=robots content=noindex>: no products from this page
    nofollow: bool = False  # <meta name=robots content=nofollow>: no links from this page

    def first(self, *names: str) -> str:
        """The first non-empty <meta> content among ``names`` (in order of preference)."""
        for name in names:
            for value in self.meta.get(name, []):
                if value.strip():
                    return value.strip()
        return ""


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts = PageParts()
        self._script: list[str] | None = None  # collecting an ld+json script's text
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {name: value or "" for name, value in attrs}
        if tag == "a" and a.get("href"):
            self.parts.links.append(a["href"])
        elif tag == "link" and "canonical" in a.get("rel", "").lower().split():
            self.parts.canonical = self.parts.canonical or a.get("href", "")
        elif tag == "base":
            self.parts.base = self.parts.base or a.get("href", "")
        elif tag == "meta":
            self._meta(a)
        elif tag == "script" and a.get("type", "").split(";")[0].strip().lower() == _JSON_LD:
            self._script = []
        elif tag == "title":
            self._in_title = True

    def _meta(self, a: dict[str, str]) -> None:
        name = (a.get("property") or a.get("name") or "").strip().lower()
        if not name:
            return
        content = a.get("content", "")
        self.parts.meta.setdefault(name, []).append(content)
        if name in ("robots", "visualsearch-bot"):
            directives = {d.strip() for d in content.lower().split(",")}
            self.parts.noindex |= bool(directives & {"noindex", "none"})
            self.parts.nofollow |= bool(directives & {"nofollow", "none"})

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.parts.json_ld.append("".join(self._script))
            self._script = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script.append(data)
        elif self._in_title:
            self.parts.title += data


def parse_page(html: str) -> PageParts:
    parser = _Parser()
    parser.feed(html)
    parser.close()
    parts = parser.parts
    parts.title = " ".join(parts.title.split())
    return parts


def decode_html(body: bytes, content_type: str) -> str:
    """Text of an HTML body: the charset from Content-Type, else from a <meta> tag, else UTF-8
    (undecodable bytes replaced, so a stray byte never loses the page)."""
    for candidate in (_header_charset(content_type), _meta_charset(body[:2048]), "utf-8"):
        if not candidate:
            continue
        try:
            return body.decode(candidate, errors="replace")
        except LookupError:  # an unknown charset name
            continue
    return body.decode("utf-8", errors="replace")


def _header_charset(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'")
    return ""


def _meta_charset(head: bytes) -> str:
    match = _CHARSET.search(head)
    return match.group(1).decode("ascii") if match else ""


def is_html(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml")
