"""The Telegram side of job delivery: status edits, the MP4 upload, failure notices.

:class:`TelegramFrontend` implements :class:`bot.delivery.Frontend` for the job watcher.

* Status edits go through the shared :class:`bot.status_editor.StatusEditor`: at most one
  ``editMessageText`` per message per ``edit_interval_s`` (1.5 s), newest text wins.
* A 429 ``retry_after`` (``telegram.error.RetryAfter``) blocks that chat for the time asked;
  every later call to the chat (edits, replies, uploads) waits for it.
* Uploads show the ``upload_video`` chat action, reply to the user's prompt and carry
  duration, size and ``supports_streaming``; a video over the Bot API's 50 MB limit is
  re-encoded to fit first (:func:`gpu_worker.mux.fit_mp4`).
* An ``/image`` goes as a photo (``sendPhoto``) when it is within Telegram's photo limits
  (10 MB, width + height <= 10000, sides at most 20:1), else as a document (``sendDocument``,
  the file as made, up to the 50 MB upload limit).
* Network errors, timeouts, 5xx and 429 are retryable :class:`DeliveryError` (the watcher
  retries until its deadline); the Bot API can't search a chat, so whether an earlier upload
  arrived is unknown (:meth:`TelegramFrontend.find_delivered` says None: upload again).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from telegram import Bot, InputFile, ReplyParameters
from telegram.constants import ChatAction, FileSizeLimit
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

from bot.delivery import DeliveryError, ImageResult, Job, Progress, Result, VideoResult, reword
from bot.status_editor import Edited, StatusEditor
from gpu_worker.mux import MuxError, fit_mp4

log = logging.getLogger(__name__)

T = TypeVar("T")

UPLOAD_LIMIT_BYTES = int(FileSizeLimit.FILESIZE_UPLOAD)  # 50 MB through the Bot API
PHOTO_LIMIT_BYTES = int(FileSizeLimit.PHOTOSIZE_UPLOAD)  # 10 MB for sendPhoto
PHOTO_MAX_SIDES_SUM = 10_000  # sendPhoto: width + height at most this
PHOTO_MAX_RATIO = 20  # sendPhoto: the longer side at most 20 times the shorter
EDIT_INTERVAL_S = 1.5
MAX_FLOOD_WAIT_S = 120.0  # longer waits than this give up (the watcher refunds)
CHAT_ACTION_EVERY_S = 4.0  # an action shows for 5 s
MAX_CAPTION_CHARS = 1024
MAX_TEXT_CHARS = 4096
UPLOAD_TIMEOUT_S = 120.0  # read/write, per upload request (TALKIES_DELIVERY_REQUEST_TIMEOUT_S)
CONNECT_TIMEOUT_S = 10.0
DONE_TEXT = "Done: your video is below."


def retry_after_seconds(exc: RetryAfter) -> float:
    """``retry_after`` as seconds (python-telegram-bot gives an int or a timedelta)."""
    with warnings.catch_warnings():  # PTB 22 warns that it will become a timedelta
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def fits_photo(image: ImageResult, limit: int = PHOTO_LIMIT_BYTES) -> bool:
    """Whether Telegram takes ``image`` as a photo (else it goes as a document)."""
    short, long = sorted((image.width, image.height))
    return (image.size_bytes <= limit and image.width + image.height <= PHOTO_MAX_SIDES_SUM
            and long <= PHOTO_MAX_RATIO * short)


def clip_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class FloodGate:
    """When each chat may be called again, learned from 429 answers."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._not_before: dict[int, float] = {}

    def block(self, chat_id: int, seconds: float) -> None:
        until = self.clock() + seconds
        self._not_before[chat_id] = max(self._not_before.get(chat_id, 0.0), until)

    def delay(self, chat_id: int) -> float:
        return max(0.0, self._not_before.get(chat_id, 0.0) - self.clock())

    async def wait(self, chat_id: int) -> None:
        while (delay := self.delay(chat_id)) > 0:
            await asyncio.sleep(delay)

    async def call(
        self,
        chat_id: int,
        make: Callable[[], Awaitable[T]],
        *,
        max_wait_s: float = MAX_FLOOD_WAIT_S,
    ) -> T:
        """Run one Bot API call for ``chat_id``, waiting out 429s (re-raised past max_wait_s)."""
        waited = 0.0
        while True:
            delay = self.delay(chat_id)
            if delay > 0:
                if waited + delay > max_wait_s:
                    raise RetryAfter(max(1, round(delay)))
                waited += delay
                await asyncio.sleep(delay)
                continue
            try:
                return await make()
            except RetryAfter as exc:
                seconds = retry_after_seconds(exc)
                log.info("flood control on chat %s: retry after %.0fs", chat_id, seconds)
                self.block(chat_id, seconds)
                if waited + seconds > max_wait_s:
                    raise


