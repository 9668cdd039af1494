"""The community settings: allow-lists, the settings' ban list, metrics ports, log format."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_settings


def test_community_settings_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKIES_ALLOWED_SERVERS", "7001, 7002")
    monkeypatch.setenv("TALKIES_ALLOWED_CHATS", "-100500,1001")
    monkeypatch.setenv("TALKIES_BANNED_TERMS", "gore, school shooting ,nud*,")
    monkeypatch.setenv("TALKIES_METRICS_PORT_WORKER", "9101")
    monkeypatch.setenv("TALKIES_LOG_FORMAT", "json")
    settings = load_settings(_env_file=None, database_path=tmp_path / "db.sqlite3")
    assert settings.allowed_servers == frozenset({"7001", "7002"})
    assert settings.allowed_chats == frozenset({"-100500", "1001"})
    assert settings.banned_terms == ("gore", "school shooting", "nud*")
    assert settings.metrics_port_worker == 9101 and settings.metrics_port_discord is None
    assert settings.log_format == "json"


def test_defaults_are_open_and_quiet(tmp_path: Path) -> None:
    settings = load_settings(_env_file=None, database_path=tmp_path / "db.sqlite3")
    assert settings.allowed_servers == frozenset() and settings.allowed_chats == frozenset()
    assert settings.banned_terms == () and settings.log_format == "text"
    assert (settings.metrics_port_discord, settings.metrics_port_telegram,
            settings.metrics_port_worker) == (None, None, None)


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("TALKIES_ALLOWED_SERVERS", "7001,general", "TALKIES_ALLOWED_SERVERS"),
        ("TALKIES_METRICS_PORT_TELEGRAM", "70000", "TALKIES_METRICS_PORT_TELEGRAM"),
        ("TALKIES_LOG_FORMAT", "xml", "TALKIES_LOG_FORMAT"),
    ],
)
def test_bad_values_name_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=named):
        load_settings(_env_file=None, database_path=tmp_path / "db.sqlite3")
