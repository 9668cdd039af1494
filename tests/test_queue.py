"""The job queue end to end: real Redis (AOF), real arq GPU worker processes (tiny preset, CPU),
real SQLite, the real service and watcher. Only the chat platform is a stand-in
(:class:`RecordingFrontend`), recording what a user would see.

Covers the happy path, two workers sharing a queue, a worker killed mid-job, a Redis restart,
a bot restart (also in the middle of an upload), job timeouts and a worker whose pipeline hangs
past its timeout, duplicate enqueues, cancels, per-user limits, queue waits past the limit, a
queue that lost its data, failures reported by a worker or by the platform, the limits workers
announce, and arq's health check.

"Ran exactly once" is read from the workers' own logs (arq logs a line each time a worker
starts a job), over every worker process the module ever started. Jobs that must still be
running when a test acts are held at a stage by the workers' explicit test hook
(:class:`tests.workers.StageHolds`), never assumed to take long enough.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import msgpack
import pytest
from arq import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix

from bot.delivery import DeliveryError, Progress, VideoResult
from bot.service import Actor, Service, UserFacingError
from bot.watcher import JobWatcher
from config import Settings, load_settings
from config.settings import Platform
from gpu_worker.capabilities import WORKER_KEY_PREFIX, WorkerCapabilities, live_workers
from gpu_worker.protocol import GENERATE_VIDEO, QUEUE_NAME, create_queue_pool
from gpu_worker.worker import STOPPING_RENEW_EVERY_S
from storage import Database, Job, JobStatus, NewJob
from tests.conftest import Clock, RedisServer, ffprobe, free_port
from tests.job_helpers import ledger_kinds
from tests.workers import ARQ, REPO, StageHolds, WorkerPool, WorkerProcess, wait_ready

pytestmark = pytest.mark.slow

JOB_TIMEOUT_S = 15  # a killed worker's job runs again after JOB_TIMEOUT_S + 10 s
SETTLE_S = 90.0  # generous: two cores, shared with other people's tests
PROMPT = "a storm over a lighthouse, thunder"
ALICE = Actor("telegram", "1001", "alice")
BOB = Actor("telegram", "1002", "bob")
CAROL = Actor("telegram", "1003", "carol")
HEALTH_KEY = QUEUE_NAME + ":health-check"
WORKER_MAX_CLIP_SECONDS = 60  # above what the tiny preset makes (30.125 s): workers warn
TIMED_OUT = "Your video took too long to generate and was stopped. You were not charged."


def is_worker_state(key: str) -> bool:
    """The workers' own records (health, announced limits), which they rewrite by themselves,
    and what a clip's buttons need, kept on purpose until it expires (gpu_worker.clip_store)."""
    return (key == HEALTH_KEY or key.startswith(WORKER_KEY_PREFIX)
            or key.startswith(("talkies:clip:", "talkies:stems:"))
            or key in ("talkies:clips", "talkies:clip-bytes"))


# -- the stand-in chat platform -----------------------------------------------------------------
class RecordingFrontend:
    """Implements :class:`bot.delivery.Frontend` by recording what the user would see."""

    platform: Platform = "telegram"

    def __init__(self) -> None:
        self.progress: list[Progress] = []
        self.deliveries: list[tuple[Job, VideoResult, str]] = []
        self.failures: list[tuple[Job, str]] = []
        self.refuse_uploads: str | None = None  # raise DeliveryError with this message
        self.hold_delivering: asyncio.Event | None = None  # "delivering" waits for it
        self.before_upload: Callable[[Job], Awaitable[None]] | None = None
        self.before_failure: Callable[[Job], Awaitable[None]] | None = None
        self.lookups: list[str] = []  # job ids the watcher asked about (find_delivered)

    async def find_delivered(self, job: Job) -> bool | None:
        self.lookups.append(job.id)
        return bool(self.delivered(job.id))  # this stand-in platform knows what it received

    async def show_progress(self, job: Job, progress: Progress) -> None:
        self.progress.append(progress)
        if progress.state == "delivering" and self.hold_delivering is not None:
            await self.hold_delivering.wait()  # like a rate-limited edit

    async def deliver(self, job: Job, video: VideoResult, caption: str) -> None:
        if self.before_upload is not None:
            await self.before_upload(job)
        if self.refuse_uploads:
            raise DeliveryError(self.refuse_uploads)
        self.deliveries.append((job, video, caption))

    async def report_failure(self, job: Job, message: str) -> None:
        if self.before_failure is not None:
            await self.before_failure(job)
        self.failures.append((job, message))

    # -- for the tests ---------------------------------------------------------------------
    def progress_of(self, job_id: str) -> list[Progress]:
        return [p for p in self.progress if p.job_id == job_id]

    def delivered(self, job_id: str) -> list[VideoResult]:
        return [video for _, video, _ in self.deliveries if video.job_id == job_id]

    def failed(self, job_id: str) -> list[str]:
        return [message for job, message in self.failures if job.id == job_id]

    def settled(self, job_id: str) -> bool:
        return bool(self.delivered(job_id) or self.failed(job_id))


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def queue_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """This module's Redis: append-only file on (fsync every second), restartable."""
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis-aof"), appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pool(
    queue_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest,
    stage_holds: StageHolds,
) -> Iterator[WorkerPool]:
    """Worker processes for this module (started on demand); always stopped at the end."""
    workers = WorkerPool(
        queue_redis.url,
        cache_dir=request.config.cache.mkdir("talkies-tiny-models"),  # built once, kept
        log_dir=tmp_path_factory.mktemp("worker-logs"),
        env={
            "TALKIES_JOB_TIMEOUT_S": str(JOB_TIMEOUT_S),
            "TALKIES_WORKER_MAX_TRIES": "3",
            "TALKIES_WORKER_SHUTDOWN_GRACE_S": "2",
            "TALKIES_RESULT_TTL_S": "300",
            "TALKIES_MAX_CLIP_SECONDS": str(WORKER_MAX_CLIP_SECONDS),
            **stage_holds.env,
        },
    )
    try:
        yield workers
    finally:
        workers.stop_all()


