"""talkies bots: platform-neutral service, Discord and Telegram frontends, CLI."""
