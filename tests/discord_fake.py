"""A small fake Discord on 127.0.0.1: REST + websocket gateway, for driving real discord.py.

It speaks just enough of the API for talkies' Discord frontend: login, command sync,
interaction callbacks, webhook edits/follow-ups (JSON and multipart uploads) and reads of the
original response, channel and DM messages (posted and read back, attachments included), and
a gateway with HELLO, IDENTIFY/READY, RESUME/RESUMED, heartbeats and dispatch
of INTERACTION_CREATE and GUILD_CREATE (sharded too). Every REST call is recorded; tests can
queue failures (e.g. a 429) and expire interaction tokens. Facts it relies on are in
shared/notes/platforms.md. At the end: helpers to run the real bot against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import mimetypes
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import discord
import numpy as np
import yarl
from aiohttp import WSMsgType, web

from bot.discord_bot import DiscordBot, build_bot
from bot.service import Service
from config import Settings

DISCORD_EPOCH_MS = 1420070400000
API_PREFIX = "/api/v10"
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
EPHEMERAL = 1 << 6


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with Content-Type exactly ``application/json`` (discord.py checks it verbatim)."""
    return web.Response(
        body=json.dumps(data).encode(), status=status, content_type="application/json",
        headers=headers,
    )


@dataclass(frozen=True)
class Upload:
    field: str
    filename: str
    data: bytes


@dataclass
class Recorded:
    """One REST request the fake received, and what it answered."""

    method: str
    path: str  # after /api/v10, e.g. /webhooks/1/abc/messages/@original
    query: dict[str, str]
    body: Any  # parsed JSON, or the multipart payload_json
    files: list[Upload]
    at: float  # time.monotonic() on arrival
    status: int = 0

    @property
    def content(self) -> str | None:
        return self.body.get("content") if isinstance(self.body, dict) else None


@dataclass
class PlannedFailure:
    method: str
    pattern: re.Pattern[str]
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    times: int
    skip: int = 0
    uploads_only: bool = False  # only requests that carry files


@dataclass
class PlannedHold:
    """Matching requests wait, unanswered, until ``release`` is set (see ``hold_next``)."""

    method: str
    pattern: re.Pattern[str]
    apply: bool
    times: int
    uploads_only: bool = False  # only requests that carry files
    release: asyncio.Event = field(default_factory=asyncio.Event)
    held: list[Recorded] = field(default_factory=list)


@dataclass
class InteractionRecord:
    """An interaction the fake dispatched and the state of its original response."""

    id: str
    token: str
    channel_id: str
    guild_id: str | None
    user_id: str
    attachment_size_limit: int
    responded: bool = False
    ephemeral: bool = False
    deleted: bool = False
    message: dict[str, Any] | None = None
    followups: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Session:
    session_id: str
    shard: tuple[int, int]
    seq: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)  # dispatches, for RESUME replay
    ws: web.WebSocketResponse | None = None
    resumed: int = 0


