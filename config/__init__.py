"""Settings for every talkies process, from the environment and an optional `.env`."""

from config.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "load_settings"]
