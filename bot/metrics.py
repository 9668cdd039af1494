"""Prometheus metrics of the bots and the workers, served on /metrics when a port is set.

Off by default: each process serves them only when its port is configured
(``TALKIES_METRICS_PORT_DISCORD``, ``_TELEGRAM``, ``_WORKER``; see :func:`serve`). Names:

* ``talkies_commands_total{platform,command,outcome}``: outcome ``ok``, ``refused`` (a
  :class:`~bot.service.UserFacingError`: bad input, no credits, banned...) or ``error``;
* ``talkies_queue_depth``, ``talkies_queue_oldest_age_seconds`` (read from Redis at each
  scrape of a bot's endpoint) and ``talkies_queue_wait_seconds`` (enqueue to a worker's start, seen by the bots);
* ``talkies_job_stage_seconds{stage}`` and ``talkies_job_peak_gpu_memory_bytes`` (workers);
* ``talkies_job_failures_total{side,reason}`` (``side``: bot or worker);
* ``talkies_credits_total{kind}``: granted, spent, refunded;
* ``talkies_upload_bytes{platform}``: sizes of delivered videos.

Only prometheus-client, no torch: the bots import this too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import redis
from arq.constants import in_progress_key_prefix
from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gpu_worker.protocol import QUEUE_NAME

log = logging.getLogger(__name__)

COMMANDS = Counter(
    "talkies_commands", "Commands handled, by kind and outcome", ["platform", "command", "outcome"]
)
QUEUE_WAIT = Histogram(
    "talkies_queue_wait_seconds", "Time from enqueue to a worker's start",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, float("inf")),
)
STAGE_SECONDS = Histogram(
    "talkies_job_stage_seconds", "Time a job spent in each pipeline stage", ["stage"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, float("inf")),
)
PEAK_GPU_MEMORY = Histogram(
    "talkies_job_peak_gpu_memory_bytes", "Peak CUDA memory allocated during a job",
    buckets=tuple(2**30 * g for g in (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 80, 96, 141))
    + (float("inf"),),
)
FAILURES = Counter("talkies_job_failures", "Jobs that failed, by reason", ["side", "reason"])
CREDITS = Counter("talkies_credits", "Credits granted, spent and refunded", ["kind"])
UPLOAD_BYTES = Histogram(
    "talkies_upload_bytes", "Size of each delivered video", ["platform"],
    buckets=tuple(2**20 * m for m in (0.5, 1, 2, 5, 8, 10, 25, 50, 100)) + (float("inf"),),
)


class QueueCollector(Collector):
    """Queue depth and the oldest waiting job's age, read from Redis when scraped."""

    def __init__(self, redis_url: str) -> None:
        self.client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            entries = self.client.zrangebyscore(
                QUEUE_NAME, "-inf", int(time.time() * 1000), withscores=True
            )
            pipe = self.client.pipeline(transaction=False)
            for job, _ in entries:
                pipe.exists(in_progress_key_prefix + job.decode())
            started = pipe.execute() if entries else []
        except (redis.RedisError, OSError) as exc:
            log.warning("metrics: queue figures unavailable (%s)", exc)
            return
        # arq keeps running jobs in the queue's set; their in-progress key tells them apart
        waiting = [score / 1000 for (_, score), running in zip(entries, started) if not running]
        yield GaugeMetricFamily("talkies_queue_depth", "Jobs waiting in the queue",
                                value=len(waiting))
        oldest = max(0.0, time.time() - min(waiting)) if waiting else 0.0
        yield GaugeMetricFamily(
            "talkies_queue_oldest_age_seconds", "Age of the oldest job waiting in the queue",
            value=oldest,
        )


def serve(port: int | None, role: str, redis_url: str | None = None) -> bool:
    """Serve /metrics on ``port`` (all interfaces), with the queue figures when ``redis_url``
    is given; False (and a log line) when off or the port is taken."""
    if port is None:
        return False
    if redis_url is not None:
        REGISTRY.register(QueueCollector(redis_url))
    try:
        start_http_server(port)
    except OSError as exc:
        log.error("%s: metrics not served: port %d: %s", role, port, exc)
        return False
    log.info("%s: metrics on http://0.0.0.0:%d/metrics", role, port)
    return True


def command(platform: str, name: str, outcome: str) -> None:
    COMMANDS.labels(platform, name, outcome).inc()


def credits(kind: str, amount: int) -> None:
    if amount > 0:
        CREDITS.labels(kind).inc(amount)
