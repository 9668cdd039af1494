"""What the job watcher hands to a frontend: progress, the finished video or image, failures.

Each frontend (Discord, Telegram) implements :class:`Frontend`; the watcher
(:mod:`bot.watcher`) calls it, and commits or refunds credits from what it returns.
Frontends take :class:`Job` from here (they never import ``storage``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

from bot.sync_figure import SyncFigure
from config.settings import Platform
from gpu_worker.protocol import UserError
from storage import Job

__all__ = [
    "DeliveryError", "Frontend", "ImageResult", "Job", "JobState", "Progress", "Result",
    "VideoResult", "reword",
]

JobState = Literal["queued", "running", "delivering"]


@dataclass(frozen=True)
class Progress:
    """One progress update for a job, ready to show (``text``) or to format yourself."""

    job_id: str
    state: JobState
    queue_position: int | None = None
    stage: str | None = None
    percent: float | None = None
    detail: str | None = None

    @property
    def text(self) -> str:
        if self.state == "queued":
            if self.queue_position:
                return f"Queued: position {self.queue_position}"
            return "Queued: waiting for a GPU worker"
        if self.state == "delivering":
            return "Uploading your video..."
        parts = ["Generating"]
        if self.stage:
            parts.append(f"- {self.stage}")
        if self.percent is not None:
            parts.append(f"({self.percent:.0f}%)")
        if self.detail:
            parts.append(f"- {self.detail}")
        return " ".join(parts)


@dataclass(frozen=True)
class VideoResult:
    job_id: str
    mp4: bytes
    duration_s: float
    width: int
    height: int
    timings: dict[str, float] = field(default_factory=dict)
    sync: SyncFigure | None = None  # placed sound effects and their measured precision

    @property
    def size_bytes(self) -> int:
        return len(self.mp4)

    @property
    def filename(self) -> str:
        return video_filename(self.job_id)


@dataclass(frozen=True)
class ImageResult:
    """A finished ``/image`` job: the picture as the worker encoded it (checked by
    :mod:`bot.results`)."""

    job_id: str
    data: bytes
    format: Literal["png", "webp", "jpeg"]
    width: int
    height: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return len(self.data)

    @property
    def filename(self) -> str:
        extension = "jpg" if self.format == "jpeg" else self.format
        return f"{upload_stem(self.job_id)}.{extension}"


Result = VideoResult | ImageResult


def upload_stem(job_id: str) -> str:
    """The uploaded file's name without its extension: how a frontend recognises its own
    upload later (a video's and an image's alike)."""
    return f"talkies-{job_id[:8]}"


def video_filename(job_id: str) -> str:
    return f"{upload_stem(job_id)}.mp4"


VIDEO_WORD = re.compile(r"\b(?:([Aa]) )?([Vv])ideo(s?)\b")


def reword(text: str, kind: str) -> str:
    """Our texts about a job say "video"; for an ``/image`` job they say "image"."""
    if kind != "image":
        return text

    def image(match: re.Match[str]) -> str:
        article = f"{match[1]}n " if match[1] else ""
        return f"{article}{'I' if match[2] == 'V' else 'i'}mage{match[3]}"

    return VIDEO_WORD.sub(image, text)


class DeliveryError(UserError):
    """The platform refused or lost the upload.

    ``retryable`` (network errors, timeouts, 5xx, 429): the watcher tries again, with backoff,
    until the delivery deadline; otherwise the user is refunded at once.
    """

    code = "delivery"

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class Frontend(Protocol):
    """A chat platform, as the watcher sees it."""

    platform: Platform

    async def show_progress(self, job: Job, progress: Progress) -> None:
        """Edit the user's status message (rate limiting is the frontend's job)."""

    async def deliver(self, job: Job, video: Result, caption: str) -> None:
        """Upload the MP4 (or the image) where ``job.delivery`` says; return only once it is
        confirmed.

        Raise :class:`DeliveryError` when it could not be delivered.
        """

    async def find_delivered(self, job: Job) -> bool | None:
        """Ask the platform whether an earlier upload of this video arrived.

        True: it is there (commit without uploading); False: it is not (upload); None: the
        platform can't tell (upload again: a duplicate beats a charge for nothing).
        Raise :class:`DeliveryError` (retryable) when the platform could not be asked.
        """

    async def report_failure(self, job: Job, message: str) -> None:
        """Tell the user the video failed (they have been refunded)."""