@pytest.fixture
async def redis(
    queue_redis: RedisServer, pool: WorkerPool, stage_holds: StageHolds
) -> AsyncIterator[ArqRedis]:
    """The bots' queue pool on this module's Redis, emptied for each test."""
    if queue_redis.process is None:  # a test stopped it and failed before starting it again
        queue_redis.start()
    queue = await create_queue_pool(queue_redis.url)
    keys = [key for key in await queue.keys("*") if not is_worker_state(key.decode())]
    if keys:  # everything but the workers' own records (they rewrite them every 10 s)
        await queue.delete(*keys)
    yield queue
    stage_holds.release()  # a test may have held a stage
    for worker in pool.workers:
        worker.resume()  # a test may have paused some
    await queue.aclose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        _env_file=None, database_path=tmp_path / "talkies.sqlite3", cache_dir=tmp_path / "cache",
        max_clip_seconds=30,
    )


@pytest.fixture
def service(settings: Settings, db: Database, redis: ArqRedis) -> Service:
    return Service(settings, db, redis)


@pytest.fixture
def frontend() -> RecordingFrontend:
    return RecordingFrontend()


@pytest.fixture
async def watcher(service: Service, redis: ArqRedis, frontend: RecordingFrontend) -> AsyncIterator[JobWatcher]:
    running = JobWatcher(service, frontend, poll_interval_s=0.2)
    yield running
    await running.close(grace_s=1)


