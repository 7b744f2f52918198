"""The crawler: a polite, bounded breadth-first crawl that turns shop pages into ingest items.

``stage.run`` consumes the CRAWLS stream (one message per crawl job); ``crawl.Crawl`` walks the
site; ``extract`` finds schema.org Products (JSON-LD, OpenGraph fallback) and links in a page.
"""
