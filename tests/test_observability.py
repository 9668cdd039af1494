"""Observability end to end: a real Telegram bot process and a real GPU worker (tiny preset,
CPU) on a password-protected Redis, both with JSON logs and Prometheus endpoints.

* the metrics endpoints show the commands, credits, upload, queue wait and stage timings of a
  job once it was delivered;
* every stage line of the worker's log and every watcher line of the bot's carries the job id,
  and neither process prints a secret;
* ``talkies status --json`` reports a queue with one job held mid-run and one waiting.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from arq import ArqRedis
from prometheus_client.parser import text_string_to_metric_families

from bot.service import Actor, Service
from config import load_settings
from gpu_worker.protocol import QUEUE_NAME, create_queue_pool
from gpu_worker.queue import QueueStatus
from storage import Database
from tests.conftest import free_port
from tests.telegram_fake import Chat, FakeBotAPI, User
from tests.test_secrets import (  # noqa: F401 (fixture)
    TELEGRAM_TOKEN,
    Process,
    _env,
    assert_no_secret,
    secret_redis,
    talkies,
)
from tests.workers import StageHolds, WorkerPool, WorkerProcess, wait_ready

pytestmark = pytest.mark.slow
JOB_TIMEOUT_S = 240.0
ALICE = User(1001, "Alice", "alice")
WORKER_METRICS = free_port()


@pytest.fixture(scope="module")
def json_worker(
    secret_redis: str, tiny_model_cache: Path, tmp_path_factory: pytest.TempPathFactory,
    stage_holds: StageHolds,
) -> Iterator[WorkerProcess]:
    """One worker with JSON logs and a metrics port, on the password-protected Redis."""
    pool = WorkerPool(secret_redis, tiny_model_cache, tmp_path_factory.mktemp("logs"), env={
        **stage_holds.env, "TALKIES_LOG_FORMAT": "json", "TALKIES_METRICS_PORT_WORKER":
        str(WORKER_METRICS), "TALKIES_TELEGRAM_TOKEN": TELEGRAM_TOKEN,
    })
    worker = pool.spawn()
    try:
        asyncio.run(wait_ready([worker]))
        yield worker
    finally:
        pool.stop_all()


@pytest.fixture
async def queue(secret_redis: str) -> AsyncIterator[ArqRedis]:
    pool = await create_queue_pool(secret_redis)
    yield pool
    await pool.aclose()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def json_lines(text: str) -> list[dict[str, object]]:
    """The JSON lines of a log (a worker's first lines are arq's own, before our set-up)."""
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


async def test_status_json_on_a_running_queue(
    json_worker: WorkerProcess, stage_holds: StageHolds, secret_redis: str, queue: ArqRedis,
    tmp_path: Path,
) -> None:
    settings = load_settings(_env_file=None, database_path=tmp_path / "talkies.sqlite3",
                             redis_url=secret_redis)
    async with Database(settings.database_path) as db:
        service = Service(settings, db, queue)
        stage_holds.hold("video")
        try:
            running = await service.request_video(Actor("discord", "1"), "rain on a tin roof")
            await stage_holds.wait_held("video", running.job_id, timeout=JOB_TIMEOUT_S)
            waiting = await service.request_video(Actor("discord", "2"), "a slow sunrise")
            run = await Process.start(talkies("status", "--json"), _env(
                tmp_path, TALKIES_REDIS_URL=secret_redis), tmp_path)
            assert await run.finish() == 0
            assert_no_secret(run.output)
            report = json.loads(run.output)
            assert report["redis_reachable"] is True
            assert report["redis_url"].startswith("redis://:***@127.0.0.1:")
            assert report["queue_depth"] == 1
            assert 0 <= report["oldest_queued_age_s"] < 600
            [worker] = report["workers"]
            assert worker["preset"] == "tiny" and worker["worker"].endswith(f":{json_worker.pid}")
            assert report["jobs_running_on_workers"] == 1
            assert report["jobs_unfinished"] == {"queued": 2}  # the bot marks "running" later
            assert report["today"]["jobs_requested"] == 2 and report["today"]["new_users"] == 2
            assert "j_complete=" in (report["arq_health"] or "j_complete=")

            text = await Process.start(talkies("status"), _env(
                tmp_path, TALKIES_REDIS_URL=secret_redis), tmp_path)
            assert await text.finish() == 0
            assert "queue: 1 waiting" in text.output and "preset tiny" in text.output
        finally:
            assert await service.withdraw(waiting.job_id, "test over")
            stage_holds.release()
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while await service.queue.status(running.job_id) is not QueueStatus.complete:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        assert await queue.zcard(QUEUE_NAME) == 0


async def test_metrics_and_json_logs_after_a_delivered_job(
    json_worker: WorkerProcess, secret_redis: str, tmp_path: Path,
) -> None:
    bot_metrics = free_port()
    async with FakeBotAPI(TELEGRAM_TOKEN) as api:
        env = _env(tmp_path, TALKIES_REDIS_URL=secret_redis, TALKIES_TELEGRAM_API_URL=api.base_url,
                   TALKIES_LOG_FORMAT="json", TALKIES_METRICS_PORT_TELEGRAM=str(bot_metrics))
        bot = await Process.start(talkies("telegram"), env, tmp_path)
        try:
            await api.wait_for(lambda: api.calls_of("getUpdates"), timeout=120)
            chat = Chat.private(ALICE)
            api.push_message(chat, ALICE, "a storm over a lighthouse, orchestral score")
            await api.wait_for(lambda: api.videos, timeout=JOB_TIMEOUT_S)
            await api.wait_for(lambda: any("Done" in m.text for m in api.bot_messages(chat.id)),
                               timeout=JOB_TIMEOUT_S)
            async with Database(tmp_path / "talkies.sqlite3") as db:
                async with db.reading() as conn:
                    cursor = await conn.execute("SELECT id, status FROM jobs")
                    [(job_id, status)] = list(await cursor.fetchall())
            deadline = time.monotonic() + 60
            while True:  # delivered: the watcher commits right after the upload
                found = {k[0]: v for k, v in scrape(bot_metrics).items()
                         if k == ("talkies_credits_total", (("kind", "spent"),))}
                if found or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            bot_figures = scrape(bot_metrics)
        finally:
            assert await bot.terminate() == 0

    video_ok = ("talkies_commands_total", (("command", "video"), ("outcome", "ok"),
                                           ("platform", "telegram")))
    assert bot_figures[video_ok] == 1
    assert bot_figures[("talkies_credits_total", (("kind", "spent"),))] == 20
    assert bot_figures[("talkies_credits_total", (("kind", "granted"),))] == 200  # sign-up
    assert bot_figures[("talkies_upload_bytes_count", (("platform", "telegram"),))] == 1
    assert bot_figures[("talkies_upload_bytes_sum", (("platform", "telegram"),))] == len(
        api.videos[0].data)
    assert bot_figures[("talkies_queue_wait_seconds_count", ())] == 1
    assert bot_figures[("talkies_queue_depth", ())] == 0

    worker_figures = scrape(WORKER_METRICS)
    stages = {dict(labels)["stage"]: value for (name, labels), value in worker_figures.items()
              if name == "talkies_job_stage_seconds_count"}
    assert stages["total"] >= 1 and len(stages) >= 4, stages
    assert worker_figures.get(("talkies_job_peak_gpu_memory_bytes_count", ()), 0) == 0  # CPU

    # Logs: JSON, the job id on each line about the job, no secret anywhere.
    assert_no_secret(bot.output)
    assert_no_secret(json_worker.log())
    bot_lines = json_lines(bot.output)
    assert bot_lines and all(line["level"] for line in bot_lines)
    about_job = [line for line in bot_lines if "delivered" in str(line["message"])]
    assert about_job and all(line.get("job_id") == job_id for line in about_job), about_job
    worker_lines = json_lines(json_worker.log())
    stage_lines = [line for line in worker_lines if str(line["message"]).startswith("stage ")
                   and job_id in json.dumps(line)]
    started = [line for line in stage_lines if "started" in str(line["message"])]
    took = [line for line in stage_lines if "took" in str(line["message"])]
    assert len(started) >= 3 and len(took) >= 4, stage_lines
    assert all(line["job_id"] == job_id for line in stage_lines)
    assert status == "done"