@dataclass(frozen=True)
class Target:
    """Where a job's messages go, from ``job.delivery``."""

    chat_id: int
    status_message_id: int | None
    reply_to_message_id: int | None
    thread_id: int | None

    @classmethod
    def of(cls, job: Job) -> Target:
        d = job.delivery

        def opt(key: str) -> int | None:
            return int(d[key]) if d.get(key) is not None else None

        return cls(int(d["chat_id"]), opt("status_message_id"), opt("reply_to_message_id"),
                   opt("thread_id"))

    def reply(self) -> ReplyParameters | None:
        if self.reply_to_message_id is None:
            return None
        return ReplyParameters(self.reply_to_message_id, allow_sending_without_reply=True)


class TelegramFrontend:
    """:class:`bot.delivery.Frontend` over a python-telegram-bot :class:`Bot`."""

    platform = "telegram"

    def __init__(
        self,
        bot: Bot,
        *,
        upload_limit: int = UPLOAD_LIMIT_BYTES,
        edit_interval_s: float = EDIT_INTERVAL_S,
        max_flood_wait_s: float = MAX_FLOOD_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
        upload_timeout_s: float = UPLOAD_TIMEOUT_S,
    ) -> None:
        self.bot = bot
        self.upload_limit = upload_limit
        self.photo_limit = min(PHOTO_LIMIT_BYTES, upload_limit)
        # The buttons under a delivered clip (bot.telegram_buttons.keyboard), when wired.
        self.markup_for: Callable[[Job], Any] | None = None
        self.upload_timeout_s = upload_timeout_s
        self.edit_interval_s = edit_interval_s
        self.max_flood_wait_s = max_flood_wait_s
        self.clock = clock
        self.flood = FloodGate(clock)
        self.editor: StatusEditor[tuple[int, int]] = StatusEditor(
            self._edit, interval_s=edit_interval_s, clock=clock,
            not_before=lambda key: self.flood.delay(key[0]),
        )
        self._uploads = 0
        self._no_uploads = asyncio.Event()
        self._no_uploads.set()

    # -- plain calls with flood control -------------------------------------------------------
    async def call(self, chat_id: int, make: Callable[[], Awaitable[T]]) -> T:
        return await self.flood.call(chat_id, make, max_wait_s=self.max_flood_wait_s)

    async def send_text(
        self, chat_id: int, text: str, *, reply_to: int | None = None, thread_id: int | None = None
    ) -> Any:
        reply = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
        return await self.call(chat_id, lambda: self.bot.send_message(
            chat_id, clip_text(text), reply_parameters=reply, message_thread_id=thread_id,
        ))

    # -- status messages ----------------------------------------------------------------------
    def set_status(self, chat_id: int, message_id: int, text: str, *, final: bool = False) -> None:
        """Queue ``text`` for a status message; edits go out at the allowed pace, newest wins."""
        self.editor.update((chat_id, message_id), clip_text(text), final=final)

    async def settle_status(self, chat_id: int, message_id: int, text: str) -> bool:
        """Show a last ``text`` on a status message and wait for it.

        False when it could not be shown there (message gone, or already settled with
        another text): the caller then sends it as a new message.
        """
        return await self.editor.settle((chat_id, message_id), clip_text(text))

    async def _edit(self, key: tuple[int, int], text: str) -> Edited:
        chat_id, message_id = key
        try:
            await self.bot.edit_message_text(text, chat_id, message_id)
        except RetryAfter as exc:
            self.flood.block(chat_id, retry_after_seconds(exc))
            return Edited.WAIT
        except BadRequest as exc:
            if "not modified" in exc.message.lower():
                return Edited.OK
            log.info("status message %s/%s: %s", chat_id, message_id, exc.message)
            return Edited.GONE  # deleted, too old to edit, ...: stop editing this message
        except Forbidden as exc:
            log.info("chat %s: %s", chat_id, exc.message)
            return Edited.GONE
        except NetworkError as exc:  # transient: retry the newest text after the interval
            log.warning("status edit failed (%s)", exc)
            return Edited.RETRY
        except TelegramError as exc:
            log.warning("status message %s/%s: %s", chat_id, message_id, exc)
            return Edited.GONE
        return Edited.OK

    # -- Frontend -----------------------------------------------------------------------------
    async def show_progress(self, job: Job, progress: Progress) -> None:
        target = Target.of(job)
        if target.status_message_id is None:
            return
        text = reword(progress.text, job.kind)
        current = self.editor.current((target.chat_id, target.status_message_id))
        if current is not None and current.split("\n", 1)[0] == text:
            return  # already says this (perhaps with more detail below)
        self.set_status(target.chat_id, target.status_message_id, text)

    async def deliver(self, job: Job, video: Result, caption: str) -> None:
        self._uploads += 1
        self._no_uploads.clear()
        try:
            await self._deliver(job, video, caption)
        finally:
            self._uploads -= 1
            if self._uploads == 0:
                self._no_uploads.set()

    async def drain(self, timeout_s: float = UPLOAD_TIMEOUT_S) -> bool:
        """Wait for uploads in progress (so a stopping bot doesn't cut one off midway)."""
        try:
            await asyncio.wait_for(self._no_uploads.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def _deliver(self, job: Job, video: Result, caption: str) -> None:
        target = Target.of(job)
        image = isinstance(video, ImageResult)
        action = asyncio.create_task(self._upload_action(
            target, ChatAction.UPLOAD_PHOTO if image else ChatAction.UPLOAD_VIDEO))
        try:
            if isinstance(video, ImageResult):
                await self._send_image(job, target, video, caption)
            else:
                await self._send_video(job, target, video, caption)
        except RetryAfter as exc:
            raise DeliveryError(
                f"Telegram asked us to wait {retry_after_seconds(exc):.0f} s before sending",
                retryable=True,
            ) from None
        except Forbidden:
            raise DeliveryError("the bot can no longer post in this chat") from None
        except BadRequest as exc:
            what = "image" if image else "video"
            raise DeliveryError(f"Telegram refused the {what} ({exc.message})") from None
        except NetworkError as exc:  # also timeouts and 5xx; 413 (too large) is no network error
            too_large = "too large" in exc.message.lower()
            raise DeliveryError(f"the upload to Telegram failed ({exc.message[:200]})",
                                retryable=not too_large) from None
        finally:
            action.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await action
        if target.status_message_id is not None:
            self.set_status(target.chat_id, target.status_message_id, reword(DONE_TEXT, job.kind),
                            final=True)

    def _upload_options(self, job: Job, target: Target, caption: str) -> dict[str, Any]:
        """What every upload carries: caption, buttons, reply, topic and timeouts."""
        return {
            "caption": clip_text(caption, MAX_CAPTION_CHARS),
            "reply_markup": self.markup_for(job) if self.markup_for is not None else None,
            "reply_parameters": target.reply(),
            "message_thread_id": target.thread_id,
            "read_timeout": self.upload_timeout_s,
            "write_timeout": self.upload_timeout_s,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "pool_timeout": CONNECT_TIMEOUT_S,
        }

    async def _send_image(self, job: Job, target: Target, image: ImageResult, caption: str) -> None:
        if image.size_bytes > self.upload_limit:
            raise DeliveryError(f"the image is over Telegram's upload limit "
                                f"({self.upload_limit / 1e6:.0f} MB)")
        options = self._upload_options(job, target, caption)
        send = self.bot.send_photo
        if not fits_photo(image, self.photo_limit):
            log.info("job %s: a %dx%d image of %d bytes is over the photo limits; sending it "
                     "as a document", job.id, image.width, image.height, image.size_bytes)
            send = self.bot.send_document
        await self.call(target.chat_id, lambda: send(
            target.chat_id, InputFile(image.data, filename=image.filename), **options))

    async def _send_video(self, job: Job, target: Target, video: VideoResult, caption: str) -> None:
        fitted = await self._fit(video)
        options = self._upload_options(job, target, caption)
        await self.call(target.chat_id, lambda: self.bot.send_video(
            target.chat_id,
            InputFile(fitted.mp4, filename=video.filename),
            duration=max(1, round(fitted.duration_s)),
            width=fitted.width,
            height=fitted.height,
            supports_streaming=True,
            **options,
        ))

    async def find_delivered(self, job: Job) -> bool | None:
        """The Bot API can't search a chat's history: unknown (the watcher uploads again)."""
        return None

    async def report_failure(self, job: Job, message: str) -> None:
        target = Target.of(job)
        if target.status_message_id is not None:
            if await self.settle_status(target.chat_id, target.status_message_id, message):
                return
        try:
            await self.send_text(target.chat_id, message, reply_to=target.reply_to_message_id,
                                 thread_id=target.thread_id)
        except TelegramError as exc:
            log.warning("job %s: could not tell the user it failed (%s)", job.id, exc)

    async def _fit(self, video: VideoResult) -> VideoResult:
        if video.size_bytes <= self.upload_limit:
            return video
        log.info("job %s: %d bytes is over the %d byte limit; re-encoding",
                 video.job_id, video.size_bytes, self.upload_limit)
        try:
            mp4 = await asyncio.to_thread(fit_mp4, video.mp4, self.upload_limit)
        except MuxError as exc:
            raise DeliveryError(f"{exc.user_message} (Telegram's upload limit)") from None
        return dataclasses.replace(video, mp4=mp4)

    async def _upload_action(self, target: Target, action: ChatAction) -> None:
        """"Sending a video..." (or photo) while uploading; skipped while the chat is in a
        flood wait (every other call respects it, and this one would only prolong it)."""
        while True:
            if self.flood.delay(target.chat_id) <= 0:
                try:
                    await self.bot.send_chat_action(
                        target.chat_id, action, message_thread_id=target.thread_id
                    )
                except RetryAfter as exc:
                    self.flood.block(target.chat_id, retry_after_seconds(exc))
                except TelegramError:
                    pass
            await asyncio.sleep(CHAT_ACTION_EVERY_S)

    async def close(self, grace_s: float = 2.0) -> None:
        """Give last status texts (done, cancelled, failed) a moment, then stop editing."""
        await self.editor.close(grace_s)
