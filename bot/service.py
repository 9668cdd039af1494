"""The one place with business rules, shared by the Discord and Telegram frontends.

No discord or telegram imports here: frontends turn their events into an :class:`Actor` plus
plain arguments, call a method, and render the returned dataclass or the
:class:`UserFacingError` it raises. Every error message says what happened and what to do.
"""

from __future__ import annotations

import secrets
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from arq import ArqRedis
from redis.exceptions import RedisError

from bot.clip_lengths import ClipLengths, current_clip_lengths
from config.settings import Platform, Settings
from gpu_worker.protocol import UserError
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
from storage.errors import PoolExhausted

MAX_SEED = 2**31 - 1
MAX_REASON_CHARS = 200
EXAMPLE_PROMPT = "a storm over a lighthouse, dramatic orchestral score, thunder"


ErrorCode = Literal[
    "bad_prompt", "bad_length", "bad_seed", "no_credits", "too_many_jobs", "queue_down",
    "not_allowed", "bad_amount", "bad_reason", "pool_exhausted", "no_server", "unknown_job",
    "not_cancellable",
]


class UserFacingError(UserError):
    """A refusal with a message meant for the user; nothing was changed or charged."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message, code=code)


@dataclass(frozen=True)
class Actor:
    """Who sent a command, as the frontend saw it.

    ``server_id`` is the Discord guild or Telegram group (None in private chats);
    ``is_server_admin`` is the frontend's check of Manage Server / group admin rights.
    """

    platform: Platform
    user_id: str
    display_name: str | None = None
    server_id: str | None = None
    is_server_admin: bool = False

    @property
    def ref(self) -> str:
        return f"{self.platform}:{self.user_id}"


@dataclass(frozen=True)
class VideoAccepted:
    job_id: str
    prompt: str
    seconds: float
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
    """Validate a prompt and normalise its whitespace, or raise a clear UserFacingError."""
    text = text or ""
    for char in text:
        if char in "\n\r\t":
            continue
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co"):
            raise UserFacingError(
                "bad_prompt",
                "Your prompt contains control or invisible characters "
                f"(U+{ord(char):04X}). Please type it as plain text.",
            )
    prompt = " ".join(text.split())
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


def parse_amount(value: object, max_amount: int) -> int:
    """A grant amount: a positive whole number no larger than ``max_amount``."""
    amount: int | None = None
    if isinstance(value, bool):
        amount = None
    elif isinstance(value, int):
        amount = value
    elif isinstance(value, float) and value.is_integer():
        amount = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        amount = int(value.strip())
    if amount is None or amount <= 0 or amount > max_amount:
        raise UserFacingError(
            "bad_amount",
            f"The amount must be a whole number of credits from 1 to {max_amount:,} "
            f"(got {value!r}).",
        )
    return amount


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
            db, signup_grant=settings.signup_grant, daily_grant=settings.daily_grant
        )
        self.jobs = JobStore(db)

    # -- checks ------------------------------------------------------------------------
    def is_operator(self, actor: Actor) -> bool:
        return actor.user_id in self.settings.operator_ids(actor.platform)

    async def clip_lengths(self) -> ClipLengths:
        """The lengths on offer now: the settings, capped by what the live workers can make."""
        redis = self.queue.redis if self.queue is not None else None
        return await current_clip_lengths(self.settings, redis)

    async def _seconds(self, seconds: float | None) -> float:
        lengths = await self.clip_lengths()
        asked = lengths.default_s if seconds is None else seconds
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
        text = clean_prompt(prompt, self.settings.max_prompt_chars)
        clip_seconds = await self._seconds(seconds)
        clip_seed = self._seed(seed)
        account = await self.credits.ensure_user(actor.platform, actor.user_id, actor.display_name)
        job_id = uuid.uuid4().hex
        cost = self.settings.video_price
        params = {"seconds": clip_seconds, "seed": clip_seed, "max_bytes": max_bytes}
        try:
            await self.jobs.create(
                NewJob(
                    id=job_id, user_id=account.id, platform=actor.platform, kind="video",
                    prompt=text, cost=cost, server_id=actor.server_id, params=params,
                    delivery=delivery or {},
                ),
                max_per_user=self.settings.max_jobs_per_user,
                max_per_server=self.settings.max_jobs_per_server,
            )
        except InsufficientCredits as exc:
            raise UserFacingError("no_credits", self._no_credits_message(exc)) from None
        except TooManyJobs as exc:
            raise UserFacingError("too_many_jobs", self._too_many_jobs_message(exc)) from None

        position = await self._enqueue(job_id, text, params)
        balance = await self.credits.balance(account.id)
        return VideoAccepted(
            job_id=job_id, prompt=text, seconds=clip_seconds, seed=clip_seed, cost=cost,
            available_after=balance.available, queue_position=position,
            signed_up_now=account.signed_up_now, daily_granted_now=account.daily_granted_now,
        )

    async def _enqueue(self, job_id: str, prompt: str, params: dict[str, Any]) -> int | None:
        payload = {"job_id": job_id, "kind": "video", "prompt": prompt, **params}
        if self.queue is None:
            await self.jobs.fail(job_id, "no queue configured")
            raise UserFacingError(
                "queue_down", "Video generation is not available on this bot right now. "
                "You were not charged.",
            )
        try:
            await self.queue.enqueue(job_id, payload)
        except (RedisError, OSError) as exc:
            await self.jobs.fail(job_id, f"queue unreachable: {exc}")
            raise UserFacingError(
                "queue_down", "The video queue is unreachable right now, so nothing was "
                "queued and you were not charged. Please try again in a minute.",
            ) from None
        try:  # the job is queued now: a failure here must not refund (and lose) it
            return await self.queue.position(job_id)
        except (RedisError, OSError):
            return None

    def _no_credits_message(self, exc: InsufficientCredits) -> str:
        reset = next_utc_midnight(self.db.clock())
        return (
            f"A video costs {exc.needed} credits and you have {exc.available} available. "
            f"You get {self.settings.daily_grant} free credits with your first command each "
            f"UTC day (next after {reset:%H:%M} UTC), or ask a server admin for a grant."
        )

    @staticmethod
    def _too_many_jobs_message(exc: TooManyJobs) -> str:
        if exc.scope == "user":
            return (
                f"You already have {exc.in_flight} videos in progress (the limit is "
                f"{exc.limit}). Wait for one to finish, then try again; you were not charged."
            )
        return (
            f"This server already has {exc.in_flight} videos in progress (the limit is "
            f"{exc.limit}). Please try again in a few minutes; you were not charged."
        )

    async def show_credits(self, actor: Actor) -> CreditsView:
        account = await self.credits.ensure_user(actor.platform, actor.user_id, actor.display_name)
        balance = await self.credits.balance(account.id)
        return CreditsView(
            available=balance.available,
            held=balance.held,
            price=self.settings.video_price,
            daily_grant=self.settings.daily_grant,
            daily_granted_today=balance.daily_granted_today,
            next_daily_at=next_utc_midnight(self.db.clock()),
            jobs_in_flight=await self.jobs.in_flight(account.id),
            signed_up_now=account.signed_up_now,
        )

    async def grant(
        self, actor: Actor, recipient_user_id: str, amount: object, reason: str | None
    ) -> GrantDone:
        """Operators grant any amount; server admins only from their server's pool."""
        credits = parse_amount(amount, self.settings.max_grant)
        why = self._reason(reason)
        operator = self.is_operator(actor)
        if not operator:
            if actor.server_id is None or not actor.is_server_admin:
                raise UserFacingError(
                    "not_allowed",
                    "Only bot operators, or admins of a server granting from that server's "
                    "pool, can grant credits.",
                )
            if recipient_user_id == actor.user_id:
                raise UserFacingError(
                    "not_allowed", "Server admins can't grant pool credits to themselves."
                )
        recipient = await self.credits.ensure_user(
            actor.platform, recipient_user_id, with_daily=False
        )
        pool = None if operator else (actor.platform, actor.server_id or "")
        try:
            record = await self.credits.grant(
                recipient.id, credits, grantor=actor.ref, reason=why, from_pool=pool
            )
        except PoolExhausted as exc:
            raise UserFacingError(
                "pool_exhausted",
                f"This server's pool has {exc.available} credits left, not enough to grant "
                f"{exc.needed}. A bot operator can add more with /pool fund.",
            ) from None
        balance = await self.credits.balance(recipient.id)
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
        text = " ".join((reason or "").split())
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
        cancelled = await self.jobs.get(job.id)
        assert cancelled is not None
        return cancelled

    async def withdraw(self, job_id: str, reason: str) -> bool:
        """Take a job no worker has started out of the queue and refund it.

        False when a worker already started it (it then runs to its normal end).
        """
        if self.queue is not None and not await self.queue.withdraw(job_id):
            return False
        await self.jobs.fail(job_id, reason, status=JobStatus.CANCELLED)
        return True

    def caption(self, job: Job, seconds: float, available: int) -> str:
        """The line under a delivered video: prompt, length and credits left."""
        return f"\u201c{job.prompt}\u201d \u00b7 {seconds:.1f} s \u00b7 {available} credits left"

    # -- job lifecycle (called by the watcher) -------------------------------------------
    async def finish_job(self, job_id: str, *, owner: str | None = None) -> Settlement:
        """The video was delivered: commit the reservation (exactly once; with ``owner``, only
        while that watcher holds the job's delivery claim)."""
        return Settlement(job_id, await self.jobs.finish(job_id, owner=owner))

    async def fail_job(self, job_id: str, reason: str, *, owner: str | None = None) -> Settlement:
        """The video will not be delivered: refund the reservation (exactly once)."""
        return Settlement(job_id, await self.jobs.fail(job_id, reason, owner=owner))
