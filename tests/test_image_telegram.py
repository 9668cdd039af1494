"""``/image`` on Telegram: the real bot against the fake Bot API, real Redis and SQLite. Bad
sizes and prompts are refused with a clear message before anything is reserved or queued; a
good request is queued with the photo limit; a picture goes as a photo, or as a document when
it is over Telegram's photo limits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from arq import ArqRedis

from bot.delivery import ImageResult
from bot.service import Service
from bot.telegram_frontend import PHOTO_LIMIT_BYTES
from gpu_worker.protocol import QUEUE_NAME
from storage import JobStatus
from tests.job_helpers import job_rows, ledger_rows
from tests.telegram_fake import Chat, FakeBotAPI
from tests.test_image_service import picture
from tests.test_telegram_bot import (  # noqa: F401 (fixtures)
    ALICE,
    GROUP,
    api,
    available,
    make_bot,
    service,
)


# -- refusals: nothing reserved, nothing queued --------------------------------------------------
@pytest.mark.parametrize(("chat", "text", "needle"), [
    (GROUP, "/image 999x999 a red fox in snow", "must be one of 512x512, 768x768, 1024x1024"),
    (GROUP, "/image 1024x1024x3 a red fox", "(got '1024x1024x3')"),
    (Chat.private(ALICE), "image: 10x10 a red fox", "(got '10x10')"),
    (GROUP, "/image a red fox \u202e in snow", "Please remove it"),
    (Chat.private(ALICE), "image: " + "x" * 601, "the limit is 600"),
])
async def test_bad_sizes_and_prompts_are_refused_without_charge(
    api: FakeBotAPI, service: Service, queue: ArqRedis, chat: Chat, text: str, needle: str,
) -> None:
    async with make_bot(service, api):
        message = api.push_message(chat, ALICE, text)
        status = await api.wait_reply(chat.id, message["message_id"])
        await api.wait_for(lambda: needle in status.text)
    assert await job_rows(service) == [] and await ledger_rows(service) == []
    assert await queue.zcard(QUEUE_NAME) == 0


@pytest.mark.parametrize("text", ["/image", "/image 1024x576", "/image@talkies_test_bot   "])
async def test_an_image_command_without_a_prompt_gets_its_usage(
    api: FakeBotAPI, service: Service, queue: ArqRedis, text: str,
) -> None:
    async with make_bot(service, api):
        message = api.push_message(GROUP, ALICE, text)
        reply = await api.wait_reply(GROUP.id, message["message_id"])
    assert reply.text.startswith("Usage: /image <prompt>") and "1024x576" in reply.text
    assert await job_rows(service) == [] and await queue.zcard(QUEUE_NAME) == 0


@pytest.mark.parametrize(("chat", "mention"), [
    (Chat.private(ALICE), ""),  # "image:" in a private chat
    (GROUP, "@talkies_test_bot "),  # a mention then "image:" in a group
])
async def test_image_prefix_queues_an_image_at_the_photo_limit(
    api: FakeBotAPI, service: Service, chat: Chat, mention: str,
) -> None:
    async with make_bot(service, api):
        message = api.push_message(chat, ALICE, f"{mention}Image: 576x1024 a tall lighthouse at dusk")
        status = await api.wait_reply(chat.id, message["message_id"])
        await api.wait_for(lambda: "2 credits reserved" in status.text)
        # without the colon it still asks for a video
        plain = api.push_message(chat, ALICE, f"{mention}image of the sea, no colon")
        await api.wait_reply(chat.id, plain["message_id"])
        await api.wait_for(lambda: len(api.bot_messages(chat.id)) == 2
                           and "20 credits reserved" in api.bot_messages(chat.id)[1].text)
    [(image_id, kind, status_value), (_, other, _)] = await job_rows(service)
    assert (kind, status_value, other) == ("image", JobStatus.QUEUED.value, "video")
    job = await service.jobs.get(image_id)
    assert job is not None and job.prompt == "a tall lighthouse at dusk"
    assert (job.params["width"], job.params["height"]) == (576, 1024)
    assert job.params["max_bytes"] == PHOTO_LIMIT_BYTES
    assert await available(service, ALICE) == 200 - 2 - 20


async def test_help_and_the_command_menu_mention_image(api: FakeBotAPI, service: Service) -> None:
    async with make_bot(service, api):
        message = api.push_message(GROUP, ALICE, "/help")
        reply = await api.wait_reply(GROUP.id, message["message_id"])
        assert api.commands is not None
    assert "image" in [c["command"] for c in api.commands]
    assert "/image [WxH] <prompt>" in reply.text and "image:" in reply.text
    assert "Animate" in reply.text


# -- delivery: a photo, or a document past the photo limits ----------------------------------------
@pytest.mark.parametrize(("width", "height", "noisy", "sent_as"), [
    (768, 512, False, "photo"),
    (2048, 1700, True, "document"),  # over 10 MB of PNG
    (9000, 1200, False, "document"),  # width + height over 10000
])
async def test_a_picture_goes_as_a_photo_or_as_a_document(
    api: FakeBotAPI, service: Service, tmp_path: Path, width: int, height: int, noisy: bool,
    sent_as: str,
) -> None:
    chat = Chat.private(ALICE)
    data = picture(width, height, noisy=noisy, compress_level=1)
    assert (len(data) > PHOTO_LIMIT_BYTES) == (noisy and sent_as == "document")
    async with make_bot(service, api) as bot:
        message = api.push_message(chat, ALICE, "image: a harbour at night")
        status = await api.wait_reply(chat.id, message["message_id"])
        await api.wait_for(lambda: "reserved" in status.text)
        [(job_id, _, _)] = await job_rows(service)
        job = await service.jobs.get(job_id)
        assert job is not None
        result = ImageResult(job_id, data, "png", width, height)
        await bot.frontend.deliver(job, result, "\u201ca harbour at night\u201d")
    sent = api.photos if sent_as == "photo" else api.documents
    assert len(sent) == 1 and len(api.photos) + len(api.documents) == 1
    assert sent[0].data == data and sent[0].filename == f"talkies-{job_id[:8]}.png"
    assert sent[0].params["reply_parameters"]["message_id"] == message["message_id"]
    labels = [b["text"] for b in sent[0].params["reply_markup"]["inline_keyboard"][0]]
    assert labels == ["Re-roll (2)", "Animate (20)"]
    assert [c.params["action"] for c in api.calls_of("sendChatAction")][:1] == ["upload_photo"]
    assert status.text == "Done: your image is below."


async def test_telegram_refuses_an_oversized_photo_itself(api: FakeBotAPI) -> None:
    """The fake holds Telegram's photo rules (so the test above means something)."""
    from telegram import Bot, InputFile
    from telegram.error import BadRequest

    async with Bot(api.token, base_url=api.base_url) as bot:
        for data in (picture(9000, 1200), picture(2048, 1700, noisy=True, compress_level=1)):
            with pytest.raises(BadRequest):
                await bot.send_photo(ALICE.id, InputFile(data, filename="x.png"))
    assert api.photos == []


