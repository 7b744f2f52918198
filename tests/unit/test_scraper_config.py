"""The ingest CLI's gateway key: read from VS_API_KEY, sent as X-API-Key, never shown."""

import pytest

from services.scraper.config import ScraperSettings


def test_no_key_sends_no_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VS_API_KEY", raising=False)
    assert ScraperSettings().gateway_headers == {}


def test_the_key_comes_from_vs_api_key_and_stays_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VS_API_KEY", "vs_secret")
    settings = ScraperSettings()
    assert settings.gateway_headers == {"X-API-Key": "vs_secret"}
    assert "vs_secret" not in repr(settings)
