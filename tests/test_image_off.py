"""``TALKIES_IMAGE_PRESET=off`` on the bot side: the setting, the service's refusal (nothing
charged, nothing queued), and both frontends against their fakes (real discord.py and
python-telegram-bot, real SQLite and Redis): no /image in the command lists, /help or /credits,
no image Re-roll button, and a typed /image on Telegram gets the service's refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from arq import ArqRedis

from bot.clip_actions import buttons_for
from bot.service import Actor, Service, UserFacingError
from config import Settings, load_settings
from gpu_worker.protocol import QUEUE_NAME
from storage import Database
from tests.discord_fake import FakeDiscord, answered, opt, running_bot
from tests.telegram_fake import Chat, FakeBotAPI
from tests.test_telegram_bot import ALICE, GROUP, api, make_bot, say, telegram_settings  # noqa: F401

OFF_TEXT = "Images are turned off on this bot. You were not charged."
MEMBER, GUILD = 1001, 7001


@pytest.fixture
def off_settings(tmp_path: Path) -> Settings:
    """The conftest settings, with /image turned off (spelled as an operator might)."""
    return load_settings(
        _env_file=None, database_path=tmp_path / "talkies.sqlite3", discord_operator_ids="900",
        telegram_operator_ids="901", cache_dir=tmp_path / "cache", image_preset=" Off ",
    )


@pytest.fixture
def off_service(off_settings: Settings, db: Database, queue: ArqRedis) -> Service:
    return Service(telegram_settings(off_settings), db, queue)


async def rows(service: Service, table: str) -> list[tuple[object, ...]]:
    async with service.db.reading() as conn:
        cursor = await conn.execute(f"SELECT * FROM {table}")  # noqa: S608 - our own names
        return [tuple(row) for row in await cursor.fetchall()]


async def nothing_changed(service: Service, queue: ArqRedis) -> None:
    assert await rows(service, "jobs") == [] and await rows(service, "ledger") == []
    assert await queue.zcard(QUEUE_NAME) == 0


# -- the setting ------------------------------------------------------------------------------
def test_off_in_any_case_turns_images_off_and_auto_stays_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = load_settings(_env_file=None)
    assert (default.image_preset, default.images_enabled) == ("auto", True)
    assert load_settings(_env_file=None, image_preset="tiny").images_enabled
    monkeypatch.setenv("TALKIES_IMAGE_PRESET", "OFF")
    from_env = load_settings(_env_file=None)
    assert (from_env.image_preset, from_env.images_enabled) == ("off", False)


# -- the service ------------------------------------------------------------------------------
async def test_request_image_is_refused_before_anything_is_charged(
    off_service: Service, queue: ArqRedis,
) -> None:
    alice = Actor("telegram", "1", "alice", server_id="-100")
    with pytest.raises(UserFacingError) as refused:
        await off_service.request_image(alice, "a red fox in snow", size="512x512",
                                        delivery={"chat_id": 5}, max_bytes=10_000_000)
    assert (refused.value.code, refused.value.user_message) == ("images_off", OFF_TEXT)
    await nothing_changed(off_service, queue)  # not even a sign-up
    view = await off_service.show_credits(alice)
    assert view.image_price is None and view.price == 20


async def test_an_old_image_offers_animate_but_no_image_reroll(
    settings: Settings, off_settings: Settings, db: Database, queue: ArqRedis,
) -> None:
    """An image made before images were turned off (or by a worker configured otherwise)."""
    on = Service(settings, db, queue)
    accepted = await on.request_image(Actor("discord", str(MEMBER), "m"), "a harbour at night")
    job = await on.jobs.get(accepted.job_id)
    assert job is not None
    assert [b.label for b in buttons_for(job, on)] == ["Re-roll (2)", "Animate (20)"]
    assert [b.label for b in buttons_for(job, Service(off_settings, db, queue))] == ["Animate (20)"]


# -- Discord ------------------------------------------------------------------------------------
async def test_discord_registers_no_image_command_and_never_mentions_images(
    fake: FakeDiscord, off_settings: Settings, db: Database, queue: ArqRedis,  # noqa: F811
) -> None:
    service = Service(off_settings, db, queue)
    async with running_bot(fake, off_settings, service) as bot:
        names = {c["name"] for c in fake.commands["global"]}
        assert names == {"video", "sound", "credits", "grant", "pool", "cancel", "help", "ban",
                         "unban", "banlist", "audit", "stats"}
        assert len(bot.synced) == len(names)

        help_record = await fake.slash("help")
        await fake.wait_for(lambda: help_record.responded)
        [callback] = fake.find("POST", rf"/interactions/{help_record.id}/{help_record.token}/callback")
        help_text = callback.body["data"]["content"]
        assert "/video" in help_text and "/sound" in help_text
        assert "image" not in help_text.lower() and "Animate" not in help_text

        credits = await answered(fake, await fake.slash("credits", user_id=MEMBER))
        assert "A video costs 20, enough for 10." in credits and "image" not in credits

        # a client still showing /image from an earlier sync gets the stale-command answer
        stale = await fake.slash("image", [opt("prompt", "a red fox")], user_id=MEMBER,
                                 guild_id=GUILD)
        await fake.wait_for(lambda: stale.message is not None)
        assert stale.message is not None and stale.ephemeral
        assert "I don't have that command" in stale.message["content"]
    assert await rows(service, "jobs") == [] and await queue.zcard(QUEUE_NAME) == 0


# -- Telegram -----------------------------------------------------------------------------------
async def test_telegram_hides_image_and_refuses_it_when_typed(
    api: FakeBotAPI, off_service: Service, queue: ArqRedis,  # noqa: F811
) -> None:
    private = Chat.private(ALICE)
    async with make_bot(off_service, api):
        assert api.commands is not None
        names = [c["command"] for c in api.commands]
        assert "image" not in names and {"video", "sound", "credits", "help"} <= set(names)

        help_text = (await say(api, private, ALICE, "/help")).text
        assert "/video" in help_text and "image" not in help_text.lower()
        assert "Animate" not in help_text
        refusals = [(await say(api, chat, ALICE, text)).text for chat, text in [
            (GROUP, "/image a red fox in snow"),
            (GROUP, "/image"),  # the refusal, not the usage
            (private, "image: 1024x576 a red fox"),
            (private, "/image@talkies_test_bot a red fox"),
        ]]
        await nothing_changed(off_service, queue)
        credits = (await say(api, private, ALICE, "/credits")).text
    assert refusals == [OFF_TEXT] * 4
    assert "A video costs 20 credits: enough for 10." in credits and "image" not in credits.lower()
