"""A worker with ``TALKIES_IMAGE_PRESET=off`` behind a bot that still offers ``/image`` (the two
configured differently): the real arq worker (tiny video preset, CPU) loads no image model and
refuses the job as ``images_off``; the real Telegram bot (fake Bot API, real Redis and SQLite)
refunds it and tells the user why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.service import Service
from tests.conftest import RedisServer
from tests.telegram_fake import Chat, FakeBotAPI
from tests.test_telegram_bot import ALICE, api, available, make_bot, service  # noqa: F401 (fixtures)
from tests.workers import WorkerPool, WorkerProcess, wait_ready

pytestmark = pytest.mark.slow
SETTLE_S = 180.0  # the worker's start-up (video and audio models) on two shared cores


@pytest.fixture(scope="module")
def off_worker(
    redis_server: RedisServer, tiny_model_cache: Path, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    pool = WorkerPool(redis_server.url, tiny_model_cache, tmp_path_factory.mktemp("off-worker"))
    process = pool.spawn(TALKIES_IMAGE_PRESET="off")
    try:
        yield process
    finally:
        pool.stop_all()


async def test_an_image_job_on_a_worker_with_images_off_is_refused_and_refunded(
    off_worker: WorkerProcess, redis_url: str, api: FakeBotAPI, service: Service,  # noqa: F811
) -> None:
    assert service.settings.images_enabled  # the bot offers /image; the worker can't make one
    await wait_ready([off_worker], timeout=SETTLE_S)
    log = off_worker.log()
    assert "/image is off (TALKIES_IMAGE_PRESET=off): no image model loaded" in log
    assert "image model loaded: preset" not in log

    chat = Chat.private(ALICE)
    async with make_bot(service, api):
        message = api.push_message(chat, ALICE, "image: a red fox in snow")
        status = await api.wait_reply(chat.id, message["message_id"])
        await api.wait_for(lambda: "not charged" in status.text, timeout=SETTLE_S)
    assert status.text == "Images are turned off on this bot. You were not charged."
    [(job_id, tries)] = off_worker.started("generate_image")
    assert tries == 1  # it ran once: a refusal, not a retry
    job = await service.jobs.get(job_id)
    assert job is not None and job.status.value == "failed"
    async with service.db.reading() as conn:
        cursor = await conn.execute("SELECT kind, delta FROM ledger WHERE job_id = ?", (job_id,))
        assert [tuple(row) for row in await cursor.fetchall()] == [("reserve", -2), ("refund", 2)]
    assert await available(service, ALICE) == 200
    assert api.photos == [] and api.documents == []