class FakeDiscord:
    """Serve ``start()``, point discord.py at it with ``install()``, drive it from the test."""

    def __init__(
        self,
        *,
        application_id: int = 4242,
        bot_user_id: int = 4343,
        guild_ids: tuple[int, ...] = (7001,),
        channel_id: int = 7101,
        heartbeat_interval_ms: int = 1000,
        shards: int = 1,
    ) -> None:
        self.application_id = application_id
        self.bot_user_id = bot_user_id
        self.guild_ids = guild_ids
        self.channel_id = channel_id
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.shards = shards
        self.port = 0
        self.requests: list[Recorded] = []
        self.commands: dict[str, list[dict[str, Any]]] = {}  # "global" or guild id -> commands
        self.interactions: dict[str, InteractionRecord] = {}
        self.channel_messages: dict[str, list[dict[str, Any]]] = {}
        self.expired_tokens: set[str] = set()
        self.identifies: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.channel_upload_limit = DEFAULT_UPLOAD_LIMIT
        self._failures: list[PlannedFailure] = []
        self._holds: list[PlannedHold] = []
        self._sessions: dict[str, _Session] = {}
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._saved: tuple[str, yarl.URL] | None = None
        self.user_attachments: dict[str, bytes] = {}  # id -> bytes users attached to commands
        self.attachment_downloads: list[str] = []

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{id}/{name}", self._attachment_file)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[union-attr]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        for hold in self._holds:
            hold.release.set()
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def install(self) -> None:
        """Redirect discord.py's REST and gateway to this fake (``uninstall()`` restores)."""
        self._saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
        discord.http.Route.BASE = self.base_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)

    def uninstall(self) -> None:
        if self._saved is not None:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._saved
            self._saved = None

    # -- helpers for tests -------------------------------------------------------------------
    def snowflake(self) -> str:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (next(self._ids) & 0x3FFFFF))

    def fail_next(
        self, method: str, path_pattern: str, status: int, body: dict[str, Any] | None = None,
        *, headers: dict[str, str] | None = None, times: int = 1, skip: int = 0,
        uploads_only: bool = False,
    ) -> None:
        """Answer ``times`` matching requests with an error, after letting ``skip`` through
        (``uploads_only``: only requests that carry files match)."""
        self._failures.append(PlannedFailure(
            method, re.compile(path_pattern), status, body or {"message": "error", "code": 0},
            headers or {}, times, skip, uploads_only,
        ))

    def hold_next(
        self, method: str, path_pattern: str, *, apply: bool, times: int = 1,
        uploads_only: bool = False,
    ) -> PlannedHold:
        """Leave the next ``times`` matching requests unanswered until ``release`` is set.

        ``apply``: the request takes effect first (an upload that arrived, whose answer the
        client never gets); otherwise it never takes effect (lost on the way).
        ``uploads_only``: only requests carrying files match.
        """
        hold = PlannedHold(method, re.compile(path_pattern), apply, times, uploads_only)
        self._holds.append(hold)
        return hold

    def rate_limit_next(
        self, method: str, path_pattern: str, retry_after: float, times: int = 1, skip: int = 0
    ) -> None:
        """A real-looking 429 (``Via`` header, ``retry_after`` body), as Discord sends it."""
        self.fail_next(
            method, path_pattern, 429,
            {"message": "You are being rate limited.", "retry_after": retry_after, "global": False},
            headers={
                "Via": "1.1 google", "Retry-After": str(retry_after),
                "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset-After": str(retry_after), "X-RateLimit-Bucket": "fake",
                "X-RateLimit-Scope": "user",
            },
            times=times, skip=skip,
        )

    def expire_token(self, token: str) -> None:
        self.expired_tokens.add(token)

    def find(self, method: str, path_pattern: str) -> list[Recorded]:
        pattern = re.compile(path_pattern)
        return [r for r in self.requests if r.method == method and pattern.fullmatch(r.path)]

    def for_token(self, token: str) -> list[Recorded]:
        return [r for r in self.requests if f"/{token}" in r.path]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every request/gateway event)."""
        async def check() -> Any:
            async with self._changed:
                while not (value := predicate()):
                    await self._changed.wait()
                return value

        try:
            return await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout}s; requests: {self.summary()}") from None

    def summary(self) -> list[str]:
        return [f"{r.method} {r.path} -> {r.status}" for r in self.requests]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- building gateway events -------------------------------------------------------------
    def user(self, user_id: int | str, name: str | None = None, *, bot: bool = False) -> dict[str, Any]:
        name = name or f"user{user_id}"
        return {
            "id": str(user_id), "username": name, "global_name": name, "discriminator": "0",
            "avatar": None, "bot": bot, "public_flags": 0,
        }

    @property
    def bot_user(self) -> dict[str, Any]:
        return {**self.user(self.bot_user_id, "talkies", bot=True), "verified": True, "flags": 0,
                "mfa_enabled": False}

    def guild_payload(self, guild_id: int) -> dict[str, Any]:
        return {
            "id": str(guild_id), "name": f"guild {guild_id}", "icon": None, "owner_id": "1",
            "afk_channel_id": None, "afk_timeout": 300, "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0,
            "roles": [{"id": str(guild_id), "name": "@everyone", "permissions": "1024",
                       "position": 0, "color": 0, "hoist": False, "managed": False,
                       "mentionable": False, "flags": 0}],
            "emojis": [], "stickers": [], "features": [], "mfa_level": 0,
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None,
            "vanity_url_code": None, "description": None, "banner": None, "premium_tier": 0,
            "preferred_locale": "en-US", "public_updates_channel_id": None, "nsfw_level": 0,
            "premium_progress_bar_enabled": False, "joined_at": "2026-01-01T00:00:00+00:00",
            "large": False, "unavailable": False, "member_count": 2, "members": [],
            "channels": [{"id": str(self.channel_id), "type": 0, "name": "general", "position": 0,
                          "permission_overwrites": [], "nsfw": False, "parent_id": None,
                          "topic": None, "rate_limit_per_user": 0}],
            "threads": [], "presences": [], "voice_states": [], "stage_instances": [],
            "guild_scheduled_events": [], "soundboard_sounds": [],
        }

    def shard_of(self, guild_id: int | str | None) -> int:
        return 0 if guild_id is None else (int(guild_id) >> 22) % self.shards

    async def dispatch(self, event: str, data: dict[str, Any], shard_id: int = 0) -> None:
        """Send a dispatch to the shard's session (kept for RESUME if it is disconnected)."""
        session = self._session_for_shard(shard_id)
        if session is None:
            raise AssertionError(f"no gateway session for shard {shard_id}")
        await self._send_dispatch(session, event, data)

    def _session_for_shard(self, shard_id: int) -> _Session | None:
        found = [s for s in self._sessions.values() if s.shard[0] == shard_id]
        return found[-1] if found else None

    def resumes(self, shard_id: int = 0) -> int:
        """How many times the shard's session was resumed."""
        session = self._session_for_shard(shard_id)
        return 0 if session is None else session.resumed

    def connected(self, shard_id: int = 0) -> bool:
        session = self._session_for_shard(shard_id)
        return session is not None and session.ws is not None and not session.ws.closed

    async def slash(
        self,
        name: str,
        options: list[dict[str, Any]] | None = None,
        *,
        user_id: int = 1001,
        user_name: str = "alice",
        guild_id: int | None = 7001,
        permissions: int = 0,
        attachment_size_limit: int = DEFAULT_UPLOAD_LIMIT,
        resolved_users: list[dict[str, Any]] | None = None,
        resolved_attachments: list[dict[str, Any]] | None = None,
        channel_id: int | None = None,
        dm_channel_id: int = 8101,
    ) -> InteractionRecord:
        """Dispatch an INTERACTION_CREATE for a slash command; returns its record."""
        interaction_id = self.snowflake()
        token = f"tok{interaction_id}"
        command = next(
            (c for cmds in self.commands.values() for c in cmds if c["name"] == name), None
        )
        user = self.user(user_id, user_name)
        if guild_id is not None:
            channel = {"id": str(channel_id or self.channel_id), "type": 0, "name": "general",
                       "guild_id": str(guild_id)}
        else:
            channel = {"id": str(dm_channel_id), "type": 1, "recipients": [user]}
        data: dict[str, Any] = {
            "id": command["id"] if command else self.snowflake(), "name": name, "type": 1,
            "options": options or [],
        }
        if resolved_users:
            data["resolved"] = {"users": {u["id"]: u for u in resolved_users}}
            if guild_id is not None:
                data["resolved"]["members"] = {
                    u["id"]: {"roles": [], "joined_at": "2026-01-01T00:00:00+00:00",
                              "deaf": False, "mute": False, "flags": 0, "permissions": "0"}
                    for u in resolved_users
                }
        if resolved_attachments:
            data.setdefault("resolved", {})["attachments"] = {a["id"]: a for a in resolved_attachments}
        payload: dict[str, Any] = {
            "id": interaction_id, "application_id": str(self.application_id), "type": 2,
            "token": token, "version": 1, "data": data, "channel": channel,
            "channel_id": channel["id"], "attachment_size_limit": attachment_size_limit,
            "app_permissions": str(discord.Permissions.all().value), "locale": "en-US",
            "entitlements": [], "authorizing_integration_owners": {"0": str(guild_id or 0)},
            "context": 0 if guild_id is not None else 1,
        }
        if guild_id is not None:
            payload["guild_id"] = str(guild_id)
            payload["guild_locale"] = "en-US"
            payload["member"] = {
                "user": user, "roles": [], "joined_at": "2026-01-01T00:00:00+00:00",
                "deaf": False, "mute": False, "flags": 0, "permissions": str(permissions),
                "nick": None, "avatar": None,
            }
        else:
            payload["user"] = user
        record = InteractionRecord(
            id=interaction_id, token=token, channel_id=channel["id"],
            guild_id=None if guild_id is None else str(guild_id), user_id=str(user_id),
            attachment_size_limit=attachment_size_limit,
        )
        self.interactions[token] = record
        await self.dispatch("INTERACTION_CREATE", payload, shard_id=self.shard_of(guild_id))
        return record

    async def press(
        self, message: dict[str, Any], custom_id: str, *, user_id: int = 1001,
        user_name: str = "alice", guild_id: int | None = 7001,
        attachment_size_limit: int = DEFAULT_UPLOAD_LIMIT,
    ) -> InteractionRecord:
        """Dispatch an INTERACTION_CREATE for a button press on ``message``; returns its record."""
        interaction_id = self.snowflake()
        token = f"tok{interaction_id}"
        user = self.user(user_id, user_name)
        channel = {"id": message["channel_id"], "type": 0, "name": "general",
                   "guild_id": str(guild_id)}
        payload: dict[str, Any] = {
            "id": interaction_id, "application_id": str(self.application_id), "type": 3,
            "token": token, "version": 1, "data": {"custom_id": custom_id, "component_type": 2},
            "message": message, "channel": channel, "channel_id": message["channel_id"],
            "attachment_size_limit": attachment_size_limit,
            "app_permissions": str(discord.Permissions.all().value), "locale": "en-US",
            "entitlements": [], "authorizing_integration_owners": {"0": str(guild_id or 0)},
            "context": 0, "guild_id": str(guild_id), "guild_locale": "en-US",
            "member": {"user": user, "roles": [], "joined_at": "2026-01-01T00:00:00+00:00",
                       "deaf": False, "mute": False, "flags": 0, "permissions": "0",
                       "nick": None, "avatar": None},
        }
        record = InteractionRecord(
            id=interaction_id, token=token, channel_id=message["channel_id"],
            guild_id=str(guild_id), user_id=str(user_id),
            attachment_size_limit=attachment_size_limit,
        )
        self.interactions[token] = record
        await self.dispatch("INTERACTION_CREATE", payload, shard_id=self.shard_of(guild_id))
        return record

    def attachment(self, data: bytes, filename: str = "clip.mp4", *, size: int | None = None,
                   content_type: str = "video/mp4") -> dict[str, Any]:
        """A file a user attached to a command (pass it in ``resolved_attachments``; the option's
        value is its ``id``); ``size`` overrides the announced size."""
        attachment_id = self.snowflake()
        self.user_attachments[attachment_id] = data
        url = f"http://127.0.0.1:{self.port}/attachments/{attachment_id}/{filename}"
        return {"id": attachment_id, "filename": filename, "size": len(data) if size is None else size,
                "url": url, "proxy_url": url, "content_type": content_type}

    async def _attachment_file(self, request: web.Request) -> web.Response:
        attachment_id = request.match_info["id"]
        if attachment_id not in self.user_attachments:
            return web.Response(status=404)
        self.attachment_downloads.append(attachment_id)
        return web.Response(body=self.user_attachments[attachment_id],
                            content_type="application/octet-stream")

    # -- gateway -----------------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        session: _Session | None = None
        try:
            await ws.send_json({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op, d = frame.get("op"), frame.get("d")
                if op == 1:
                    self.heartbeats += 1
                    await ws.send_json({"op": 11})
                elif op == 2:
                    session = await self._identify(ws, d)
                elif op == 6:
                    session = await self._resume(ws, d)
                await self._notify()
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
            await self._notify()
        return ws

    async def _identify(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> _Session:
        self.identifies.append(d)
        shard_id, count = d.get("shard") or [0, 1]
        session = _Session(session_id=f"session{next(self._ids)}", shard=(shard_id, count), ws=ws)
        self._sessions[session.session_id] = session
        guilds = [g for g in self.guild_ids if (g >> 22) % count == shard_id]
        await self._send_dispatch(session, "READY", {
            "v": 10, "user": self.bot_user, "session_id": session.session_id,
            "resume_gateway_url": self.gateway_url, "shard": [shard_id, count],
            "guilds": [{"id": str(g), "unavailable": True} for g in guilds],
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [], "relationships": [], "user_settings": {},
            "guild_join_requests": [], "presences": [], "geo_ordered_rtc_regions": [],
        })
        for guild_id in guilds:
            await self._send_dispatch(session, "GUILD_CREATE", self.guild_payload(guild_id))
        return session

    async def _resume(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> _Session | None:
        session = self._sessions.get(d.get("session_id", ""))
        if session is None:
            await ws.send_json({"op": 9, "d": False})
            return None
        session.ws = ws
        session.resumed += 1
        seq = int(d.get("seq") or 0)
        for frame in session.sent:
            if frame["s"] > seq:
                await ws.send_json(frame)
        await self._send_dispatch(session, "RESUMED", {})
        return session

    async def _send_dispatch(self, session: _Session, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.sent.append(frame)
        if session.ws is not None and not session.ws.closed:
            try:
                await session.ws.send_json(frame)
            except ConnectionError:
                pass  # replayed on RESUME

    async def drop_gateway(self, shard_id: int = 0, code: int = 4000) -> None:
        """Close the shard's websocket from the server side (the client should RESUME)."""
        session = self._session_for_shard(shard_id)
        assert session is not None and session.ws is not None
        ws, session.ws = session.ws, None
        await ws.close(code=code, message=b"fake: connection dropped")
        await self._notify()

    async def send_reconnect(self, shard_id: int = 0) -> None:
        """Ask the client to reconnect (op 7), as Discord does before maintenance."""
        session = self._session_for_shard(shard_id)
        assert session is not None and session.ws is not None
        await session.ws.send_json({"op": 7, "d": None})

    # -- REST --------------------------------------------------------------------------------
    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body, files = await self._read_body(request)
        record = Recorded(request.method, path, dict(request.query), body, files, time.monotonic())
        self.requests.append(record)
        hold = self._hold_for(record)
        try:
            if hold is not None and not hold.apply:
                response = json_response({"message": "fake: request lost", "code": 0}, 503)
            else:
                response = self._planned(record) or await self._route(record)
        except web.HTTPException as exc:  # pragma: no cover - unexpected routes
            response = json_response({"message": exc.reason, "code": 0}, status=exc.status)
        if hold is not None:
            hold.held.append(record)
            await self._notify()
            await hold.release.wait()
        record.status = response.status
        await self._notify()
        return response

    def _hold_for(self, record: Recorded) -> PlannedHold | None:
        for hold in self._holds:
            if (hold.times > 0 and hold.method == record.method
                    and hold.pattern.fullmatch(record.path)
                    and (record.files or not hold.uploads_only)):
                hold.times -= 1
                return hold
        return None

    async def _read_body(self, request: web.Request) -> tuple[Any, list[Upload]]:
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            files: list[Upload] = []
            body: Any = None
            for name, value in form.items():
                if isinstance(value, web.FileField):
                    files.append(Upload(name, value.filename, value.file.read()))
                elif name == "payload_json":
                    body = json.loads(value)
            return body, files
        raw = await request.read()
        return (json.loads(raw) if raw else None), []

    def _planned(self, record: Recorded) -> web.Response | None:
        for failure in self._failures:
            if (failure.times > 0 and failure.method == record.method
                    and failure.pattern.fullmatch(record.path)
                    and (record.files or not failure.uploads_only)):
                if failure.skip > 0:
                    failure.skip -= 1
                    continue
                failure.times -= 1
                return json_response(failure.body, failure.status, failure.headers)
        return None

    async def _route(self, r: Recorded) -> web.Response:
        app = str(self.application_id)
        m = r.method
        if m == "GET" and r.path == "/users/@me":
            return json_response(self.bot_user)
        if m == "GET" and r.path == "/oauth2/applications/@me":
            return json_response(self._application())
        if m == "GET" and r.path in ("/gateway", "/gateway/bot"):
            return json_response({
                "url": f"ws://127.0.0.1:{self.port}/gateway", "shards": self.shards,
                "session_start_limit": {"total": 1000, "remaining": 1000,
                                        "reset_after": 0, "max_concurrency": 1},
            })
        if match := re.fullmatch(rf"/applications/{app}(?:/guilds/(\d+))?/commands", r.path):
            if m == "PUT":
                return json_response(self._sync_commands(match.group(1) or "global", r.body or []))
            if m == "GET":
                return json_response(self.commands.get(match.group(1) or "global", []))
        if match := re.fullmatch(r"/interactions/(\d+)/([^/]+)/callback", r.path):
            return self._callback(match.group(2), r)
        if match := re.fullmatch(rf"/webhooks/{app}/([^/]+)/messages/@original", r.path):
            return self._original(match.group(1), r)
        if match := re.fullmatch(rf"/webhooks/{app}/([^/]+)", r.path):
            if m == "POST":
                return self._followup(match.group(1), r)
        if match := re.fullmatch(r"/channels/(\d+)/messages", r.path):
            if m == "POST":
                return self._channel_message(match.group(1), r)
            if m == "GET":
                return self._channel_history(match.group(1), r)
        if m == "POST" and r.path == "/users/@me/channels":
            recipient = str((r.body or {}).get("recipient_id"))
            return json_response({"id": f"9{recipient}", "type": 1, "last_message_id": None,
                                  "recipients": [self.user(recipient)]})
        if match := re.fullmatch(r"/users/(\d+)", r.path):
            return json_response(self.user(match.group(1)))
        return json_response({"message": f"fake: no route for {m} {r.path}", "code": 0}, 404)

    def _application(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id), "name": "talkies", "icon": None,
            "description": "fake", "summary": "", "bot_public": True,
            "bot_require_code_grant": False, "verify_key": "00", "flags": 0,
            "owner": self.user(1, "owner"), "team": None, "rpc_origins": [],
            "bot": self.bot_user, "tags": [], "interactions_endpoint_url": None,
            "redirect_uris": [], "approximate_guild_count": len(self.guild_ids),
        }

    def _sync_commands(self, scope: str, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for cmd in commands:
            full = {**cmd, "id": self.snowflake(), "application_id": str(self.application_id),
                    "version": self.snowflake(), "type": cmd.get("type", 1)}
            if scope != "global":
                full["guild_id"] = scope
            out.append(full)
        self.commands[scope] = out
        return out

    def _token_error(self, token: str) -> web.Response | None:
        if token in self.expired_tokens:
            return json_response({"message": "Invalid Webhook Token", "code": 50027}, 401)
        if token not in self.interactions:
            return json_response({"message": "Unknown Webhook", "code": 10015}, 404)
        return None

    def _too_large(self, files: list[Upload], limit: int) -> web.Response | None:
        if sum(len(f.data) for f in files) > limit:
            return json_response({"message": "Request entity too large", "code": 40005}, 413)
        return None

    def _message(self, channel_id: str, body: dict[str, Any], files: list[Upload],
                 *, flags: int = 0, interaction: InteractionRecord | None = None) -> dict[str, Any]:
        message = {
            "id": self.snowflake(), "channel_id": channel_id, "type": 0 if interaction is None else 20,
            "content": body.get("content") or "", "author": self.bot_user, "tts": False,
            "timestamp": "2026-11-28T12:00:00+00:00", "edited_timestamp": None,
            "mention_everyone": False, "mentions": [], "mention_roles": [], "pinned": False,
            "embeds": body.get("embeds") or [], "components": [], "flags": flags,
            "attachments": self._attachments(files),
        }
        if interaction is not None:
            message["webhook_id"] = str(self.application_id)
            message["application_id"] = str(self.application_id)
        return message

    def _attachments(self, files: list[Upload]) -> list[dict[str, Any]]:
        return [
            {"id": self.snowflake(), "filename": f.filename, "size": len(f.data),
             "url": f"https://cdn.invalid/{f.filename}", "proxy_url": f"https://cdn.invalid/{f.filename}",
             "content_type": mimetypes.guess_type(f.filename)[0] or "application/octet-stream"}
            for f in files
        ]

    def _callback(self, token: str, r: Recorded) -> web.Response:
        record = self.interactions.get(token)
        if record is None:
            return json_response({"message": "Unknown interaction", "code": 10062}, 404)
        if record.responded:
            return json_response({"message": "Interaction has already been acknowledged.",
                                  "code": 40060}, 400)
        record.responded = True
        body = r.body or {}
        data = body.get("data") or {}
        record.ephemeral = bool(int(data.get("flags") or 0) & EPHEMERAL)
        record.message = self._message(record.channel_id, data, r.files,
                                       flags=EPHEMERAL if record.ephemeral else 0, interaction=record)
        return json_response({
            "interaction": {"id": record.id, "type": 2,
                            "response_message_id": record.message["id"],
                            "response_message_loading": body.get("type") == 5,
                            "response_message_ephemeral": record.ephemeral},
            "resource": {"type": body.get("type"), "message": record.message}
            if body.get("type") == 4 else None,
        })

    def _original(self, token: str, r: Recorded) -> web.Response:
        if error := self._token_error(token):
            return error
        record = self.interactions[token]
        if not record.responded or record.deleted or record.message is None:
            return json_response({"message": "Unknown Message", "code": 10008}, 404)
        if r.method == "DELETE":
            record.deleted = True
            return web.Response(status=204)
        if r.method == "GET":
            return json_response(record.message)
        if error := self._too_large(r.files, record.attachment_size_limit):
            return error
        body = r.body or {}
        if "content" in body:
            record.message["content"] = body["content"] or ""
        if "attachments" in body:
            record.message["attachments"] = self._attachments(r.files)
        if "components" in body:
            record.message["components"] = body["components"]
        return json_response(record.message)

    def _followup(self, token: str, r: Recorded) -> web.Response:
        if error := self._token_error(token):
            return error
        record = self.interactions[token]
        if error := self._too_large(r.files, record.attachment_size_limit):
            return error
        body = r.body or {}
        message = self._message(record.channel_id, body, r.files,
                                flags=int(body.get("flags") or 0), interaction=record)
        record.followups.append(message)
        return json_response(message)

    def _channel_history(self, channel_id: str, r: Recorded) -> web.Response:
        """GET a channel's messages: newest first, ``limit`` (max 100) and ``before``."""
        messages = list(reversed(self.channel_messages.get(channel_id, [])))
        if r.query.get("before"):
            messages = [msg for msg in messages if int(msg["id"]) < int(r.query["before"])]
        limit = min(int(r.query.get("limit") or 50), 100)
        return json_response(messages[:limit])

    def _channel_message(self, channel_id: str, r: Recorded) -> web.Response:
        if error := self._too_large(r.files, self.channel_upload_limit):
            return error
        message = self._message(channel_id, r.body or {}, r.files)
        self.channel_messages.setdefault(channel_id, []).append(message)
        return json_response(message)


# -- running the real bot against the fake ---------------------------------------------------
MANAGE_GUILD = 1 << 5
ORIGINAL = r"/webhooks/\d+/{token}/messages/@original"


class WallClock:
    """A wall clock (unix seconds) the test can move forward; starts at real time."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@contextlib.asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[FakeDiscord]:
    """A started fake (heartbeat every 500 ms unless told) with discord.py pointed at it; always
    uninstalled and closed."""
    options.setdefault("heartbeat_interval_ms", 500)
    server = FakeDiscord(**options)
    await server.start()
    server.install()
    try:
        yield server
    finally:
        server.uninstall()
        await server.close()


@contextlib.asynccontextmanager
async def running_bot(
    fake: FakeDiscord, settings: Settings, service: Service, **options: Any
) -> AsyncIterator[DiscordBot]:
    """Start the real bot against the fake; yields once it is READY; always closes it."""
    options.setdefault("guild_ready_timeout", 0.05)
    options.setdefault("identify_spacing_s", 0.0)
    options.setdefault("edit_interval_s", 0.3)
    bot = build_bot(settings, service, **options)
    task = asyncio.create_task(bot.start("fake-token"), name="discord-bot")
    try:
        await fake.wait_for(lambda: task.done() or bot.client.is_ready(), timeout=15)
        if task.done():
            task.result()  # raise the start-up error
        yield bot
    finally:
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


def opt(name: str, value: Any, type_: int = 3) -> dict[str, Any]:
    """A slash-command option as Discord sends it (3 string, 4 integer, 6 user, 10 number)."""
    return {"name": name, "type": type_, "value": value}


def originals(fake: FakeDiscord, token: str, method: str = "PATCH") -> list[Recorded]:
    return fake.find(method, ORIGINAL.format(token=token))


def final_upload(fake: FakeDiscord, token: str) -> Recorded | None:
    found = [r for r in originals(fake, token) if r.files and r.status == 200]
    return found[-1] if found else None


async def answered(fake: FakeDiscord, record: InteractionRecord) -> str:
    """The text the user finally sees for a command answered by editing its deferral."""
    edits = await fake.wait_for(lambda: [
        r for r in originals(fake, record.token) if r.status == 200
    ])
    return str(edits[-1].content)


async def ephemeral_error(fake: FakeDiscord, record: InteractionRecord) -> str:
    """The private message of a refused command (deferral deleted, ephemeral follow-up)."""
    await fake.wait_for(lambda: record.followups or record.ephemeral and originals(fake, record.token))
    if record.followups:
        followup = record.followups[-1]
        assert followup["flags"] & EPHEMERAL
        return str(followup["content"])
    return await answered(fake, record)


async def ephemeral_answer(fake: FakeDiscord, record: InteractionRecord) -> str:
    """The private answer to a button press (an ephemeral follow-up or callback message)."""
    await fake.wait_for(lambda: record.message is not None or record.followups)
    if record.followups:
        assert record.followups[-1]["flags"] & EPHEMERAL
        return str(record.followups[-1]["content"])
    assert record.ephemeral and record.message is not None
    return str(record.message["content"])


def make_mp4(seconds: float = 2.0, size: tuple[int, int] = (160, 120), fps: int = 24,
             noisy: bool = False) -> bytes:
    """A real H.264 + AAC MP4; ``noisy`` frames compress badly (a big file for limit tests)."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    with av.open(buffer, "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "0" if noisy else "30", "preset": "ultrafast"}
        audio = container.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        for i in range(int(seconds * fps)):
            if noisy:
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            else:
                pixels = np.full((size[1], size[0], 3), (i * 7) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        t = np.arange(int(48000 * seconds)) / 48000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = tone[start:start + 1024]
            frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
            frame.sample_rate = 48000
            frame.pts = start
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return buffer.getvalue()
