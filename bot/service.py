"""The one place with business rules, shared by the Discord and Telegram frontends.

No discord or telegram imports here: frontends turn their events into an :class:`Actor` plus
plain arguments, call a method, and render the returned dataclass or the
:class:`UserFacingError` it raises. Every error message says what happened and what to do.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from arq import ArqRedis
from redis.exceptions import RedisError

from bot.clip_lengths import ClipLengths, current_clip_lengths
from bot.delivery import reword
from bot import banlist, metrics, text_rules
from bot.status import StatusReport, collect_status
from bot.sync_figure import SyncFigure, sync_text
from config.settings import IMAGE_SIZE, Platform, Settings
from gpu_worker.protocol import GENERATE_IMAGE, GENERATE_SOUND, GENERATE_VIDEO, UserError
from gpu_worker.queue import JobQueue
from storage import (
    CreditLedger,
    Database,
    InsufficientCredits,
    Job,
    JobStatus,
    JobStore,
    NewJob,
    SettleOutcome,
    TooManyJobs,
)
from storage.audit import AuditEntry, AuditLog
from storage.credits import UserAccount
from storage.errors import PoolExhausted
from storage.moderation import EVERYWHERE, ModerationStore

MAX_SEED = 2**31 - 1
MAX_REASON_CHARS = 200
MIN_UPLOAD_LIMIT = 1  # bytes; 0 or less is a frontend bug (too small to fit fails later, clearly)
ASCII_DIGITS = re.compile(r"[0-9]+")
EXAMPLE_PROMPT = "a storm over a lighthouse, dramatic orchestral score, thunder"
JOB_FUNCTIONS = {"video": GENERATE_VIDEO, "sound": GENERATE_SOUND, "image": GENERATE_IMAGE}


ErrorCode = Literal[
    "bad_prompt", "bad_length", "bad_seed", "no_credits", "too_many_jobs", "queue_down",
    "not_allowed", "bad_amount", "bad_reason", "pool_exhausted", "no_server", "unknown_job",
    "not_cancellable", "bad_request", "banned", "banned_prompt", "not_here", "bad_term",
    "unknown_rule", "bad_video", "bad_size", "images_off",
]


class UserFacingError(UserError):
    """A refusal with a message meant for the user; nothing was changed or charged."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message, code=code)


@dataclass(frozen=True)
class Actor:
    """Who sent a command, as the frontend saw it.

    ``server_id`` is the Discord guild or Telegram group (None in private chats);
    ``is_server_admin`` is the frontend's check of Manage Server / group admin rights;
    ``missing_admin_right`` names the right an admin lacks for that (Telegram), if any.
    """

    platform: Platform
    user_id: str
    display_name: str | None = None
    server_id: str | None = None
    is_server_admin: bool = False
    missing_admin_right: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.platform}:{self.user_id}"


@dataclass(frozen=True)
class VideoAccepted:
    """A queued job (``/video``, ``/sound`` or ``/image``: ``seconds`` is None for images)."""

    job_id: str
    prompt: str
    seconds: float | None
    seed: int
    cost: int
    available_after: int
    queue_position: int | None
    signed_up_now: bool
    daily_granted_now: bool


@dataclass(frozen=True)
class CreditsView:
    available: int
    held: int
    price: int
    daily_grant: int
    daily_granted_today: bool
    next_daily_at: datetime
    jobs_in_flight: list[Job] = field(default_factory=list)
    signed_up_now: bool = False
    signed_up_today: bool = False  # today's free credits were the sign-up grant
    image_price: int | None = None  # None: /image is off on this bot (TALKIES_IMAGE_PRESET=off)

    @property
    def videos_affordable(self) -> int:
        return self.available // self.price if self.price else 0


@dataclass(frozen=True)
class GrantDone:
    recipient_user_id: str
    amount: int
    recipient_available: int
    from_pool: bool
    pool_left: int | None


@dataclass(frozen=True)
class Settlement:
    job_id: str
    outcome: SettleOutcome


def clean_prompt(text: str | None, max_chars: int) -> str:
    """Validate a prompt and normalise it (see :mod:`bot.text_rules`), or raise a clear error."""
    try:
        prompt = text_rules.normalise(text)
    except text_rules.BadText as exc:
        raise UserFacingError(
            "bad_prompt",
            f"Your prompt contains {exc.why} ({exc.codepoint}). Please remove it and send "
            "the prompt again.",
        ) from None
    if not prompt:
        raise UserFacingError(
            "bad_prompt",
            f"Your prompt is empty. Describe the scene and its sound, e.g. `{EXAMPLE_PROMPT}`.",
        )
    if len(prompt) > max_chars:
        raise UserFacingError(
            "bad_prompt",
            f"Your prompt is {len(prompt)} characters long; the limit is {max_chars}. "
            "Please shorten it.",
        )
    return prompt


