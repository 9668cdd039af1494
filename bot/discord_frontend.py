"""Discord side of job delivery: the status message, the upload, and failure reports.

Implements :class:`bot.delivery.Frontend` for the job watcher. Everything it needs to reach
the user later lives in ``job.delivery`` (see :func:`delivery_info`), so a restarted bot
finishes jobs started by the previous process:

* progress edits the interaction's original message through the shared
  :class:`bot.status_editor.StatusEditor`: at most one edit per ``edit_interval_s``, newest
  text wins (a 429 is waited out by discord.py);
* the finished MP4 replaces that message's content, re-encoded first if it is over the
  interaction's upload limit, so Discord never rejects it at the end; an ``/image`` arrives
  the same way as an attachment (the worker already fitted it under that limit);
* the interaction token lasts 15 minutes: after that (or if Discord says it is gone) the video
  is posted to the channel, or the user's DMs, with a mention;
* failures are shown only to the user (ephemeral), or by DM once the token has expired;
* asked whether an earlier upload arrived (:meth:`DiscordFrontend.find_delivered`), it looks
  for the file on the original response, then among the bot's recent messages in the
  channel and the user's DMs.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import discord

from bot.delivery import DeliveryError, ImageResult, Job, Progress, Result, reword, upload_stem
from bot.status_editor import Edited, StatusEditor
from config.settings import Platform
from gpu_worker.mux import MuxError, fit_mp4

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # bots, webhooks and interaction responses
TOKEN_LIFETIME_S = 15 * 60
TOKEN_MARGIN_S = 60.0  # stop relying on a token this long before it expires
EDIT_INTERVAL_S = 1.5
MESSAGE_LIMIT = 2000
ORIGINAL = cast(int, "@original")  # Discord's alias for an interaction's first message
TOKEN_GONE_CODES = {10015, 50027}  # Unknown Webhook, Invalid Webhook Token
UNKNOWN_MESSAGE = 10008  # e.g. the user deleted the status message
HISTORY_LOOKBACK = 50  # recent messages searched for an earlier upload
Clock = Callable[[], float]


def delivery_info(interaction: discord.Interaction, now: float) -> dict[str, Any]:
    """What ``job.delivery`` must hold to reach this user later (JSON-safe)."""
    limit = getattr(interaction, "filesize_limit", None) or DEFAULT_UPLOAD_LIMIT
    return {
        "interaction_id": str(interaction.id),
        "application_id": str(interaction.application_id),
        "token": interaction.token,
        "channel_id": str(interaction.channel_id) if interaction.channel_id else None,
        "guild_id": str(interaction.guild_id) if interaction.guild_id else None,
        "user_id": str(interaction.user.id),
        "created_at": min(now, interaction.created_at.timestamp()),
        "attachment_size_limit": int(limit),
    }


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def status_text(job: Job, progress: Progress) -> str:
    seconds = job.params.get("seconds")
    what = f"\u201c{clip(job.prompt, 300)}\u201d" if job.prompt else "your video"  # /sound, no prompt
    if job.kind == "image":
        shape = f" \u00b7 {job.params.get('width')}\u00d7{job.params.get('height')}"
        return clip(f"\U0001f5bc\ufe0f {what}{shape}\n{reword(progress.text, job.kind)}")
    length = f" \u00b7 {float(seconds):g} s" if seconds else ""
    return clip(f"\U0001f3ac {what}{length}\n{progress.text}")


def token_gone(exc: discord.HTTPException) -> bool:
    return exc.code in TOKEN_GONE_CODES or exc.status == 401


@dataclass
class _Target:
    """Where one job's messages go, decoded from ``job.delivery``."""

    application_id: int
    token: str
    channel_id: int | None
    guild_id: int | None
    user_id: int
    created_at: float
    upload_limit: int

    @classmethod
    def of(cls, job: Job) -> _Target:
        d = job.delivery
        return cls(
            application_id=int(d["application_id"]),
            token=str(d["token"]),
            channel_id=int(d["channel_id"]) if d.get("channel_id") else None,
            guild_id=int(d["guild_id"]) if d.get("guild_id") else None,
            user_id=int(d["user_id"]),
            created_at=float(d.get("created_at") or 0.0),
            upload_limit=int(d.get("attachment_size_limit") or DEFAULT_UPLOAD_LIMIT),
        )