def test_image_results_name_their_file_by_format() -> None:
    result = ImageResult("ab" * 16, b"x", "jpeg", 1, 1)
    assert result.filename == "talkies-abababab.jpg"
    assert dataclasses.replace(result, format="webp").filename == "talkies-abababab.webp"


async def test_a_result_that_is_not_the_asked_picture_is_refunded_not_sent(
    api: FakeBotAPI, service: Service, queue: ArqRedis,
) -> None:
    """Whatever Redis holds is checked: a valid PNG of another size than asked is refused."""
    from tests.test_delivery_faults import plant_result
    from tests.test_image_service import image_envelope

    chat = Chat.private(ALICE)
    async with make_bot(service, api):
        message = api.push_message(chat, ALICE, "image: 1024x576 a harbour at night")
        status = await api.wait_reply(chat.id, message["message_id"])
        await api.wait_for(lambda: "reserved" in status.text)
        [(job_id, _, _)] = await job_rows(service)
        record = {"image": picture(64, 64), "format": "png", "width": 64, "height": 64}
        await plant_result(queue, job_id, image_envelope(job_id, record))
        await api.wait_for(lambda: "not charged" in status.text)
    assert status.text == ("The finished image failed its checks (its size is wrong), so it was "
                           "not sent. You were not charged.")
    assert await ledger_rows(service) == [("reserve", -2), ("refund", 2)]
    assert api.photos == [] and api.documents == []