def size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def parse_size(value: object, offered: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    """An ``/image`` size as sent ("1024x576", or None for the first offered); only the sizes
    in TALKIES_IMAGE_SIZES are accepted, so nothing a worker would refuse is queued."""
    if value is None:
        return offered[0]
    match = IMAGE_SIZE.fullmatch(value) if isinstance(value, str) else None
    size = (int(match[1]), int(match[2])) if match else None
    if size not in offered:
        choices = ", ".join(size_text(s) for s in offered)
        raise UserFacingError(
            "bad_size",
            f"The image size must be one of {choices} (got {_shown(str(value))!r}). You were "
            "not charged.",
        )
    return size


def parse_amount(value: object, max_amount: int) -> int:
    """A grant amount: a positive whole number no larger than ``max_amount``."""
    amount: int | None = None
    if isinstance(value, bool):
        amount = None
    elif isinstance(value, int):
        amount = value
    elif isinstance(value, float) and value.is_integer():
        amount = int(value)
    elif isinstance(value, str) and ASCII_DIGITS.fullmatch(value.strip()):
        amount = int(value.strip())
    if amount is None or amount <= 0 or amount > max_amount:
        shown = value if isinstance(value, (int, float)) else _shown(str(value))
        raise UserFacingError(
            "bad_amount",
            f"The amount must be a whole number of credits from 1 to {max_amount:,} "
            f"(got {shown!r}).",
        )
    return amount


def parse_seconds(value: object) -> float | None:
    """A clip length as sent: a finite number (or its plain decimal text), or None for the
    default. Anything else (True, "five", NaN) is refused clearly, never coerced."""
    number: float | None = None
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[0-9]+(\.[0-9]+)?\s*", value):
        number = float(value)
    if number is None or not math.isfinite(number):
        raise UserFacingError(
            "bad_length",
            f"The clip length must be a number of seconds (got {_shown(str(value))!r}).",
        )
    return number


def check_delivery(delivery: dict[str, Any] | None, max_bytes: object) -> dict[str, Any]:
    """What a frontend hands over for later delivery must be plain JSON data and a sane
    upload limit; a frontend bug is refused here, before anything is charged."""
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int)
        or max_bytes < MIN_UPLOAD_LIMIT
    ):
        raise UserFacingError(
            "bad_request", "This chat reported an upload limit the bot can't use, so nothing "
            "was queued and you were not charged.",
        )
    try:
        json.dumps(delivery or {}, allow_nan=False)
    except (TypeError, ValueError):
        raise UserFacingError(
            "bad_request", "The bot could not record where to send your video, so nothing "
            "was queued and you were not charged.",
        ) from None
    return dict(delivery or {})


