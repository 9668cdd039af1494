"""Settings: defaults, environment parsing, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_settings


def test_defaults_match_the_design(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TALKIES_VIDEO_PRICE", "TALKIES_SIGNUP_GRANT", "TALKIES_DAILY_GRANT"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(_env_file=None)
    assert (settings.video_price, settings.signup_grant, settings.daily_grant) == (20, 200, 100)
    assert (settings.max_jobs_per_user, settings.max_jobs_per_server) == (2, 6)


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TALKIES_VIDEO_PRICE", "35")
    monkeypatch.setenv("TALKIES_TELEGRAM_OPERATOR_IDS", "11, 22,33")
    env_file = tmp_path / ".env"
    env_file.write_text("TALKIES_DISCORD_TOKEN=abc.def\nTALKIES_DATABASE_PATH=/tmp/x.sqlite3\n")
    settings = load_settings(_env_file=env_file)
    assert settings.video_price == 35
    assert settings.telegram_operator_ids == {"11", "22", "33"}
    assert settings.token("discord") == "abc.def"
    assert settings.database_path == Path("/tmp/x.sqlite3")
    assert "abc.def" not in repr(settings)  # tokens are secrets


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TALKIES_VIDEO_PRICE", "twenty"),
        ("TALKIES_DAILY_GRANT", "-1"),
        ("TALKIES_DISCORD_OPERATOR_IDS", "12,abc"),
        ("TALKIES_MAX_JOBS_PER_USER", "0"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings(_env_file=None)
    assert name in str(err.value) and value in str(err.value)


def test_inconsistent_clip_bounds_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKIES_MAX_CLIP_SECONDS", "3")
    with pytest.raises(ConfigError, match="TALKIES_MAX_CLIP_SECONDS"):
        load_settings(_env_file=None)


def test_missing_token_disables_only_that_frontend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TALKIES_DISCORD_TOKEN", raising=False)
    monkeypatch.setenv("TALKIES_TELEGRAM_TOKEN", "123:abc")
    settings = load_settings(_env_file=None)
    problem = settings.frontend_problem("discord")
    assert problem is not None and "TALKIES_DISCORD_TOKEN" in problem
    assert settings.frontend_problem("telegram") is None
    monkeypatch.setenv("TALKIES_TELEGRAM_TOKEN", "   ")
    assert load_settings(_env_file=None).frontend_problem("telegram") is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://127.0.0.1:8081/bot", "http://127.0.0.1:8081/bot"),
        ("https://api.example.org/telegram/bot/", "https://api.example.org/telegram/bot"),
        ("  http://host/bot  ", "http://host/bot"),
        ("", None),
    ],
)
def test_telegram_api_urls_that_work(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str | None
) -> None:
    monkeypatch.setenv("TALKIES_TELEGRAM_API_URL", value)
    assert load_settings(_env_file=None).telegram_api_url == expected


@pytest.mark.parametrize(
    "value",
    ["http://127.0.0.1:8081", "http://127.0.0.1:80x81/bot", "127.0.0.1:8081/bot",
     "ftp://host/bot", "http://host/bot123:ABC", "http:///bot", "http://host/bot?x=1"],
)
def test_a_telegram_api_url_that_cannot_work_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("TALKIES_TELEGRAM_API_URL", value)
    with pytest.raises(ConfigError) as err:
        load_settings(_env_file=None)
    assert "TALKIES_TELEGRAM_API_URL" in str(err.value) and "ending in /bot" in str(err.value)
