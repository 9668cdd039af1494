"""Enqueueing in one round trip (:meth:`gpu_worker.queue.JobQueue.enqueue`) writes what arq's
own ``enqueue_job`` writes, refuses a taken id like it, and answers the job's place in the
queue. Real Redis; a real worker taking such a job is covered in ``test_queue.py``."""

from __future__ import annotations

from arq import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import deserialize_job

from gpu_worker.protocol import GENERATE_SOUND, GENERATE_VIDEO, QUEUE_NAME, deserialize
from gpu_worker.queue import JobQueue

PAYLOAD = {"job_id": "j", "kind": "video", "prompt": "rain on a roof", "seconds": 2.0, "seed": 7,
           "max_bytes": None}


async def test_a_job_is_stored_as_arq_stores_it_with_its_place_in_the_queue(
    queue: ArqRedis,
) -> None:
    # Jobs enqueued in the same millisecond tie on their score and Redis orders them by id:
    # ids that sort in the order they are sent keep the positions machine-independent.
    jobs = JobQueue(queue)
    assert await jobs.enqueue("1-ours", PAYLOAD) == 1  # (Redis learns the script here)
    assert await queue.enqueue_job(GENERATE_VIDEO, PAYLOAD, _job_id="2-arqs", _queue_name=QUEUE_NAME)
    await queue.config_resetstat()
    assert await jobs.enqueue("3-third", {**PAYLOAD, "kind": "sound"}, GENERATE_SOUND) == 3
    calls = {name.removeprefix("cmdstat_"): v["calls"] for name, v in
             (await queue.info("commandstats")).items()}
    assert calls["evalsha"] == 1 and not {"watch", "multi", "exec"} & set(calls)  # one trip
    assert await jobs.position("2-arqs") == 2

    ours, arqs = [
        deserialize_job(await queue.get(job_key_prefix + job_id), deserializer=deserialize)
        for job_id in ("1-ours", "2-arqs")
    ]
    assert (ours.function, ours.args, ours.kwargs, ours.job_try) == (
        arqs.function, arqs.args, arqs.kwargs, arqs.job_try
    ) == (GENERATE_VIDEO, [PAYLOAD], {}, None)  # msgpack gives the args tuple back as a list
    scores = dict(await queue.zrange(QUEUE_NAME, 0, -1, withscores=True))
    assert scores[b"1-ours"] == ours.enqueue_time.timestamp() * 1000
    for job_id in ("1-ours", "2-arqs"):  # the same expiry: a day (arq's default) from enqueueing
        assert queue.expires_extra_ms - 60_000 < await queue.pttl(job_key_prefix + job_id) <= (
            queue.expires_extra_ms
        )


async def test_a_taken_id_is_refused_and_nothing_changes(queue: ArqRedis) -> None:
    jobs = JobQueue(queue)
    assert await jobs.enqueue("once", PAYLOAD) == 1
    before = await queue.get(job_key_prefix + "once")
    assert await jobs.enqueue("once", {**PAYLOAD, "prompt": "other"}) is None
    assert await queue.get(job_key_prefix + "once") == before
    await queue.set(result_key_prefix + "done", b"x")  # finished already: its result is kept
    assert await jobs.enqueue("done", PAYLOAD) is None
    assert await queue.zrange(QUEUE_NAME, 0, -1) == [b"once"]