class DiscordFrontend:
    """The watcher's view of Discord (see the module docstring)."""

    platform: Platform = "discord"

    def __init__(
        self,
        client: discord.Client,
        *,
        clock: Clock = time.time,
        edit_interval_s: float = EDIT_INTERVAL_S,
        token_lifetime_s: float = TOKEN_LIFETIME_S,
        token_margin_s: float = TOKEN_MARGIN_S,
    ) -> None:
        self.client = client
        self.clock = clock
        self.edit_interval_s = edit_interval_s
        # The buttons under a delivered clip (bot.discord_buttons.ClipButtons), when wired.
        self.view_for: Callable[[Job], discord.ui.View] | None = None
        self.token_lifetime_s = token_lifetime_s
        self.token_margin_s = token_margin_s
        self.editor: StatusEditor[str] = StatusEditor(self._edit_status, interval_s=edit_interval_s)
        self._webhooks: dict[str, discord.Webhook] = {}  # job id -> its interaction's webhook
        self._expiry: dict[str, asyncio.TimerHandle] = {}

    async def close(self) -> None:
        """Stop all status edits (a last text in flight gets a moment)."""
        for handle in self._expiry.values():
            handle.cancel()
        self._expiry.clear()
        await self.editor.close()

    # -- helpers -----------------------------------------------------------------------------
    def _token_deadline(self, job: Job) -> float:
        """When to stop relying on the interaction token (clock seconds)."""
        created = float(job.delivery.get("created_at") or 0.0)
        return created + self.token_lifetime_s - self.token_margin_s

    def token_usable(self, job: Job) -> bool:
        """Whether the interaction token will still be valid for a while."""
        return self.clock() < self._token_deadline(job)

    def _webhook(self, target: _Target) -> discord.Webhook:
        """The interaction's follow-up webhook (what ``Interaction.followup`` builds)."""
        return discord.Webhook.from_state(
            data={"id": target.application_id, "type": 3, "token": target.token},
            state=self.client._connection,
        )

    def _track(self, job: Job) -> None:
        """On a job's first status edit: its webhook, and the note shortly before the token
        expires (after which the message can't be edited and the video goes elsewhere)."""
        if job.id in self._webhooks:
            return
        target = _Target.of(job)
        self._webhooks[job.id] = self._webhook(target)
        where = "in this channel and mention you" if target.guild_id else "here"
        note = (f"_This message can't be updated after 15 minutes: I'll post the video {where} "
                "when it's ready._")
        delay = max(self._token_deadline(job) - self.clock(), 0.0)
        self._expiry[job.id] = asyncio.get_running_loop().call_later(delay, self._expire, job.id, note)

    def _expire(self, job_id: str, note: str) -> None:
        self._expiry.pop(job_id, None)
        if not self.editor.settled(job_id):
            base = self.editor.current(job_id) or ""
            self.editor.update(job_id, clip(f"{base}\n{note}".strip()), final=True)

    async def _edit_status(self, job_id: str, text: str) -> Edited:
        webhook = self._webhooks.get(job_id)
        if webhook is None:
            return Edited.GONE
        try:
            await webhook.edit_message(ORIGINAL, content=text)
        except discord.HTTPException as exc:
            log.warning("status edit failed (%s %s): %s", exc.status, exc.code, exc.text)
            return Edited.GONE if token_gone(exc) or exc.status == 404 else Edited.SKIPPED
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("status edit failed: %s", exc)
            return Edited.SKIPPED
        return Edited.OK

    async def _end_status(self, job: Job) -> discord.Webhook:
        """No more progress edits for ``job``; returns its webhook once one last edit (the
        video, or a cancel note) may go without breaking the pace."""
        handle = self._expiry.pop(job.id, None)
        if handle is not None:
            handle.cancel()
        next_edit_at = await self.editor.stop(job.id)
        webhook = self._webhooks.pop(job.id, None) or self._webhook(_Target.of(job))
        delay = next_edit_at - self.editor.clock()
        if delay > 0:
            await asyncio.sleep(delay)
        return webhook

    # -- Frontend ----------------------------------------------------------------------------
    async def show_progress(self, job: Job, progress: Progress) -> None:
        if self.editor.settled(job.id) or not self.token_usable(job):
            return  # over, or the message can no longer be edited (the result goes elsewhere)
        self._track(job)
        self.editor.update(job.id, status_text(job, progress))

    async def deliver(self, job: Job, video: Result, caption: str) -> None:
        target = _Target.of(job)
        data = await self._fit(video, target.upload_limit)
        webhook = await self._end_status(job)
        if self.token_usable(job):
            try:
                await webhook.edit_message(
                    ORIGINAL, content=clip(caption),
                    attachments=[discord.File(io.BytesIO(data), filename=video.filename)],
                    **self._buttons(job),
                )
                return
            except discord.HTTPException as exc:
                if not token_gone(exc) and exc.code != UNKNOWN_MESSAGE:
                    raise _delivery_error(exc) from exc
                log.info("job %s: status message or token gone (%s); posting elsewhere",
                         job.id, exc.code)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise DeliveryError(f"the upload to Discord failed ({exc})", retryable=True) from exc
        await self._post_elsewhere(
            target, reword(f"your video is ready: {caption}", job.kind),
            lambda: discord.File(io.BytesIO(data), filename=video.filename),
        )

    def _buttons(self, job: Job) -> dict[str, Any]:
        return {} if self.view_for is None else {"view": self.view_for(job)}

    async def find_delivered(self, job: Job) -> bool | None:
        """Whether an upload of this job's video is on Discord (see the module docstring).

        None when a place could not be searched (no permission to read it): can't tell.
        """
        target = _Target.of(job)
        name = upload_stem(job.id)
        if self.token_usable(job):
            try:
                message = await self._webhook(target).fetch_message(ORIGINAL)
                if _carries(message, name):
                    return True
            except discord.NotFound:
                pass  # the status message is gone (or the token): look elsewhere
            except discord.HTTPException as exc:
                if not token_gone(exc):
                    raise _delivery_error(exc) from exc
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise DeliveryError(f"could not reach Discord ({exc})", retryable=True) from exc
        unsure = False
        places: list[int | None] = [None]  # None: the user's DMs
        if target.guild_id is not None and target.channel_id is not None:
            places.insert(0, target.channel_id)
        for channel_id in places:
            try:
                if channel_id is None:
                    where: discord.abc.Messageable = await self.client.create_dm(
                        discord.Object(target.user_id))
                else:
                    where = self.client.get_partial_messageable(channel_id, guild_id=target.guild_id)
                async for message in where.history(limit=HISTORY_LOOKBACK):
                    mine = self.client.user is not None and message.author.id == self.client.user.id
                    if mine and _carries(message, name):
                        return True
            except discord.HTTPException as exc:
                if exc.status >= 500 or exc.status == 429:
                    raise _delivery_error(exc) from exc
                log.info("job %s: can't search %s for the upload (%s)", job.id,
                         channel_id or "the DMs", exc.status)
                unsure = True
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise DeliveryError(f"could not reach Discord ({exc})", retryable=True) from exc
        return None if unsure else False

    async def report_failure(self, job: Job, message: str) -> None:
        target = _Target.of(job)
        command = "/image" if job.kind == "image" else "/video"
        text = clip(reword(f"\u26a0\ufe0f Your video \u201c{clip(job.prompt, 200)}\u201d failed. ",
                           job.kind) + message
                    + ("" if "try again" in message.lower() else f" You can try again with {command}."))
        webhook = await self._end_status(job)
        if self.token_usable(job):
            try:
                await self._delete_original(webhook)
                await webhook.send(text, ephemeral=True, wait=True)
                return
            except discord.HTTPException as exc:
                if not token_gone(exc):
                    raise
        await self._post_elsewhere(target, text, None, prefer_dm=True)

    async def show_cancelled(self, job: Job, text: str) -> None:
        """The user cancelled the job: say so in its status message (if still editable)."""
        webhook = await self._end_status(job)
        if not self.token_usable(job):
            return
        try:
            await webhook.edit_message(ORIGINAL, content=clip(text))
        except discord.HTTPException as exc:
            log.info("job %s: could not mark the message cancelled: %s", job.id, exc)

    # -- internals ---------------------------------------------------------------------------
    async def _fit(self, video: Result, limit: int) -> bytes:
        if isinstance(video, ImageResult):
            if video.size_bytes > limit:
                raise DeliveryError(
                    f"the image is larger than this server's upload limit ({limit / 2**20:.1f} MiB)")
            return video.data
        if video.size_bytes <= limit:
            return video.mp4
        log.warning("job %s: %d bytes is over the %d-byte upload limit; re-encoding",
                    video.job_id, video.size_bytes, limit)
        try:
            return await asyncio.to_thread(fit_mp4, video.mp4, limit)
        except MuxError as exc:
            raise DeliveryError(
                f"the video is larger than this server's upload limit ({limit / 2**20:.1f} MiB) "
                "and could not be shrunk to fit; try a shorter clip"
            ) from exc

    @staticmethod
    async def _delete_original(webhook: discord.Webhook) -> None:
        try:
            await webhook.delete_message(ORIGINAL)
        except discord.NotFound:
            pass

    async def _post_elsewhere(
        self,
        target: _Target,
        text: str,
        make_file: Callable[[], discord.File] | None,
        *,
        prefer_dm: bool = False,
    ) -> None:
        """Post to the interaction's channel (or DM) with a mention; the next place on failure."""
        mentions = discord.AllowedMentions(users=[discord.Object(target.user_id)],
                                           everyone=False, roles=False)
        in_server = target.guild_id is not None and target.channel_id is not None

        async def channel() -> tuple[discord.abc.Messageable, str]:
            assert target.channel_id is not None
            where = self.client.get_partial_messageable(target.channel_id, guild_id=target.guild_id)
            return where, clip(f"<@{target.user_id}> {text}")

        async def direct() -> tuple[discord.abc.Messageable, str]:
            where = await self.client.create_dm(discord.Object(target.user_id))
            return where, clip(text[:1].upper() + text[1:])

        places: list[Callable[[], Awaitable[tuple[discord.abc.Messageable, str]]]]
        if not in_server:
            places = [direct]
        else:
            places = [direct, channel] if prefer_dm else [channel, direct]
        last: Exception | None = None
        for place in places:
            try:
                where, content = await place()
                kwargs: dict[str, Any] = {"allowed_mentions": mentions}
                if make_file is not None:
                    kwargs["file"] = make_file()
                await where.send(content, **kwargs)
                return
            except discord.HTTPException as exc:
                log.warning("posting to %s failed: %s %s", place.__name__, exc.status, exc.text)
                last = exc
                if exc.status == 413 or exc.code == 40005:
                    break
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                last = exc
        if isinstance(last, discord.HTTPException):
            raise _delivery_error(last) from last
        raise DeliveryError(f"could not reach you on Discord ({last})", retryable=True)


def _carries(message: discord.Message | discord.WebhookMessage, stem: str) -> bool:
    """Whether ``message`` carries our upload named ``stem`` (any extension)."""
    return any(attachment.filename.rsplit(".", 1)[0] == stem for attachment in message.attachments)


def _delivery_error(exc: discord.HTTPException) -> DeliveryError:
    if exc.status == 413 or exc.code == 40005:
        return DeliveryError("Discord refused the file as too large")
    if exc.status == 403:
        return DeliveryError("I'm not allowed to post in that channel or DM you")
    return DeliveryError(f"Discord answered {exc.status}: {(exc.text or 'error')[:200]}",
                         retryable=exc.status >= 500 or exc.status == 429)