def _shown(text: str, limit: int = 40) -> str:
    """User text echoed back in an error: printable characters only, and short."""
    printable = "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text)
    return printable if len(printable) <= limit else printable[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"


DISCORD_EPOCH_MS = 1_420_070_400_000


def discord_account_created(user_id: str) -> datetime | None:
    """When a Discord account was made, from its snowflake id (None if it isn't one)."""
    if not (user_id.isascii() and user_id.isdigit()):
        return None
    ms = (int(user_id) >> 22) + DISCORD_EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def next_utc_midnight(now: datetime) -> datetime:
    day = now.astimezone(timezone.utc).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


class Service:
    """Business rules over storage and the job queue; one instance per bot process."""

    def __init__(self, settings: Settings, db: Database, redis: ArqRedis | None) -> None:
        self.settings = settings
        self.db = db
        self.queue = JobQueue(redis) if redis is not None else None
        self.credits = CreditLedger(
            db, signup_grant=settings.signup_grant, daily_grant=settings.daily_grant,
            max_signups_per_hour=settings.max_signups_per_hour,
        )
        self.jobs = JobStore(db)
        self.moderation = ModerationStore(db)
        self.audit = AuditLog(db)

    # -- checks ------------------------------------------------------------------------
    def is_operator(self, actor: Actor) -> bool:
        return actor.user_id in self.settings.operator_ids(actor.platform)

    async def clip_lengths(self) -> ClipLengths:
        """The lengths on offer now: the settings, capped by what the live workers can make."""
        redis = self.queue.redis if self.queue is not None else None
        return await current_clip_lengths(self.settings, redis)

    def account_too_new(self, platform: Platform, user_id: str) -> bool:
        """Whether a Discord account is younger than TALKIES_DISCORD_MIN_ACCOUNT_AGE_DAYS
        (its snowflake id holds its creation time); other platforms don't tell."""
        min_days = self.settings.discord_min_account_age_days
        if platform != "discord" or not min_days:
            return False
        created = discord_account_created(user_id)
        return created is None or self.db.clock() - created < timedelta(days=min_days)

    async def _account(self, actor: Actor) -> UserAccount:
        account = await self.credits.ensure_user(
            actor.platform, actor.user_id, actor.display_name,
            too_new=self.account_too_new(actor.platform, actor.user_id),
        )
        if account.signed_up_now:
            metrics.credits("granted", self.settings.signup_grant)
        if account.daily_granted_now:
            metrics.credits("granted", self.settings.daily_grant)
        return account

    async def _seconds(self, seconds: object) -> float:
        asked = parse_seconds(seconds)
        lengths = await self.clip_lengths()
        asked = lengths.default_s if asked is None else asked
        if not lengths.available or not lengths.min_s <= asked <= lengths.max_s:
            raise UserFacingError("bad_length", lengths.refusal(asked))
        return float(asked)

    @staticmethod
    def _seed(seed: int | None) -> int:
        if seed is None:
            return secrets.randbelow(MAX_SEED + 1)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise UserFacingError("bad_seed", f"The seed must be a whole number from 0 to {MAX_SEED}.")
        return seed

    # -- commands ----------------------------------------------------------------------
    async def request_video(
        self,
        actor: Actor,
        prompt: str | None,
        *,
        seconds: float | None = None,
        seed: int | None = None,
        delivery: dict[str, Any] | None = None,
        max_bytes: int | None = None,
    ) -> VideoAccepted:
        """Validate, reserve the price, record the job and enqueue it under its own id.

        ``delivery`` is whatever the frontend needs to reach the user later (chat, channel,
        message and interaction references); ``max_bytes`` is the platform's upload limit.
        """
        await self.admit(actor)
        text = clean_prompt(prompt, self.settings.max_prompt_chars)
        await self.check_prompt(actor, text)
        clip_seconds = await self._seconds(seconds)
        return await self._submit(
            actor, "video", text, {"seconds": clip_seconds}, cost=self.settings.video_price,
            seed=seed, delivery=delivery, max_bytes=max_bytes,
        )

    async def request_image(
        self,
        actor: Actor,
        prompt: str | None,
        *,
        size: str | None = None,
        seed: int | None = None,
        delivery: dict[str, Any] | None = None,
        max_bytes: int | None = None,
    ) -> VideoAccepted:
        """``/image``: one picture from a prompt at one of the offered sizes, for
        TALKIES_IMAGE_PRICE; ``max_bytes`` is the platform's photo limit (the worker fits the
        picture under it). A refusal charges nothing and queues nothing."""
        self.check_images_on()
        await self.admit(actor)
        text = clean_prompt(prompt, self.settings.max_prompt_chars)
        await self.check_prompt(actor, text)
        width, height = parse_size(size, self.settings.image_sizes)
        return await self._submit(
            actor, "image", text, {"width": width, "height": height},
            cost=self.settings.image_price, seed=seed, delivery=delivery, max_bytes=max_bytes,
        )

    def check_images_on(self) -> None:
        """Refuse ``/image`` on a bot with TALKIES_IMAGE_PRESET=off (nothing is charged)."""
        if not self.settings.images_enabled:
            raise UserFacingError(
                "images_off", "Images are turned off on this bot. You were not charged.")

    async def request_sound(
        self,
        actor: Actor,
        video: bytes,
        prompt: str | None,
        *,
        seed: int | None = None,
        delivery: dict[str, Any] | None = None,
        max_bytes: int | None = None,
    ) -> VideoAccepted:
        """``/sound``: check the user's video (headers only), reserve the sound price, record
        the job and enqueue it with the video in its payload. A refusal charges nothing."""
        from bot.sound_uploads import check_video

        text = clean_prompt(prompt, self.settings.max_prompt_chars) if prompt and prompt.strip() else ""
        probe = await check_video(video, self.settings)
        return await self.submit_sound(
            actor, text, probe.duration_s, cost=self.settings.sound_price, seed=seed,
            extra={"video": video}, delivery=delivery, max_bytes=max_bytes,
        )

    async def submit_sound(
        self,
        actor: Actor,
        prompt: str,
        seconds: float,
        *,
        cost: int,
        extra: dict[str, Any],
        seed: int | None = None,
        delivery: dict[str, Any] | None = None,
        max_bytes: int | None = None,
    ) -> VideoAccepted:
        """Reserve ``cost``, record a sound job and enqueue it; ``extra`` (the upload, or the
        kept clip's ``source_job``) travels in the payload only."""
        await self.admit(actor)
        if prompt:
            await self.check_prompt(actor, prompt)
        return await self._submit(
            actor, "sound", prompt, {"seconds": seconds}, cost=cost, seed=seed,
            delivery=delivery, max_bytes=max_bytes, extra=extra,
        )

    async def _submit(
        self,
        actor: Actor,
        kind: str,
        prompt: str,
        shape: dict[str, Any],
        *,
        cost: int,
        seed: int | None,
        delivery: dict[str, Any] | None,
        max_bytes: int | None,
        extra: dict[str, Any] | None = None,
    ) -> VideoAccepted:
        """Reserve ``cost``, record the job (one transaction, with the in-flight limits) and
        enqueue it under its own id; shared by /video, /sound and /image. ``shape`` is the
        kind's own parameters (seconds; width and height)."""
        clip_seed = self._seed(seed)
        delivery = check_delivery(delivery, max_bytes)
        account = await self._account(actor)
        job_id = uuid.uuid4().hex
        params: dict[str, Any] = {**shape, "seed": clip_seed, "max_bytes": max_bytes}
        if extra and "source_job" in extra:
            params["source_job"] = extra["source_job"]
        try:
            await self.jobs.create(
                NewJob(
                    id=job_id, user_id=account.id, platform=actor.platform, kind=kind,
                    prompt=prompt, cost=cost, server_id=actor.server_id, params=params,
                    delivery=delivery or {},
                ),
                max_per_user=self.settings.max_jobs_per_user,
                max_per_server=self.settings.max_jobs_per_server,
            )
        except InsufficientCredits as exc:
            message = await self._no_credits_message(exc, actor, account.signup_withheld, kind)
            raise UserFacingError("no_credits", reword(message, kind)) from None
        except TooManyJobs as exc:
            message = self._too_many_jobs_message(exc, self.place_word(actor))
            raise UserFacingError("too_many_jobs", message) from None

        position = await self._enqueue(job_id, prompt, params, kind=kind, extra=extra)
        return VideoAccepted(
            job_id=job_id, prompt=prompt, seconds=shape.get("seconds"), seed=clip_seed, cost=cost,
            available_after=await self.credits.available(account.id), queue_position=position,
            signed_up_now=account.signed_up_now, daily_granted_now=account.daily_granted_now,
        )

    async def _enqueue(
        self, job_id: str, prompt: str, params: dict[str, Any], *, kind: str = "video",
        extra: dict[str, Any] | None = None,
    ) -> int | None:
        """``extra`` goes into the payload only (never into SQLite): the /sound upload."""
        payload = {"job_id": job_id, "kind": kind, "prompt": prompt, **params, **(extra or {})}
        function = JOB_FUNCTIONS[kind]
        if self.queue is None:
            await self.jobs.fail(job_id, "no queue configured")
            raise UserFacingError(
                "queue_down", reword("Video generation is not available on this bot right "
                                     "now. You were not charged.", kind),
            )
        try:  # one atomic round trip: queued with its place in the queue, or not at all
            return await self.queue.enqueue(job_id, payload, function)
        except (RedisError, OSError) as exc:
            await self.jobs.fail(job_id, f"queue unreachable: {exc}")
            raise UserFacingError(
                "queue_down", reword("The video queue is unreachable right now, so nothing "
                                     "was queued and you were not charged. Please try again "
                                     "in a minute.", kind),
            ) from None

    async def _grant_hint(self, actor: Actor, *, full: bool = True) -> str:
        """Where else credits can come from: a grant from this server's pool, when it has
        any (with ``full``, as a clause; else as a subject)."""
        place = self.place_word(actor)
        if actor.server_id is None:
            return ""
        pool = await self.credits.pool_balance(actor.platform, actor.server_id)
        if pool <= 0:
            return ""
        return f", or ask a {place} admin for a grant" if full else f"a {place} admin can grant you some"

    async def _no_credits_message(
        self, exc: InsufficientCredits, actor: Actor, withheld: str | None = None,
        kind: str = "video",
    ) -> str:
        """Says "A video costs", "A soundtrack costs" (/sound) or, once reworded, "An image"."""
        reset = next_utc_midnight(self.db.clock())
        what = "A soundtrack" if kind == "sound" else "A video"
        if withheld == "account_too_new":
            days = self.settings.discord_min_account_age_days
            hint = await self._grant_hint(actor, full=False)
            return (
                f"{what} costs {exc.needed} credits and you have {exc.available}. Free "
                f"credits start once your Discord account is {days:g} days old"
                f"{'; until then ' + hint if hint else ''}. You were not charged."
            )
        if withheld == "signups_paused":
            return (
                f"{what} costs {exc.needed} credits and you have {exc.available}. So many new "
                "users joined in the last hour that sign-up credits are paused for a while: "
                "please try again later (existing users are not affected). You were not "
                "charged."
            )
        return (
            f"{what} costs {exc.needed} credits and you have {exc.available} available. "
            f"You get {self.settings.daily_grant} free credits with your first command each "
            f"UTC day (next after {reset:%H:%M} UTC){await self._grant_hint(actor)}."
        )

    @staticmethod
    def _too_many_jobs_message(exc: TooManyJobs, place: str = "server") -> str:
        """The limit counts every kind (videos, soundtracks, images), so the text says requests."""
        requests = f"{exc.in_flight} request{'' if exc.in_flight == 1 else 's'}"
        if exc.scope == "user":
            return (
                f"You already have {requests} in progress (the limit is "
                f"{exc.limit}). Wait for one to finish, then try again; you were not charged."
            )
        return (
            f"This {place} already has {requests} in progress (the limit is "
            f"{exc.limit}). Please try again in a few minutes; you were not charged."
        )

    async def show_credits(self, actor: Actor) -> CreditsView:
        account = await self._account(actor)
        balance = await self.credits.balance(account.id)
        return CreditsView(
            available=balance.available,
            held=balance.held,
            price=self.settings.video_price,
            image_price=self.settings.image_price if self.settings.images_enabled else None,
            daily_grant=self.settings.daily_grant,
            daily_granted_today=balance.daily_granted_today,
            next_daily_at=next_utc_midnight(self.db.clock()),
            jobs_in_flight=await self.jobs.in_flight(account.id),
            signed_up_now=account.signed_up_now,
            signed_up_today=balance.signed_up_today,
        )

    async def grant(
        self, actor: Actor, recipient_user_id: str, amount: object, reason: str | None
    ) -> GrantDone:
        """Operators grant any amount; server admins only from their server's pool."""
        credits = parse_amount(amount, self.settings.max_grant)
        why = self._reason(reason)
        operator = self.is_operator(actor)
        if not operator:
            if actor.server_id is not None and actor.missing_admin_right:
                right = actor.missing_admin_right.removeprefix("can_").replace("_", " ")
                raise UserFacingError(
                    "not_allowed",
                    f"Group admins need the \u201c{right}\u201d admin right to grant from the "
                    "group's pool, and yours doesn't include it. Ask the group's owner.",
                )
            place = self.place_word(actor)
            if actor.server_id is None or not actor.is_server_admin:
                raise UserFacingError(
                    "not_allowed",
                    f"Only bot operators, or admins of a {place} granting from that {place}'s "
                    "pool, can grant credits.",
                )
            if recipient_user_id == actor.user_id:
                raise UserFacingError(
                    "not_allowed", f"{place.capitalize()} admins can't grant pool credits to "
                    "themselves."
                )
        pool = None if operator else (actor.platform, actor.server_id or "")
        try:
            record = await self.credits.grant_to(
                actor.platform, recipient_user_id, credits, grantor=actor.ref, reason=why,
                from_pool=pool, too_new=self.account_too_new(actor.platform, recipient_user_id),
                where=actor.server_id,
            )
        except PoolExhausted as exc:
            raise UserFacingError(
                "pool_exhausted",
                f"This {self.place_word(actor)}'s pool has {exc.available} credits left, not "
                f"enough to grant "
                f"{exc.needed}. A bot operator can add more with /pool fund.",
            ) from None
        metrics.credits("granted", credits)
        if record.recipient_signed_up:
            metrics.credits("granted", self.settings.signup_grant)
        balance = await self.credits.balance(record.recipient_user_id)
        return GrantDone(
            recipient_user_id=recipient_user_id, amount=credits,
            recipient_available=balance.available, from_pool=pool is not None,
            pool_left=record.pool_balance_after,
        )

    async def fund_pool(
        self, actor: Actor, server_id: str | None, amount: object, reason: str | None
    ) -> int:
        """Operators add credits to a server's pool; returns the pool's new balance."""
        if not self.is_operator(actor):
            raise UserFacingError("not_allowed", "Only bot operators can fund a server's pool.")
        if not server_id:
            raise UserFacingError("no_server", "Use this command inside a server or group.")
        credits = parse_amount(amount, self.settings.max_grant)
        return await self.credits.fund_pool(
            actor.platform, server_id, credits, actor=actor.ref, reason=self._reason(reason)
        )

    async def pool_balance(self, actor: Actor) -> int:
        if actor.server_id is None:
            raise UserFacingError("no_server", "Pools belong to servers and groups; use this there.")
        return await self.credits.pool_balance(actor.platform, actor.server_id)

    @staticmethod
    def _reason(reason: str | None) -> str:
        try:
            text = text_rules.normalise(reason)
        except text_rules.BadText as exc:
            raise UserFacingError(
                "bad_reason", f"The reason contains {exc.why} ({exc.codepoint}); please "
                "remove it."
            ) from None
        if not text:
            raise UserFacingError("bad_reason", "Please give a short reason for the grant.")
        if len(text) > MAX_REASON_CHARS:
            raise UserFacingError(
                "bad_reason", f"The reason is too long ({len(text)} characters; limit "
                f"{MAX_REASON_CHARS})."
            )
        return text

    async def job_status(self, actor: Actor, job_id: str) -> Job:
        job = await self.jobs.get(job_id)
        user_id = await self.credits.user_id(actor.platform, actor.user_id)
        if job is None or job.user_id != user_id:
            raise UserFacingError("unknown_job", "I can't find that video among yours.")
        return job

    async def cancel_job(self, actor: Actor, job_id: str | None = None) -> Job:
        """Cancel one of your own queued jobs (default: the newest) and refund it.

        Only a job no worker has started can be cancelled: in one Redis transaction that
        watches arq's in-progress key, the job leaves the queue and its payload is deleted,
        so a worker that raced us finds nothing to run.
        """
        user_id = await self.credits.user_id(actor.platform, actor.user_id)
        mine = await self.jobs.in_flight(user_id) if user_id is not None else []
        if job_id is None:
            queued = [job for job in mine if job.status is JobStatus.QUEUED]
            if not queued:
                raise UserFacingError("unknown_job", "You have no queued video to cancel.")
            job = queued[-1]
        else:
            job = next((j for j in mine if j.id == job_id), None)
            if job is None:
                raise UserFacingError(
                    "unknown_job", "I can't find that video among your unfinished ones."
                )
        if job.status is not JobStatus.QUEUED or not await self.withdraw(
            job.id, "cancelled by the user"
        ):
            raise UserFacingError(
                "not_cancellable",
                "That video is already being generated and can't be cancelled any more.",
            )
        # As it was, but cancelled: settling dropped its platform token from storage, and the
        # frontend still needs it to update the user's message.
        return dataclasses.replace(job, status=JobStatus.CANCELLED)

    async def withdraw(self, job_id: str, reason: str) -> bool:
        """Take a job no worker has started out of the queue and refund it.

        False when a worker already started it (it then runs to its normal end).
        """
        if self.queue is not None and not await self.queue.withdraw(job_id):
            return False
        if await self.jobs.fail(job_id, reason, status=JobStatus.CANCELLED) is SettleOutcome.REFUNDED:
            await self._count_credits("refunded", job_id)
        return True

    def caption(
        self, job: Job, seconds: float, available: int, sync: SyncFigure | None = None
    ) -> str:
        """The line under a delivered video: prompt, length, the sync figure (when sound
        effects were placed) and credits left."""
        what = f"\u201c{job.prompt}\u201d" if job.prompt else "Your video, with sound"
        placed = sync_text(sync)
        parts = [what, f"{seconds:.1f} s", *([placed] if placed else []), f"{available} credits left"]
        return " \u00b7 ".join(parts)

    @staticmethod
    def image_caption(job: Job, width: int, height: int, available: int) -> str:
        """The line under a delivered image: prompt, size and credits left."""
        return " \u00b7 ".join(
            [f"\u201c{job.prompt}\u201d", f"{width}\u00d7{height}", f"{available} credits left"])

    # -- job lifecycle (called by the watcher) -------------------------------------------
    async def finish_job(self, job_id: str, *, owner: str | None = None) -> Settlement:
        """The video was delivered: commit the reservation (exactly once; with ``owner``, only
        while that watcher holds the job's delivery claim)."""
        outcome = await self.jobs.finish(job_id, owner=owner)
        if outcome is SettleOutcome.COMMITTED:
            await self._count_credits("spent", job_id)
        return Settlement(job_id, outcome)

    async def fail_job(self, job_id: str, reason: str, *, owner: str | None = None) -> Settlement:
        """The video will not be delivered: refund the reservation (exactly once)."""
        outcome = await self.jobs.fail(job_id, reason, owner=owner)
        if outcome is SettleOutcome.REFUNDED:
            await self._count_credits("refunded", job_id)
        return Settlement(job_id, outcome)

    async def _count_credits(self, kind: str, job_id: str) -> None:
        job = await self.jobs.get(job_id)
        if job is not None:
            metrics.credits(kind, job.cost)

    # -- moderation: allow-lists, bans, prompt ban lists, the audit trail -------------------
    @staticmethod
    def place_word(actor: Actor) -> str:
        """What the platform calls a community: a Discord server, a Telegram group."""
        return "group" if actor.platform == "telegram" else "server"

    def allowed_here(self, actor: Actor) -> bool:
        """TALKIES_ALLOWED_SERVERS / _CHATS: when set, only there (operators anywhere).

        A Telegram private chat's id is the user's id, so listing a user allows their DMs.
        """
        if self.is_operator(actor):
            return True
        if actor.platform == "discord":
            allowed = self.settings.allowed_servers
            return not allowed or actor.server_id in allowed
        allowed = self.settings.allowed_chats
        return not allowed or (actor.server_id or actor.user_id) in allowed

    async def admit(self, actor: Actor) -> None:
        """Refuse anyone the bot must not serve here: outside the allow-list, or banned."""
        if not self.allowed_here(actor):
            where = "DMs" if actor.server_id is None else f"this {self.place_word(actor)}"
            raise UserFacingError(
                "not_here",
                f"Sorry, this talkies bot isn't available in {where}: its operators run it "
                "only for the communities they chose.",
            )
        ban = await self.moderation.ban_of(actor.platform, actor.server_id, actor.user_id)
        if ban is not None:
            where = "anywhere" if ban.scope == EVERYWHERE else f"in this {self.place_word(actor)}"
            raise UserFacingError(
                "banned", f"You are banned from using talkies {where}. Reason: {ban.reason}",
            )

    async def ban_rules(self, actor: Actor) -> list[banlist.Rule]:
        """The rules a prompt from ``actor`` is checked against: the settings' global terms,
        the global list, then this server's."""
        rules = [
            banlist.Rule(f"rule C{n} of the bot's ban list", term)
            for n, term in enumerate(self.settings.banned_terms, start=1)
        ]
        for term in await self.moderation.terms(actor.platform, actor.server_id):
            whose = "the bot's" if term.scope == EVERYWHERE else f"this {self.place_word(actor)}'s"
            rules.append(banlist.Rule(f"rule #{term.id} of {whose} ban list", term.term))
        return rules

    async def check_prompt(self, actor: Actor, prompt: str) -> None:
        """Refuse a prompt on a ban list, naming the rule but never repeating the text."""
        rule = banlist.first_match(prompt, await self.ban_rules(actor))
        if rule is not None:
            raise UserFacingError(
                "banned_prompt",
                f"Your prompt was refused: it matches {rule.label}. Please rephrase it; "
                "you were not charged.",
            )

    def _moderator_scope(self, actor: Actor, everywhere: bool, what: str) -> str:
        """The scope ``actor`` may moderate: "" (everywhere, operators) or their server."""
        place = self.place_word(actor)
        if self.is_operator(actor):
            return EVERYWHERE if everywhere or actor.server_id is None else actor.server_id
        if everywhere:
            raise UserFacingError("not_allowed", f"Only bot operators can {what} everywhere.")
        if actor.server_id is not None and actor.missing_admin_right:
            right = actor.missing_admin_right.removeprefix("can_").replace("_", " ")
            raise UserFacingError(
                "not_allowed",
                f"Group admins need the \u201c{right}\u201d admin right to {what}, and yours "
                "doesn't include it. Ask the group's owner.",
            )
        if actor.server_id is None or not actor.is_server_admin:
            raise UserFacingError(
                "not_allowed", f"Only bot operators, or admins of a {place} in that {place}, "
                f"can {what}.",
            )
        return actor.server_id

    async def ban(
        self, actor: Actor, user_id: str, reason: str | None, *, everywhere: bool = False
    ) -> BanDone:
        """Ban a user here (admins) or everywhere (operators); their queued jobs there are
        cancelled and refunded. Jobs a worker already started run to their end."""
        scope = self._moderator_scope(actor, everywhere, "ban users")
        why = self._reason(reason)
        if user_id == actor.user_id:
            raise UserFacingError("not_allowed", "You can't ban yourself.")
        if user_id in self.settings.operator_ids(actor.platform):
            raise UserFacingError("not_allowed", "Bot operators can't be banned.")
        new = await self.moderation.ban(actor.platform, scope, user_id, reason=why, actor=actor.ref)
        cancelled, running = [], 0
        account = await self.credits.user_id(actor.platform, user_id)
        unfinished = await self.jobs.in_flight(account) if account is not None else []
        for job in unfinished:
            if scope != EVERYWHERE and job.server_id != scope:
                continue
            if job.status is JobStatus.QUEUED and await self.withdraw(job.id, f"banned: {why}"):
                cancelled.append(dataclasses.replace(job, status=JobStatus.CANCELLED))
            else:
                running += 1
        return BanDone(user_id, scope == EVERYWHERE, new, cancelled, running)

    async def unban(
        self, actor: Actor, user_id: str, reason: str | None, *, everywhere: bool = False
    ) -> bool:
        """Lift a ban; False when the user wasn't banned there."""
        scope = self._moderator_scope(actor, everywhere, "unban users")
        why = self._reason(reason)
        return await self.moderation.unban(
            actor.platform, scope, user_id, reason=why, actor=actor.ref
        )

    def _list_scope(self, actor: Actor, everywhere: bool) -> tuple[str, str]:
        scope = self._moderator_scope(actor, everywhere, "change the prompt ban list")
        return ("", "") if scope == EVERYWHERE else (actor.platform, scope)

    async def banlist_add(self, actor: Actor, term: str | None, *, everywhere: bool = False) -> str:
        """Add a rule; returns how users will see it named (e.g. "rule #3 of ...")."""
        platform, scope = self._list_scope(actor, everywhere)
        try:
            text = text_rules.normalise(term)
        except text_rules.BadText as exc:
            raise UserFacingError("bad_term", f"The rule contains {exc.why} ({exc.codepoint}).") from None
        if problem := banlist.check_term(text):
            raise UserFacingError("bad_term", problem)
        rule = await self.moderation.add_term(
            platform, scope, text, actor=actor.ref, audit_platform=actor.platform,
            audit_server=actor.server_id,
        )
        whose = "the bot's" if not scope else f"this {self.place_word(actor)}'s"
        return f"rule #{rule.id} of {whose} ban list"

    async def banlist_remove(self, actor: Actor, rule: object, *, everywhere: bool = False) -> str:
        platform, scope = self._list_scope(actor, everywhere)
        text = str(rule).strip().removeprefix("#")
        removed = None
        if ASCII_DIGITS.fullmatch(text):
            removed = await self.moderation.remove_term(
                platform, scope, int(text), actor=actor.ref, audit_platform=actor.platform,
                audit_server=actor.server_id,
            )
        if removed is None:
            whose = "the bot's" if not scope else f"this {self.place_word(actor)}'s"
            raise UserFacingError(
                "unknown_rule", f"There is no rule #{_shown(text)} in {whose} ban list; "
                "/banlist show lists them.",
            )
        return f"rule #{removed.id}"

    async def banlist_show(self, actor: Actor) -> list[str]:
        """The rules that apply here, one line each (operators also see the global terms)."""
        self._moderator_scope(actor, False, "see the prompt ban list")
        operator = self.is_operator(actor)
        lines = []
        for n, term in enumerate(self.settings.banned_terms, start=1):
            lines.append(f"C{n} (bot-wide, from the settings): {term if operator else '(hidden)'}")
        for term in await self.moderation.terms(actor.platform, actor.server_id):
            if term.scope == EVERYWHERE:
                lines.append(f"#{term.id} (bot-wide): {term.term if operator else '(hidden)'}")
            else:
                lines.append(f"#{term.id}: {term.term}")
        return lines

    async def audit_entries(self, actor: Actor, limit: int = 15) -> list[AuditEntry]:
        """A server's latest audit entries for its admins; operators in DMs see everything."""
        if self.is_operator(actor) and actor.server_id is None:
            return await self.audit.latest(limit=limit)
        self._moderator_scope(actor, False, "see the audit log")
        return await self.audit.latest(
            platform=actor.platform, server_id=actor.server_id, limit=limit
        )

    async def stats(self, actor: Actor) -> StatusReport:
        """What ``talkies status`` shows, for operators."""
        if not self.is_operator(actor):
            raise UserFacingError("not_allowed", "Only bot operators can see the bot's figures.")
        return await collect_status(self.settings, self.db, self.queue.redis if self.queue else None)


@dataclass(frozen=True)
class BanDone:
    user_id: str
    everywhere: bool
    new: bool  # False: they were banned there already (the reason is updated)
    cancelled: list[Job]  # their queued jobs, cancelled and refunded
    still_running: int  # jobs a worker had started: they run to their end

    @property
    def jobs_text(self) -> str:
        """What the ban did to their videos, for the admin's answer ("" when nothing)."""
        text = ""
        if self.cancelled:
            text += f" Cancelled and refunded {len(self.cancelled)} queued video(s)."
        if self.still_running:
            text += f" {self.still_running} video(s) already being made will finish."
        return text
