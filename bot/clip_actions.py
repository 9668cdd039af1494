"""The buttons under a delivered clip or image, as business rules.

* **Re-roll** (``/video`` clips): the same prompt and length, a new seed, the video price;
  under an ``/image``: the same prompt and size, a new seed, the image price.
* **New audio**: the same picture, a new audio seed, :attr:`Settings.new_audio_price`; the
  worker re-scores the MP4 it kept (:mod:`gpu_worker.clip_store`) through the ``/sound`` path.
* **Stems**: the clip's music, ambience and SFX as three M4A files; no charge.
* **Animate** (under an ``/image``): a ``/video`` job from the image's prompt at the video
  price. The picture itself does not condition the video (text to video only).
* With ``TALKIES_IMAGE_PRESET=off`` no image Re-roll is offered (an old one is refused by
  :meth:`Service.request_image`, uncharged).

Only the person who asked for the clip may press its buttons. A clip past
``TALKIES_CLIP_TTL_S`` (or dropped from the bounded store) says so instead of failing.
Button data is ``tk:<action>:<job id>`` (fits Telegram's 64 bytes and Discord's custom ids).
A new job's upload limit depends on its kind (Telegram takes 50 MB videos but 10 MB photos),
so frontends hand over :class:`UploadLimits`.
"""

from __future__ import annotations

import asyncio
import io
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import av

from bot.service import Actor, Service, UserFacingError, VideoAccepted, size_text
from gpu_worker.clip_store import STEM_NAMES, clip_kept, read_stems
from storage import Job

REROLL, NEW_AUDIO, STEMS, ANIMATE = "reroll", "newaudio", "stems", "animate"
BUTTON_DATA = re.compile(r"^tk:(reroll|newaudio|stems|animate):([0-9a-f]{32})$")
NOT_YOURS = "Only the person who asked for this clip can use its buttons."
STEM_LABELS = {"music": "music", "ambience": "ambience", "sfx": "sound effects"}
WHAT = {REROLL: "a re-roll", NEW_AUDIO: "new audio", STEMS: "sending its stems",
        ANIMATE: "animating it"}  # each action in words, for "so {what} is not possible any more"


@dataclass(frozen=True)
class UploadLimits:
    """The platform's upload limit in this chat for each kind of result (None: unknown)."""

    video: int | None
    image: int | None


@dataclass(frozen=True)
class Button:
    label: str
    data: str


def button_data(action: str, job_id: str) -> str:
    return f"tk:{action}:{job_id}"


def parse_button(data: str | None) -> tuple[str, str] | None:
    """(action, job id) from a button's data; None when it is not one of ours."""
    match = BUTTON_DATA.match(data or "")
    return (match[1], match[2]) if match else None


def buttons_for(job: Job, service: Service) -> list[Button]:
    """The buttons under ``job``'s delivered clip (Re-roll only where there is a prompt to
    roll again: a ``/sound`` clip's picture is the user's own)."""
    s = service.settings
    if job.kind == "image":  # with /image off (a worker that still made one), Animate only
        reroll = [Button(f"Re-roll ({s.image_price})", button_data(REROLL, job.id))]
        return [*(reroll if s.images_enabled else []),
                Button(f"Animate ({s.video_price})", button_data(ANIMATE, job.id))]
    buttons = []
    if job.kind == "video":
        buttons.append(Button(f"Re-roll ({s.video_price})", button_data(REROLL, job.id)))
    buttons.append(Button(f"New audio ({s.new_audio_price})", button_data(NEW_AUDIO, job.id)))
    buttons.append(Button("Stems", button_data(STEMS, job.id)))
    return buttons


class ClipActions:
    def __init__(self, service: Service) -> None:
        self.service = service

    def _gone(self, what: str, kind: str = "video") -> UserFacingError:
        hours = self.service.settings.clip_ttl_s / 3600
        noun = "image" if kind == "image" else "clip"
        return UserFacingError(
            "unknown_job",
            f"This {noun} is no longer kept ({noun}s are kept for {hours:g} h), so {what} is "
            "not possible any more. You were not charged.",
        )

    async def source(self, actor: Actor, job_id: str, action: str) -> Job:
        """The clip behind a pressed ``action`` button, if it is the presser's and still kept."""
        what = WHAT[action]
        job = await self.service.jobs.get(job_id)
        if job is None or job.platform != actor.platform:
            raise self._gone(what)
        user_id = await self.service.credits.user_id(actor.platform, actor.user_id)
        if job.user_id != user_id:
            raise UserFacingError("not_allowed", NOT_YOURS)
        age = self.service.db.clock() - datetime.fromisoformat(job.created_at)
        if age.total_seconds() > self.service.settings.clip_ttl_s:
            raise self._gone(what, job.kind)
        return job

    async def reroll(
        self, actor: Actor, job: Job, *, delivery: dict[str, Any], limits: UploadLimits
    ) -> VideoAccepted:
        if job.kind == "image":
            size = size_text((int(job.params["width"]), int(job.params["height"])))
            return await self.service.request_image(
                actor, job.prompt, size=size, delivery=delivery, max_bytes=limits.image,
            )
        if job.kind != "video":
            raise UserFacingError("bad_request", "Only clips made from a prompt can be re-rolled.")
        return await self.service.request_video(
            actor, job.prompt, seconds=job.params.get("seconds"), delivery=delivery,
            max_bytes=limits.video,
        )

    async def animate(
        self, actor: Actor, job: Job, *, delivery: dict[str, Any], limits: UploadLimits
    ) -> VideoAccepted:
        """A video from the image's prompt (the default length, a new seed, the video price)."""
        if job.kind != "image":
            raise UserFacingError("bad_request", "Only images can be animated.")
        return await self.service.request_video(
            actor, job.prompt, delivery=delivery, max_bytes=limits.video,
        )

    async def new_audio(
        self, actor: Actor, job: Job, *, delivery: dict[str, Any], limits: UploadLimits
    ) -> VideoAccepted:
        queue = self.service.queue
        if queue is None or not await clip_kept(queue.redis, job.id):
            raise self._gone(WHAT[NEW_AUDIO])
        seconds = float(job.params.get("seconds") or 0.0)
        return await self.service.submit_sound(
            actor, job.prompt, seconds, cost=self.service.settings.new_audio_price,
            extra={"source_job": job.id}, delivery=delivery, max_bytes=limits.video,
        )

    async def run(
        self, action: str, actor: Actor, job: Job, *, delivery: dict[str, Any],
        limits: UploadLimits,
    ) -> VideoAccepted:
        """The job a Re-roll, Animate or New audio press queues."""
        run = {REROLL: self.reroll, ANIMATE: self.animate, NEW_AUDIO: self.new_audio}[action]
        return await run(actor, job, delivery=delivery, limits=limits)

    async def stems(self, job: Job) -> dict[str, bytes]:
        """The clip's stems as M4A files by name (music, ambience, sfx), each checked."""
        queue = self.service.queue
        stems = None if queue is None else await read_stems(queue.redis, job.id)
        if not stems:
            raise self._gone(WHAT[STEMS])
        checked = {name: stems[name] for name in STEM_NAMES if name in stems}
        for data in checked.values():
            await asyncio.to_thread(_check_audio_file, data)
        return checked


def _check_audio_file(data: bytes) -> None:
    """One stereo AAC stream in an MP4 container, or the store was written by someone else."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            streams = [(s.type, s.codec_context.name) for s in container.streams]
    except Exception:  # PyAV's errors for what is not media at all
        streams = []
    if streams != [("audio", "aac")]:
        raise UserFacingError("bad_request", "The stems of this clip could not be read.")
