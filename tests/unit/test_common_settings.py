import pytest
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings, load_settings


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VS_DEMO_", extra="ignore", populate_by_name=True)

    backend_addr: str = Field(min_length=1)


def test_load_settings_names_each_bad_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VS_DEMO_BACKEND_ADDR", raising=False)
    monkeypatch.setenv("VS_DEMO_PORT", "70000")
    monkeypatch.setenv("VS_LOG_LEVEL", "INFO")
    with pytest.raises(SystemExit) as exc:
        load_settings(DemoSettings)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "VS_DEMO_BACKEND_ADDR: Field required" in err
    assert "VS_DEMO_PORT: Input should be less than or equal to 65535" in err


def test_shared_settings_use_the_stack_wide_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VS_DEMO_BACKEND_ADDR", "localhost:1")
    monkeypatch.setenv("VS_MODELS_DIR", "/models")
    settings = load_settings(DemoSettings)
    assert str(settings.models_dir) == "/models"
    assert settings.backend_addr == "localhost:1"