# -- helpers ------------------------------------------------------------------------------------
async def wait_until(
    condition: Callable[[], object | Awaitable[object]], timeout: float, what: str, pool: WorkerPool | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            logs = f"\nworker logs:\n{pool.logs()}" if pool is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{logs}")
        await asyncio.sleep(0.1)


async def wait_settled(
    frontend: RecordingFrontend, job_ids: list[str], pool: WorkerPool, timeout: float = SETTLE_S,
    watchers: tuple[JobWatcher, ...] = (),
) -> None:
    """Every job delivered or refused, and done with: no watcher task follows it any more (so
    nothing more can reach the user) and its settlement is recorded in SQLite."""
    def done() -> bool:
        return all(frontend.settled(j) for j in job_ids) and not any(
            set(job_ids) & watcher.following for watcher in watchers
        )

    await wait_until(done, timeout, f"jobs {job_ids} to settle", pool)


async def balance(service: Service, actor: Actor) -> tuple[int, int]:
    """(available, held) for a user."""
    user_id = await service.credits.user_id(actor.platform, actor.user_id)
    assert user_id is not None
    result = await service.credits.balance(user_id)
    return result.available, result.held


async def assert_delivered_once(
    service: Service, frontend: RecordingFrontend, pool: WorkerPool, job_id: str
) -> None:
    """The job delivered once, on its first try, and charged once."""
    assert len(frontend.delivered(job_id)) == 1 and frontend.failed(job_id) == [], job_id
    assert [tries for _, tries in pool.started(job_id)] == [1], pool.started(job_id)
    assert await ledger_kinds(service, job_id) == ["reserve", "commit"]


async def assert_timed_out_and_refunded(
    service: Service, frontend: RecordingFrontend, job_id: str
) -> None:
    """Alice's job not delivered, refused as timed out, and refunded (her 200 credits back)."""
    assert frontend.delivered(job_id) == []
    assert frontend.failed(job_id) == [TIMED_OUT]
    assert await ledger_kinds(service, job_id) == ["reserve", "refund"]
    assert await balance(service, ALICE) == (200, 0)


async def job_status(service: Service, job_id: str) -> JobStatus:
    job = await service.jobs.get(job_id)
    assert job is not None
    return job.status


async def leftover_keys(redis: ArqRedis) -> set[str]:
    """Keys in Redis other than the workers' own records."""
    return {key.decode() for key in await redis.keys("*") if not is_worker_state(key.decode())}


def assert_msgpack(blob: bytes | None) -> dict[str, object]:
    """arq's envelope, written with our codec: a msgpack map, not a pickle."""
    assert blob is not None
    assert not blob.startswith(b"\x80"), "pickle protocol header: not our codec"
    data = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    assert isinstance(data, dict)
    return data


async def request(service: Service, actor: Actor, seconds: float = 1.0, **options: object) -> str:
    accepted = await service.request_video(actor, PROMPT, seconds=seconds, **options)  # type: ignore[arg-type]
    return accepted.job_id


# -- 1. the happy path ----------------------------------------------------------------------------
async def test_a_video_is_made_delivered_once_and_charged_once(
    pool: WorkerPool, redis: ArqRedis, service: Service, watcher: JobWatcher,
    frontend: RecordingFrontend, tmp_path: Path,
) -> None:
    workers = await pool.ensure(2)
    snapshots: dict[str, bytes | None] = {}

    async def snapshot_result(job: Job) -> None:
        snapshots["result"] = await redis.get(result_key_prefix + job.id)

    frontend.before_upload = snapshot_result
    for worker in workers:
        worker.pause()  # so the watcher sees the job waiting in the queue first
    try:
        job_id = await request(service, ALICE, max_bytes=8_000_000)
        watcher.follow(job_id)
        payload = assert_msgpack(await redis.get(job_key_prefix + job_id))
        assert payload["f"] == GENERATE_VIDEO
        assert payload["a"] == [
            {"job_id": job_id, "kind": "video", "prompt": PROMPT, "seconds": 1.0,
             "seed": payload["a"][0]["seed"], "max_bytes": 8_000_000}  # type: ignore[index]
        ]
        await wait_until(lambda: frontend.progress_of(job_id), 5, "the queued state")
    finally:
        for worker in workers:
            worker.resume()
    await wait_settled(frontend, [job_id], pool, watchers=(watcher,))

    # Progress: queued, then the worker's stages with a percent that never goes back, then
    # the upload.
    shown = frontend.progress_of(job_id)
    states = [p.state for p in shown]
    assert states[0] == "queued" and shown[0].queue_position == 1, shown
    assert states[-1] == "delivering", shown
    assert set(states[1:-1]) == {"running"}, shown
    percents = [p.percent for p in shown if p.percent is not None]
    assert len(percents) >= 2 and percents == sorted(percents), shown
    assert any(p.stage for p in shown if p.state == "running"), shown

    # Delivered exactly once: a real H.264 + AAC MP4.
    assert frontend.failed(job_id) == []
    [video] = frontend.delivered(job_id)
    probe = ffprobe(video.mp4, tmp_path)
    codecs = sorted((s["codec_type"], s["codec_name"]) for s in probe["streams"])  # type: ignore[union-attr,index]
    assert codecs == [("audio", "aac"), ("video", "h264")]
    assert video.duration_s > 0 and (video.width, video.height) == (128, 128)
    [(_, _, caption)] = frontend.deliveries
    assert PROMPT in caption and "180 credits left" in caption

    # Charged once, after delivery; the result travelled as msgpack; Redis is left clean.
    assert await balance(service, ALICE) == (180, 0)
    assert await ledger_kinds(service, job_id) == ["reserve", "commit"]
    assert await job_status(service, job_id) is JobStatus.DONE
    result = assert_msgpack(snapshots["result"])
    assert result["s"] is True and isinstance(result["r"]["mp4"], bytes)  # type: ignore[index]
    assert await leftover_keys(redis) == set()
    assert [tries for _, tries in pool.started(job_id)] == [1]


# -- 2. two workers share the queue ---------------------------------------------------------------
async def test_two_workers_drain_the_queue_running_each_job_once(
    pool: WorkerPool, redis: ArqRedis, service: Service, watcher: JobWatcher,
    frontend: RecordingFrontend,
) -> None:
    workers = await pool.ensure(2)
    job_ids = [await request(service, actor) for actor in (ALICE, BOB, CAROL) for _ in range(2)]
    for job_id in job_ids:
        watcher.follow(job_id)
    await wait_settled(frontend, job_ids, pool, watchers=(watcher,))

    for job_id in job_ids:
        await assert_delivered_once(service, frontend, pool, job_id)
    ran_by = {name for job_id in job_ids for name, _ in pool.started(job_id)}
    assert ran_by == {w.name for w in workers}, "both workers should have taken jobs"
    for actor in (ALICE, BOB, CAROL):
        assert await balance(service, actor) == (160, 0)
    assert await leftover_keys(redis) == set()


# -- 3. a worker dies mid-job -----------------------------------------------------------------------
async def test_a_worker_killed_mid_job_hands_the_job_to_another(
    pool: WorkerPool, redis: ArqRedis, service: Service, watcher: JobWatcher,
    frontend: RecordingFrontend, stage_holds: StageHolds,
) -> None:
    await pool.ensure(2)
    stage_holds.hold("video")  # mid-job for as long as this test needs, on any machine
    job_id = await request(service, ALICE)
    watcher.follow(job_id)
    await stage_holds.wait_held("video", job_id, SETTLE_S)
    [(victim_name, first_try)] = pool.started(job_id)
    assert first_try == 1
    victim = next(w for w in pool.workers if w.name == victim_name)
    victim.kill()
    stage_holds.release("video")
    assert await redis.exists(result_key_prefix + job_id) == 0
    with pytest.raises(UserFacingError) as refused:  # it is running: no cancelling any more
        await service.cancel_job(ALICE, job_id)
    assert refused.value.code == "not_cancellable"
    pool.spawn()  # back to two workers for later tests, starting while we wait

    await wait_settled(frontend, [job_id], pool, timeout=JOB_TIMEOUT_S + 10 + SETTLE_S, watchers=(watcher,))
    runs = sorted(pool.started(job_id), key=lambda run: run[1])  # by try, not by worker name
    assert runs[0] == (victim_name, 1) and len(runs) == 2, runs
    assert runs[1][0] != victim_name and runs[1][1] == 2, runs
    delivered, failed = frontend.delivered(job_id), frontend.failed(job_id)
    assert len(delivered) + len(failed) == 1, (delivered, failed)
    if delivered:
        assert await ledger_kinds(service, job_id) == ["reserve", "commit"]
        assert await balance(service, ALICE) == (180, 0)
    else:  # never charged without a delivery, and told why
        assert "not charged" in failed[0]
        assert await ledger_kinds(service, job_id) == ["reserve", "refund"]
        assert await balance(service, ALICE) == (200, 0)


# -- 4. Redis restarts with jobs in the queue ------------------------------------------------------
async def test_a_redis_restart_loses_no_job(
    pool: WorkerPool, redis: ArqRedis, queue_redis: RedisServer, service: Service,
    watcher: JobWatcher, frontend: RecordingFrontend,
) -> None:
    workers = await pool.ensure(2)
    job_ids = [await request(service, actor) for actor in (ALICE, BOB) for _ in range(2)]
    for job_id in job_ids:
        watcher.follow(job_id)
    await wait_until(lambda: any(pool.started(j) for j in job_ids), 30, "a job to start", pool)

    queue_redis.stop()  # SIGTERM: Redis writes and fsyncs its append-only file, then exits
    try:
        with pytest.raises(UserFacingError) as down:
            await request(service, CAROL)
        assert down.value.code == "queue_down" and "not charged" in down.value.user_message
        assert await balance(service, CAROL) == (200, 0)
        await asyncio.sleep(2)
    finally:
        queue_redis.start()

    await wait_settled(frontend, job_ids, pool, watchers=(watcher,))
    for job_id in job_ids:
        await assert_delivered_once(service, frontend, pool, job_id)
    assert all(w.alive() for w in workers), pool.logs()  # they rode it out
    assert await leftover_keys(redis) == set()


# -- 5. the bot restarts -----------------------------------------------------------------------------
async def test_a_bot_restart_mid_job_delivers_once_and_charges_once(
    pool: WorkerPool, redis: ArqRedis, service: Service, frontend: RecordingFrontend,
    stage_holds: StageHolds,
) -> None:
    await pool.ensure(2)
    stage_holds.hold("video")  # the job stays mid-way until the bot has restarted
    first = JobWatcher(service, frontend, poll_interval_s=0.2)
    job_id = await request(service, ALICE)
    first.follow(job_id)
    await stage_holds.wait_held("video", job_id, SETTLE_S)
    await wait_until(
        lambda: any(p.state == "running" for p in frontend.progress_of(job_id)), SETTLE_S,
        "the job to show as running", pool,
    )
    await first.close()
    assert frontend.deliveries == []
    assert await job_status(service, job_id) is JobStatus.RUNNING
    stage_holds.release("video")

    second = JobWatcher(service, frontend, poll_interval_s=0.2)
    try:
        assert await second.resume() == 1
        await wait_settled(frontend, [job_id], pool, watchers=(second,))
    finally:
        await second.close()
    third = JobWatcher(service, frontend, poll_interval_s=0.2)
    assert await third.resume() == 0
    await third.close()

    await assert_delivered_once(service, frontend, pool, job_id)
    assert await balance(service, ALICE) == (180, 0)


async def test_a_bot_stopped_before_the_upload_was_confirmed_uploads_on_restart(
    pool: WorkerPool, redis: ArqRedis, service: Service, frontend: RecordingFrontend,
) -> None:
    await pool.ensure(2)
    frontend.hold_delivering = asyncio.Event()  # the "uploading" edit waits (rate limit)
    first = JobWatcher(service, frontend, poll_interval_s=0.2)
    job_id = await request(service, ALICE)
    first.follow(job_id)
    await wait_until(
        lambda: any(p.state == "delivering" for p in frontend.progress_of(job_id)), SETTLE_S,
        "the upload to begin", pool,
    )
    await first.close(grace_s=0.2)  # the upload never happened
    assert frontend.deliveries == []
    # The claim was given back: still "delivering", but lapsed, so the next start asks the
    # platform whether the upload arrived (it did not) and uploads it.
    assert await job_status(service, job_id) is JobStatus.DELIVERING

    frontend.hold_delivering = None
    second = JobWatcher(service, frontend, poll_interval_s=0.2)
    try:
        assert await second.resume() == 1
        await wait_settled(frontend, [job_id], pool, watchers=(second,))
    finally:
        await second.close()
    assert frontend.lookups == [job_id]
    assert len(frontend.delivered(job_id)) == 1
    assert await ledger_kinds(service, job_id) == ["reserve", "commit"]
    assert await balance(service, ALICE) == (180, 0)


# -- 6. a job that runs too long, and a pipeline that hangs ----------------------------------------
def worker_running(pool: WorkerPool, job_id: str) -> WorkerProcess:
    [(name, _)] = pool.started(job_id)
    return next(w for w in pool.workers if w.name == name)


async def test_a_job_past_the_timeout_is_stopped_and_refunded(
    pool: WorkerPool, redis: ArqRedis, service: Service, watcher: JobWatcher,
    frontend: RecordingFrontend, stage_holds: StageHolds,
) -> None:
    """Held as the SFX start (AudioGen, a stage that once reported nothing) until the worker
    has timed the job out; released, the pipeline stops inside that stage."""
    await pool.ensure(2)
    stage_holds.hold("sfx")
    job_id = await request(service, ALICE)
    watcher.follow(job_id)
    await stage_holds.wait_held("sfx", job_id, SETTLE_S)
    worker = worker_running(pool, job_id)
    await wait_until(
        lambda: f"job {job_id} (try 1) cancelled: stopping its pipeline" in worker.log(),
        JOB_TIMEOUT_S + SETTLE_S, "the worker to time the job out", pool,
    )
    stage_holds.release("sfx")
    await wait_settled(frontend, [job_id], pool, watchers=(watcher,))

    await assert_timed_out_and_refunded(service, frontend, job_id)
    assert [tries for _, tries in pool.started(job_id)] == [1]  # a timeout is not retried
    # The pipeline stopped at its first check in the SFX generation (the prompt asks for
    # thunder, so there is one), and its progress reports were all sent before the result:
    # none brings back the keys the watcher removed.
    assert f"job {job_id} cancelled (try 1); its pipeline stopped during sfx" in worker.log()
    assert await leftover_keys(redis) == set()


async def test_a_worker_that_hangs_past_its_timeout_keeps_the_job_until_it_stops(
    pool: WorkerPool, redis: ArqRedis, service: Service, watcher: JobWatcher,
    frontend: RecordingFrontend, stage_holds: StageHolds,
) -> None:
    """The pipeline hangs in the encode stage (the hook ignores the stop, like a stuck kernel)
    well past the moment arq's in-progress key would have expired: the worker keeps renewing
    it, so the idle second worker never starts the job; once the hang ends the job stops,
    is refunded with a message, and the ledger is exact."""
    workers = await pool.ensure(2)
    stage_holds.hold("encode")
    job_id = await request(service, ALICE)
    watcher.follow(job_id)
    await stage_holds.wait_held("encode", job_id, SETTLE_S)
    hung = worker_running(pool, job_id)
    key = in_progress_key_prefix + job_id
    arq_expiry = time.time() + await redis.pttl(key) / 1000  # job start + timeout + 10 s
    await wait_until(
        lambda: f"job {job_id} (try 1) cancelled: stopping its pipeline" in hung.log(),
        JOB_TIMEOUT_S + SETTLE_S, "the worker to time the job out", pool,
    )
    await wait_until(
        lambda: time.time() > arq_expiry + 2 * STOPPING_RENEW_EVERY_S, JOB_TIMEOUT_S + 10,
        "the moment arq's in-progress key would have expired",
    )
    assert await redis.exists(key) == 1, "the in-progress key was not kept alive"
    assert pool.started(job_id) == [(hung.name, 1)]
    assert all(w.alive() for w in workers) and len(pool.alive) >= 2  # another worker was free
    assert frontend.settled(job_id) is False

    stage_holds.release("encode")
    await wait_settled(frontend, [job_id], pool, watchers=(watcher,))
    await assert_timed_out_and_refunded(service, frontend, job_id)
    assert pool.started(job_id) == [(hung.name, 1)]
    assert f"job {job_id} cancelled (try 1); its pipeline stopped during encode" in hung.log()
    assert await leftover_keys(redis) == set()


# -- 7. the same job enqueued twice ------------------------------------------------------------------
async def test_a_duplicate_enqueue_runs_once_and_charges_once(
    pool: WorkerPool, redis: ArqRedis, service: Service, watcher: JobWatcher,
    frontend: RecordingFrontend,
) -> None:
    await pool.ensure(2)
    job_id = await request(service, ALICE)
    payload = {"job_id": job_id, "kind": "video", "prompt": PROMPT, "seconds": 1.0, "seed": 1}
    again = await redis.enqueue_job(GENERATE_VIDEO, payload, _job_id=job_id, _queue_name=QUEUE_NAME)
    assert again is None  # arq refuses a job id it already holds
    # Two bot processes following the same job (e.g. an old one still shutting down).
    other = JobWatcher(service, frontend, poll_interval_s=0.2)
    try:
        watcher.follow(job_id)
        watcher.follow(job_id)  # idempotent
        other.follow(job_id)
        await wait_settled(frontend, [job_id], pool, watchers=(watcher, other))
    finally:
        await other.close()
    await assert_delivered_once(service, frontend, pool, job_id)
    assert await balance(service, ALICE) == (180, 0)


# -- 8. cancel ---------------------------------------------------------------------------------------
async def test_a_cancelled_queued_job_is_refunded_and_never_runs(
    pool: WorkerPool, redis: ArqRedis, service: Service, watcher: JobWatcher,
    frontend: RecordingFrontend,
) -> None:
    for worker in pool.alive:
        worker.pause()  # no worker is taking jobs
    job_id = await request(service, ALICE)
    watcher.follow(job_id)
    with pytest.raises(UserFacingError) as not_yours:
        await service.cancel_job(BOB, job_id)
    assert not_yours.value.code == "unknown_job"
    cancelled = await service.cancel_job(ALICE)  # the newest queued one: this one
    assert cancelled.id == job_id and cancelled.status is JobStatus.CANCELLED
    assert await balance(service, ALICE) == (200, 0)
    assert await ledger_kinds(service, job_id) == ["reserve", "refund"]

    # Nothing is left for a worker to run: no queue entry, no payload (a worker that had read
    # the id before the cancel finds no score and skips it).
    assert await leftover_keys(redis) == set()
    for worker in pool.alive:
        worker.resume()
    await pool.ensure(1)
    assert pool.started(job_id) == []
    # The watcher sees the job settled and stops following it, without a word to the user:
    # the cancel command itself answers.
    await wait_until(lambda: not watcher.following, SETTLE_S, "the watcher to let the job go")
    assert frontend.settled(job_id) is False


# -- 9. per-user limit -------------------------------------------------------------------------------
async def test_the_per_user_limit_refuses_clearly_without_charging(
    pool: WorkerPool, redis: ArqRedis, service: Service,
) -> None:
    for worker in pool.alive:
        worker.pause()  # keep the first two queued
    first = await request(service, ALICE)
    second = await request(service, ALICE)
    with pytest.raises(UserFacingError) as refused:
        await request(service, ALICE)
    assert refused.value.code == "too_many_jobs"
    assert refused.value.user_message == (
        "You already have 2 requests in progress (the limit is 2). Wait for one to finish, "
        "then try again; you were not charged."
    )
    assert await balance(service, ALICE) == (160, 40)  # only the two accepted ones are held
    assert await redis.zcard(QUEUE_NAME) == 2
    for job_id in (second, first):
        await service.cancel_job(ALICE, job_id)
    assert await balance(service, ALICE) == (200, 0)


# -- waiting too long, and a queue that forgot the job ----------------------------------------------
async def test_a_job_no_worker_takes_in_time_is_withdrawn_and_refunded(
    pool: WorkerPool, redis: ArqRedis, service: Service, watcher: JobWatcher,
    frontend: RecordingFrontend, clock: Clock,
) -> None:
    for worker in pool.alive:
        worker.pause()  # every worker busy (or gone) for longer than the limit
    job_id = await request(service, ALICE)
    watcher.follow(job_id)
    await wait_until(lambda: frontend.progress_of(job_id), 5, "the queued state")
    clock.advance(seconds=service.settings.max_queue_wait_s + 1)
    await wait_settled(frontend, [job_id], pool, timeout=10, watchers=(watcher,))
    assert frontend.failed(job_id) == [
        "No GPU worker picked up your video in time, so it was cancelled. You were not "
        "charged; please try again later."
    ]
    assert await ledger_kinds(service, job_id) == ["reserve", "refund"]
    assert await job_status(service, job_id) is JobStatus.CANCELLED
    assert await leftover_keys(redis) == set()  # withdrawn: no queue entry, no payload to run
    for worker in pool.alive:
        worker.resume()
    assert pool.started(job_id) == []


async def test_a_job_the_queue_forgot_is_refunded(
    pool: WorkerPool, redis: ArqRedis, service: Service, watcher: JobWatcher,
    frontend: RecordingFrontend,
) -> None:
    for worker in pool.alive:
        worker.pause()
    job_id = await request(service, ALICE)
    watcher.follow(job_id)
    await wait_until(lambda: frontend.progress_of(job_id), 5, "the queued state")
    await redis.delete(*[k for k in await redis.keys("*") if not is_worker_state(k.decode())])
    await wait_settled(frontend, [job_id], pool, timeout=10, watchers=(watcher,))  # e.g. Redis lost its data
    assert frontend.failed(job_id) == [
        "The job queue lost your video (the queue was reset). You were not charged."
    ]
    assert await ledger_kinds(service, job_id) == ["reserve", "refund"]


# -- 10. the worker refuses a job ----------------------------------------------------------------
async def test_a_job_the_worker_refuses_is_refunded_with_its_reason(
    pool: WorkerPool, redis: ArqRedis, service: Service, watcher: JobWatcher,
    frontend: RecordingFrontend,
) -> None:
    await pool.ensure(1)
    snapshots: dict[str, bytes | None] = {}

    async def snapshot_result(job: Job) -> None:
        snapshots[job.id] = await redis.get(result_key_prefix + job.id)

    frontend.before_failure = snapshot_result
    user = await service.credits.ensure_user("telegram", ALICE.user_id)
    payloads = {
        "malformed": {"job_id": "malformed", "prompt": PROMPT},  # no length, no seed
        "too-long": {"job_id": "too-long", "prompt": PROMPT, "seconds": 999.0, "seed": 1},
    }
    for job_id, payload in payloads.items():
        await service.jobs.create(
            NewJob(id=job_id, user_id=user.id, platform="telegram", kind="video", prompt=PROMPT, cost=20),
            max_per_user=5, max_per_server=5,
        )
        await redis.enqueue_job(GENERATE_VIDEO, payload, _job_id=job_id, _queue_name=QUEUE_NAME)
        watcher.follow(job_id)
    await wait_settled(frontend, list(payloads), pool, watchers=(watcher,))

    assert frontend.failed("malformed") == [
        "The request was malformed, so no video was made. You were not charged."
    ]
    [too_long] = frontend.failed("too-long")  # rendered by the bot from the code and numbers
    assert too_long.startswith("Clip length must be more than 0 and at most") and too_long.endswith(
        "on this worker (asked: 999 s). You were not charged."
    )
    for job_id in payloads:
        assert frontend.delivered(job_id) == []
        assert await ledger_kinds(service, job_id) == ["reserve", "refund"]
        result = assert_msgpack(snapshots[job_id])  # the error travelled as plain data
        assert result["s"] is False and result["r"]["error_type"] in ("JobRejected", "PipelineError")  # type: ignore[index]
        assert result["r"]["code"] in ("malformed_request", "bad_length")  # type: ignore[index]
        assert "user_message" not in result["r"]  # type: ignore[operator]
    assert await balance(service, ALICE) == (200, 0)
    assert await leftover_keys(redis) == set()


async def test_an_upload_the_platform_refuses_is_refunded(
    pool: WorkerPool, redis: ArqRedis, service: Service, watcher: JobWatcher,
    frontend: RecordingFrontend,
) -> None:
    await pool.ensure(1)
    frontend.refuse_uploads = "the file is too large for this chat"
    job_id = await request(service, ALICE)
    watcher.follow(job_id)
    await wait_settled(frontend, [job_id], pool, watchers=(watcher,))
    assert frontend.failed(job_id) == [
        "Your video was made but could not be delivered: the file is too large for this chat. "
        "You were not charged."
    ]
    assert await ledger_kinds(service, job_id) == ["reserve", "refund"]
    assert await leftover_keys(redis) == set()


# -- what workers can make ------------------------------------------------------------------------
async def test_workers_announce_their_limits_and_longer_clips_are_refused_without_charge(
    pool: WorkerPool, redis: ArqRedis, db: Database, tmp_path: Path
) -> None:
    workers = await pool.ensure(1)
    host = socket.gethostname()

    async def announced() -> dict[str, WorkerCapabilities]:
        records = {record.worker: record for record in await live_workers(redis)}
        return records if all(f"{host}:{w.pid}" in records for w in workers) else {}

    await wait_until(announced, SETTLE_S, "every live worker's record", pool)
    records = await announced()
    for worker in workers:
        record = records[f"{host}:{worker.pid}"]
        assert (record.preset, record.max_seconds, record.fps, record.width, record.height) == (
            "tiny", 30.125, 8, 128, 128
        )
        assert await redis.ttl(record.key) > 0  # it expires unless the worker refreshes it
        # TALKIES_MAX_CLIP_SECONDS is above what the preset makes: the worker said so at start.
        assert (
            "preset 'tiny' makes clips of at most 30.12 s, less than TALKIES_MAX_CLIP_SECONDS=60"
            in worker.log()
        ), worker.log()

    settings = load_settings(
        _env_file=None, database_path=tmp_path / "talkies.sqlite3", max_clip_seconds=WORKER_MAX_CLIP_SECONDS
    )
    service = Service(settings, db, redis)
    lengths = await service.clip_lengths()
    assert (lengths.min_s, lengths.max_s, lengths.limited_by) == (1.0, 30.12, "tiny")
    await service.show_credits(ALICE)  # signed up: 200 credits
    with pytest.raises(UserFacingError) as refused:
        await request(service, ALICE, seconds=40.0)
    assert refused.value.code == "bad_length"
    assert refused.value.user_message == (
        "Clips can be 1 to 30.12 seconds long (the video model running now, tiny, makes at "
        "most 30.12 s); you asked for 40. You were not charged."
    )
    assert await balance(service, ALICE) == (200, 0)
    assert await redis.zcard(QUEUE_NAME) == 0

    # A worker that stops cleanly takes its record with it.
    extra = pool.spawn()
    await wait_ready([extra])
    extra_key = WORKER_KEY_PREFIX + f"{host}:{extra.pid}"
    assert await redis.exists(extra_key) == 1
    extra.stop()
    assert not extra.alive() and await redis.exists(extra_key) == 0, extra.log()


def test_a_worker_refuses_more_than_one_job_at_a_time(tmp_path: Path) -> None:
    """TALKIES_WORKER_MAX_JOBS=2 would share one diffusers pipeline between jobs: refused at start."""
    import subprocess

    out = subprocess.run(
        [str(ARQ), "gpu_worker.worker.WorkerSettings"], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "TALKIES_WORKER_MAX_JOBS": "2", "TALKIES_REDIS_URL": "redis://127.0.0.1:1/0"},
        timeout=120,
    )
    assert out.returncode != 0
    assert "TALKIES_WORKER_MAX_JOBS=2 is not supported" in out.stdout + out.stderr
    assert "start one worker per GPU" in out.stdout + out.stderr


# -- health check ------------------------------------------------------------------------------------
async def test_arq_health_check_sees_a_running_worker(
    pool: WorkerPool, queue_redis: RedisServer, redis_url: str
) -> None:
    if queue_redis.process is None:
        queue_redis.start()
    await pool.ensure(1)
    redis = await create_queue_pool(queue_redis.url)  # not emptied: keeps the health record
    try:
        await wait_until(lambda: redis.exists(HEALTH_KEY), 15, "a health record", pool)
    finally:
        await redis.aclose()

    async def check(url: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            str(ARQ), "--check", "gpu_worker.worker.WorkerSettings", cwd=REPO,
            env={**os.environ, "TALKIES_REDIS_URL": url},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        return process.returncode or 0, out.decode()

    (ok, ok_out), (bad, bad_out) = await asyncio.gather(
        check(queue_redis.url), check(redis_url)  # the shared test Redis: no worker there
    )
    assert ok == 0 and "Health check successful" in ok_out, ok_out
    assert bad == 1 and "Health check failed" in bad_out, bad_out
