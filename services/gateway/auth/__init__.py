"""API keys for the gateway: a key store in Redis (keys.py), per-key rate limits and daily quotas
(ratelimit.py), the FastAPI dependency that enforces both (deps.py), their OpenAPI description
(openapi.py) and the ``visualsearch keys`` command (cli.py).

Off unless ``VS_GATEWAY_AUTH_ENABLED=true``: local development and the tests need no key.
"""
