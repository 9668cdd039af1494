"""A user's video for ``/sound``, as the bot sees it: size before download, headers before queueing.

Frontends call :func:`size_refusal` with the size the platform announces, before they download
anything (Telegram's Bot API can't fetch more than 20 MB at all); the service calls
:func:`check_video` on the downloaded bytes before anything is reserved, so a file that is not
a video, too long, or a decompression bomb is refused at once with no charge. The worker checks
the same things again (it never trusts a payload).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from config.settings import Settings
from gpu_worker.protocol import MAX_SOUND_UPLOAD_BYTES
from gpu_worker.video_input import InputVideoError, VideoLimits, VideoProbe, probe_video

TELEGRAM_DOWNLOAD_LIMIT = 20_000_000  # getFile's limit on the public Bot API
NOT_CHARGED = " You were not charged."


def upload_limit(settings: Settings) -> int:
    return min(settings.sound_max_upload_bytes, MAX_SOUND_UPLOAD_BYTES)


def size_refusal(size: int | None, settings: Settings, *, platform: str) -> str | None:
    """Why an upload of ``size`` bytes can't be used (None: fine, or size unknown)."""
    if size is None:
        return None
    limit = upload_limit(settings)
    if platform == "telegram" and size > TELEGRAM_DOWNLOAD_LIMIT:
        return (f"That video is {size / 1e6:.1f} MB, and Telegram lets bots download files of "
                f"at most 20 MB. Send a shorter or smaller video.{NOT_CHARGED}")
    if size > limit:
        return (f"That video is {size / 1e6:.1f} MB; the most I can take is "
                f"{limit / 1e6:.0f} MB. Send a shorter or smaller video.{NOT_CHARGED}")
    return None


def probe_bytes(video: bytes, limits: VideoLimits) -> VideoProbe:
    with tempfile.TemporaryDirectory(prefix="talkies-upload-") as tmp:
        path = Path(tmp) / "upload"
        path.write_bytes(video)
        return probe_video(path, limits)


async def check_video(video: bytes, settings: Settings) -> VideoProbe:
    """The video's headers, or :class:`~bot.service.UserFacingError` saying what is wrong."""
    from bot.service import UserFacingError

    limits = VideoLimits(max_seconds=settings.max_clip_seconds, max_bytes=upload_limit(settings))
    try:
        return await asyncio.to_thread(probe_bytes, video, limits)
    except InputVideoError as exc:
        raise UserFacingError("bad_video", exc.user_message + NOT_CHARGED) from None
