"""What bots and GPU workers agree on: queue name, job function names, payload codec.

Payloads and results travel through Redis as msgpack, never pickle (arq's default): whoever
can write to Redis must not be able to run code on a worker or a bot. This module imports
nothing heavy, so bots use it without torch.
"""

from __future__ import annotations

from typing import Any

import msgpack
from arq import ArqRedis, create_pool
from arq.connections import RedisSettings

QUEUE_NAME = "talkies:queue"
GENERATE_VIDEO = "generate_video"


def _encode_extra(obj: Any) -> Any:
    """Types arq may hand us that msgpack lacks: exceptions become plain data, never code."""
    if isinstance(obj, BaseException):
        return {
            "error_type": type(obj).__name__,
            "error": str(obj),
            "user_message": getattr(obj, "user_message", None),
        }
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot serialize {type(obj).__name__} for the job queue")


def serialize(data: dict[str, Any]) -> bytes:
    return msgpack.packb(data, default=_encode_extra, use_bin_type=True)


def deserialize(blob: bytes) -> dict[str, Any]:
    data = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    if not isinstance(data, dict):
        raise ValueError("job data is not a map")
    return data


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


async def create_queue_pool(url: str) -> ArqRedis:
    """The arq pool bots enqueue through: our queue name and the msgpack codec."""
    return await create_pool(
        redis_settings(url),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=QUEUE_NAME,
    )


# -- progress -------------------------------------------------------------------------------
# Workers publish progress two ways: the latest state in a small hash with a TTL (so a bot
# that (re)attaches late reads where the job is) and the same fields on a pub/sub channel (so
# watchers are pushed updates instead of polling). Fields: stage, percent (0-100 overall),
# detail (human text), worker, ts (unix seconds).
PROGRESS_TTL_S = 24 * 3600


def progress_key(job_id: str) -> str:
    return f"talkies:progress:{job_id}"


def progress_channel(job_id: str) -> str:
    return f"talkies:progress-events:{job_id}"
