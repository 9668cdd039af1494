"""Failures by reason, counted on the bot side: a job the queue lost is refunded, reported to
the user and counted as ``talkies_job_failures_total{side="bot",reason="lost"}``."""

from __future__ import annotations

from arq import ArqRedis
from arq.constants import job_key_prefix
from prometheus_client import REGISTRY

from bot.service import Service
from bot.telegram_bot import TelegramBot
from gpu_worker.protocol import QUEUE_NAME
from storage import JobStatus
from tests.telegram_fake import Chat, FakeBotAPI
from tests.test_telegram_bot import ALICE, PROMPT, api, bot, service  # noqa: F401 (fixtures)


def failures(reason: str) -> float:
    return REGISTRY.get_sample_value(
        "talkies_job_failures_total", {"side": "bot", "reason": reason}) or 0.0


def refunded() -> float:
    return REGISTRY.get_sample_value("talkies_credits_total", {"kind": "refunded"}) or 0.0


async def test_a_lost_job_is_counted_by_reason(
    bot: TelegramBot, api: FakeBotAPI, service: Service, queue: ArqRedis
) -> None:
    lost_before, refunded_before = failures("lost"), refunded()
    chat = Chat.private(ALICE)
    message = api.push_message(chat, ALICE, PROMPT)
    status = await api.wait_reply(chat.id, message["message_id"])
    await api.wait_for(lambda: status.text.startswith("Queued"))
    [job] = await service.jobs.unfinished()
    await queue.zrem(QUEUE_NAME, job.id)  # as if Redis lost its data
    await queue.delete(job_key_prefix + job.id)
    await api.wait_for(lambda: "lost your video" in status.text, timeout=30)
    settled = await service.jobs.get(job.id)
    assert settled is not None and settled.status is JobStatus.FAILED
    assert failures("lost") - lost_before == 1
    assert refunded() - refunded_before == 20
