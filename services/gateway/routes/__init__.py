"""HTTP routes, grouped by concern: search, the product catalog, and operations."""
