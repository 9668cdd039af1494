"""A real bot process for tests: ``python -m tests.bot_process discord|telegram FAKE_URL``.

Settings come from the environment (``TALKIES_*``) exactly as for ``talkies discord`` and
``talkies telegram``, which it then runs (:mod:`bot.app`). The one difference is where the
platform lives: discord.py's REST and gateway are pointed at a fake Discord (what
``FakeDiscord.install`` does in-process), Telegram's Bot API URL at a fake Bot API. Tests
start it, kill it with SIGKILL mid-upload, and start it again.
"""

from __future__ import annotations

import sys

from config import load_settings


def main(platform: str, url: str) -> None:
    settings = load_settings()
    if platform == "discord":
        import discord
        import yarl

        from bot.app import run_discord

        discord.http.Route.BASE = f"{url}/api/v10"
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(
            url.replace("http://", "ws://", 1) + "/gateway"
        )
        run_discord(settings)
    elif platform == "telegram":
        from bot.app import run_telegram

        run_telegram(settings, base_url=url)
    else:
        raise SystemExit(f"unknown platform {platform!r}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
