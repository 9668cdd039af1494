"""A small fake Telegram Bot API on 127.0.0.1 for driving the real python-telegram-bot.

It speaks the wire format python-telegram-bot uses (``POST /bot<token>/<method>``, form or
multipart bodies, ``{"ok": ..., "result": ...}`` answers), keeps the chat state a test needs
to look at (every call in order, each message's text history, uploaded videos) and lets a
test push updates, set members' rights and inject errors such as a 429 ``retry_after``.
It enforces a few real rules too: edits to unknown messages and no-op edits fail, text and
caption lengths are checked, uploads over the limit get 413, photos over Telegram's photo
limits (10 MB; width + height <= 10000, sides at most 20:1, read from the file) are refused.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

STRING_FIELDS = frozenset({
    "text", "caption", "action", "parse_mode", "callback_query_id", "description",
    "short_description", "name", "language_code", "url", "emoji", "query", "title",
})
MAX_TEXT = 4096
MAX_CAPTION = 1024
UPLOAD_LIMIT = 50_000_000
PHOTO_LIMIT = 10_000_000
DOWNLOAD_LIMIT = 20_000_000  # getFile refuses bigger files ("file is too big")
LONG_POLL_MAX_S = 1.0


@dataclass(frozen=True)
class User:
    id: int
    first_name: str
    username: str | None = None
    is_bot: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.username:
            data["username"] = self.username
        return data


@dataclass(frozen=True)
class Chat:
    id: int
    type: str  # private, group, supergroup
    title: str | None = None
    first_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.title:
            data["title"] = self.title
        if self.first_name:
            data["first_name"] = self.first_name
        return data

    @classmethod
    def private(cls, user: User) -> Chat:
        return cls(user.id, "private", first_name=user.first_name)

    @classmethod
    def group(cls, chat_id: int, title: str = "Test group") -> Chat:
        return cls(chat_id, "supergroup", title=title)


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float
    files: dict[str, bytes] = field(default_factory=dict)
    error: int | None = None  # error code answered, if any


@dataclass
class SentMessage:
    """A message the bot sent, with every text it showed (first = sent, then edits)."""

    chat_id: int
    message_id: int
    texts: list[str]
    reply_to: int | None
    edit_times: list[float] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.texts[-1]


@dataclass
class SentVideo:
    chat_id: int
    message_id: int
    data: bytes
    params: dict[str, Any]
    filename: str | None


@dataclass
class Hold:
    """Calls of ``method`` wait, unanswered, until ``release`` is set (see ``FakeBotAPI.hold``)."""

    method: str
    apply: bool
    times: int
    release: asyncio.Event = field(default_factory=asyncio.Event)
    held: list[Call] = field(default_factory=list)


@dataclass
class Failure:
    method: str
    code: int
    description: str
    retry_after: int | None
    times: int
    when: Callable[[dict[str, Any]], bool] | None


def _decode(key: str, value: str) -> Any:
    """Bot API form values are JSON except plain strings (so "123" as text stays a string)."""
    if key in STRING_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


class FakeBotAPI:
    """The fake server. ``async with FakeBotAPI() as api:`` then point the bot at ``api.base_url``."""

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        *,
        bot: User | None = None,
        upload_limit: int = UPLOAD_LIMIT,
        long_poll_max_s: float = LONG_POLL_MAX_S,
    ) -> None:
        self.token = token
        self.me = bot or User(int(token.split(":")[0]), "Talkies", "talkies_test_bot", is_bot=True)
        self.upload_limit = upload_limit
        self.long_poll_max_s = long_poll_max_s
        self.calls: list[Call] = []
        self.sent: dict[tuple[int, int], SentMessage] = {}
        self.videos: list[SentVideo] = []
        self.photos: list[SentVideo] = []  # sendPhoto uploads (data, params, filename)
        self.documents: list[SentVideo] = []  # sendDocument uploads
        self.media_groups: list[list[tuple[dict[str, Any], bytes]]] = []  # (item, file) each
        self.user_files: dict[str, bytes] = {}  # file_id -> bytes users sent (getFile serves them)
        self.downloads: list[str] = []  # file paths the bot fetched
        self.commands: list[dict[str, Any]] | None = None
        self.members: dict[tuple[int, int], str] = {}
        self.rights: dict[tuple[int, int], dict[str, bool]] = {}
        self.failures: list[Failure] = []
        self.holds: list[Hold] = []
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._changed = asyncio.Event()
        self._new_update = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- server -------------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=256 * 2**20)
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.*}", self._download)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._new_update.set()
        for hold in self.holds:
            hold.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBotAPI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # -- what tests do ------------------------------------------------------------------------
    def fail(
        self, method: str, *, code: int = 429, description: str | None = None,
        retry_after: int | None = None, times: int = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Answer the next ``times`` matching calls of ``method`` with an error."""
        if description is None:
            description = (f"Too Many Requests: retry after {retry_after}" if code == 429
                           else "Bad Request")
        self.failures.append(Failure(method, code, description, retry_after, times, when))

    def hold(self, method: str, *, apply: bool, times: int = 1) -> Hold:
        """Leave the next ``times`` calls of ``method`` unanswered until ``release`` is set.

        ``apply``: the call takes effect first (e.g. the video is posted; only the answer
        never reaches the bot); otherwise it never does (lost on the way).
        """
        hold = Hold(method, apply, times)
        self.holds.append(hold)
        return hold

    def set_member(self, chat_id: int, user: User, status: str, **rights: bool) -> None:
        """``creator``, ``administrator``, ``member``, ``left``...; an administrator's rights
        default to Telegram's for a newly promoted admin, ``rights`` override them."""
        self.members[(chat_id, user.id)] = status
        self.rights[(chat_id, user.id)] = rights

    def push_message(
        self, chat: Chat, user: User, text: str, *, reply_to: int | None = None,
        entities: list[dict[str, Any]] | None = None, sender_chat: Chat | None = None,
    ) -> dict[str, Any]:
        """Deliver a user's text message to the bot (commands and @mentions get entities)."""
        message = self._new_message(chat, user, text=text, reply_to=reply_to)
        found = entities if entities is not None else self._entities(text)
        if found:
            message["entities"] = found
        if sender_chat is not None:
            message["sender_chat"] = sender_chat.to_dict()
        self._push({"message": message})
        return message

    def push_content(self, chat: Chat, user: User, **content: Any) -> dict[str, Any]:
        """Deliver any other kind of message (``sticker=...``, ``photo=...``)."""
        message = self._new_message(chat, user, **content)
        self._push({"message": message})
        return message

    def user_file(self, data: bytes, *, size: int | None = None, **fields: Any) -> dict[str, Any]:
        """A file a user sent (for ``push_content(video=...)``); ``size`` overrides the
        announced ``file_size`` (a large file without the bytes)."""
        file_id = f"userfile{len(self.user_files) + 1}"
        self.user_files[file_id] = data
        return {"file_id": file_id, "file_unique_id": f"uu{len(self.user_files)}",
                "file_size": len(data) if size is None else size, **fields}

    def push_callback(self, chat: Chat, user: User, data: str, message_id: int) -> str:
        query_id = f"cq{next(self._update_ids)}"
        message = self._messages.get((chat.id, message_id)) or {
            "message_id": message_id, "date": int(time.time()), "chat": chat.to_dict(),
        }
        self._push({"callback_query": {
            "id": query_id, "from": user.to_dict(), "chat_instance": str(chat.id),
            "data": data, "message": message,
        }})
        return query_id

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def bot_messages(self, chat_id: int) -> list[SentMessage]:
        return [m for (c, _), m in sorted(self.sent.items()) if c == chat_id]

    def replies_to(self, chat_id: int, message_id: int) -> list[SentMessage]:
        return [m for m in self.bot_messages(chat_id) if m.reply_to == message_id]

    @property
    def pending_updates(self) -> int:
        return len(self._updates)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy (checked after every call the bot makes)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not (result := predicate()):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s; calls: {self.summary()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.25))
            except TimeoutError:
                pass
        return result

    async def wait_reply(self, chat_id: int, message_id: int, timeout: float = 10.0) -> SentMessage:
        replies = await self.wait_for(lambda: self.replies_to(chat_id, message_id), timeout)
        return replies[0]

    def summary(self) -> list[str]:
        out = []
        for call in self.calls[-40:]:
            detail = call.params.get("text") or call.params.get("caption") or ""
            out.append(f"{call.method}{'!' + str(call.error) if call.error else ''} {detail!r}"[:160])
        return out

    # -- internals ----------------------------------------------------------------------------
    def _entities(self, text: str) -> list[dict[str, Any]]:
        entities = []
        if text.startswith("/"):
            command = text.split()[0]
            entities.append({"type": "bot_command", "offset": 0, "length": _u16(command)})
        offset = 0
        for word in text.split(" "):
            if word.startswith("@") and len(word) > 1:
                entities.append({"type": "mention", "offset": _u16(text[:offset]),
                                 "length": _u16(word)})
            offset += len(word) + 1
        return entities

    def _push(self, update: dict[str, Any]) -> None:
        update["update_id"] = next(self._update_ids)
        self._updates.append(update)
        self._new_update.set()

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _new_message(
        self, chat: Chat, sender: User, *, reply_to: int | None = None, **content: Any
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat.id), "date": int(time.time()),
            "chat": chat.to_dict(), "from": sender.to_dict(), **content,
        }
        if reply_to is not None and (chat.id, reply_to) in self._messages:
            message["reply_to_message"] = self._messages[(chat.id, reply_to)]
        self._messages[(chat.id, message["message_id"])] = message
        return message

    def _chat(self, chat_id: int) -> Chat:
        for (cid, _), message in self._messages.items():
            if cid == chat_id:
                data = message["chat"]
                return Chat(data["id"], data["type"], data.get("title"), data.get("first_name"))
        return Chat(chat_id, "private" if chat_id > 0 else "supergroup")

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, tuple[bytes, str | None]]]:
        params: dict[str, Any] = {}
        files: dict[str, tuple[bytes, str | None]] = {}
        if request.content_type == "application/json":
            params = await request.json()
        elif request.can_read_body:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = (value.file.read(), value.filename)
                else:
                    params[key] = _decode(key, str(value))
        params.update({k: _decode(k, v) for k, v in request.query.items()})
        return params, files

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        params, files = await self._params(request)
        call = Call(method, params, time.monotonic(), {k: v[0] for k, v in files.items()})
        self.calls.append(call)
        hold = next((h for h in self.holds if h.method == method and h.times > 0), None)
        if hold is not None:
            hold.times -= 1
            response = await self._answer(call, method, params, files) if hold.apply else None
            hold.held.append(call)
            self._changed.set()
            await hold.release.wait()
            self._changed.set()
            if response is None:
                call.error = 503
                return _error(503, "Service Unavailable: the call was lost")
            return response
        return await self._answer(call, method, params, files)

    async def _answer(
        self, call: Call, method: str, params: dict[str, Any],
        files: dict[str, tuple[bytes, str | None]],
    ) -> web.Response:
        try:
            failure = self._failure(method, params)
            if failure is not None:
                call.error = failure.code
                extra = {"retry_after": failure.retry_after} if failure.retry_after else None
                return _error(failure.code, failure.description, extra)
            handler = getattr(self, f"_api_{method}", None)
            if handler is None:
                call.error = 404
                return _error(404, "Not Found")
            try:
                result = handler(params, files)
                if asyncio.iscoroutine(result):
                    result = await result
            except ApiError as exc:
                call.error = exc.code
                return _error(exc.code, exc.description)
            return web.json_response({"ok": True, "result": result})
        finally:
            self._changed.set()

    def _failure(self, method: str, params: dict[str, Any]) -> Failure | None:
        for failure in self.failures:
            if failure.method == method and failure.times > 0 and (
                failure.when is None or failure.when(params)
            ):
                failure.times -= 1
                return failure
        return None

    # -- methods ------------------------------------------------------------------------------
    def _api_getMe(self, params: dict[str, Any], files: Any) -> dict[str, Any]:
        return {**self.me.to_dict(), "can_join_groups": True,
                "can_read_all_group_messages": False, "supports_inline_queries": False}

    def _api_deleteWebhook(self, params: dict[str, Any], files: Any) -> bool:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _api_getUpdates(self, params: dict[str, Any], files: Any) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        if offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates:
            self._new_update.clear()
            wait = min(float(params.get("timeout") or 0), self.long_poll_max_s)
            if wait > 0:
                try:
                    await asyncio.wait_for(self._new_update.wait(), wait)
                except TimeoutError:
                    pass
        limit = int(params.get("limit") or 100)
        allowed = params.get("allowed_updates")
        updates = [u for u in self._updates
                   if not allowed or any(kind in u for kind in allowed)]
        return updates[:limit]

    def _api_setMyCommands(self, params: dict[str, Any], files: Any) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or not all(
            isinstance(c, dict) and c.get("command") and c.get("description") for c in commands
        ):
            raise ApiError(400, "Bad Request: can't parse commands")
        self.commands = commands
        return True

    def _api_getMyCommands(self, params: dict[str, Any], files: Any) -> list[dict[str, Any]]:
        return self.commands or []

    def _api_sendMessage(self, params: dict[str, Any], files: Any) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        text = str(params.get("text") or "")
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        reply_to = _reply_to(params)
        message = self._new_message(self._chat(chat_id), self.me, text=text, reply_to=reply_to)
        self.sent[(chat_id, message["message_id"])] = SentMessage(
            chat_id, message["message_id"], [text], reply_to
        )
        return message

    def _api_editMessageText(self, params: dict[str, Any], files: Any) -> dict[str, Any]:
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        text = str(params.get("text") or "")
        sent = self.sent.get((chat_id, message_id))
        if sent is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        if text == sent.text:
            raise ApiError(
                400, "Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup of "
                "the message",
            )
        sent.texts.append(text)
        sent.edit_times.append(time.monotonic())
        message = dict(self._messages[(chat_id, message_id)])
        message.update(text=text, edit_date=int(time.time()))
        self._messages[(chat_id, message_id)] = message
        return message

    def _api_sendChatAction(self, params: dict[str, Any], files: Any) -> bool:
        if params.get("action") not in {"typing", "upload_photo", "record_video", "upload_video",
                                        "record_voice", "upload_voice", "upload_document",
                                        "choose_sticker", "find_location", "record_video_note",
                                        "upload_video_note"}:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    def _api_sendVideo(self, params: dict[str, Any], files: dict[str, tuple[bytes, str | None]]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        if "video" not in files:
            raise ApiError(400, "Bad Request: there is no video in the request")
        data, filename = files["video"]
        if len(data) > self.upload_limit:
            raise ApiError(413, "Request Entity Too Large")
        caption = params.get("caption")
        if caption is not None and len(str(caption)) > MAX_CAPTION:
            raise ApiError(400, "Bad Request: message caption is too long")
        reply_to = _reply_to(params)
        video = {
            "file_id": f"video{len(self.videos) + 1}", "file_unique_id": f"u{len(self.videos) + 1}",
            "width": int(params.get("width") or 0), "height": int(params.get("height") or 0),
            "duration": int(params.get("duration") or 0), "mime_type": "video/mp4",
            "file_size": len(data), "file_name": filename,
        }
        content: dict[str, Any] = {"video": video}
        if caption is not None:
            content["caption"] = str(caption)
        message = self._new_message(self._chat(chat_id), self.me, reply_to=reply_to, **content)
        self.videos.append(SentVideo(chat_id, message["message_id"], data, params, filename))
        return message

    def _upload(self, kind: str, params: dict[str, Any],
                files: dict[str, tuple[bytes, str | None]]) -> tuple[bytes, str | None, dict[str, Any]]:
        """A file upload's bytes, name and new message (``kind``: photo, document)."""
        chat_id = int(params["chat_id"])
        if kind not in files:
            raise ApiError(400, f"Bad Request: there is no {kind} in the request")
        data, filename = files[kind]
        if len(data) > self.upload_limit:
            raise ApiError(413, "Request Entity Too Large")
        caption = params.get("caption")
        if caption is not None and len(str(caption)) > MAX_CAPTION:
            raise ApiError(400, "Bad Request: message caption is too long")
        if kind == "photo":
            if len(data) > PHOTO_LIMIT:
                raise ApiError(400, "Bad Request: photo is too big")
            try:
                with Image.open(io.BytesIO(data)) as picture:
                    width, height = picture.size
            except Exception:
                raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED") from None
            if width + height > 10_000 or max(width, height) > 20 * min(width, height):
                raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
            content: dict[str, Any] = {"photo": [{
                "file_id": f"photo{len(self.photos) + 1}", "file_unique_id": "p",
                "width": width, "height": height, "file_size": len(data)}]}
        else:
            content = {"document": {"file_id": f"doc{len(self.documents) + 1}",
                                    "file_unique_id": "d", "file_name": filename,
                                    "file_size": len(data)}}
        if caption is not None:
            content["caption"] = str(caption)
        message = self._new_message(self._chat(chat_id), self.me, reply_to=_reply_to(params),
                                    **content)
        return data, filename, message

    def _api_sendPhoto(self, params: dict[str, Any], files: dict[str, tuple[bytes, str | None]]) -> dict[str, Any]:
        data, filename, message = self._upload("photo", params, files)
        self.photos.append(SentVideo(int(params["chat_id"]), message["message_id"], data, params,
                                     filename))
        return message

    def _api_sendDocument(self, params: dict[str, Any], files: dict[str, tuple[bytes, str | None]]) -> dict[str, Any]:
        data, filename, message = self._upload("document", params, files)
        self.documents.append(SentVideo(int(params["chat_id"]), message["message_id"], data,
                                        params, filename))
        return message

    def _api_sendMediaGroup(self, params: dict[str, Any], files: dict[str, tuple[bytes, str | None]]) -> list[dict[str, Any]]:
        chat_id = int(params["chat_id"])
        media = params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise ApiError(400, "Bad Request: wrong number of media in the group")
        kinds = {item.get("type") for item in media}
        if len(kinds) != 1 or kinds - {"audio", "document", "photo", "video"}:
            raise ApiError(400, "Bad Request: media of different kinds can't be mixed")
        group, messages = [], []
        for item in media:
            ref = str(item.get("media", ""))
            if not ref.startswith("attach://") or ref.removeprefix("attach://") not in files:
                raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
            data, filename = files[ref.removeprefix("attach://")]
            group.append((item, data))
            content = {item["type"]: {"file_id": f"media{len(self.media_groups)}-{len(group)}",
                                      "file_unique_id": "m", "file_size": len(data),
                                      "file_name": filename}}
            messages.append(self._new_message(self._chat(chat_id), self.me,
                                              reply_to=_reply_to(params), **content))
        self.media_groups.append(group)
        return messages

    def _api_getFile(self, params: dict[str, Any], files: Any) -> dict[str, Any]:
        file_id = str(params.get("file_id"))
        if file_id not in self.user_files:
            raise ApiError(400, "Bad Request: invalid file_id")
        data = self.user_files[file_id]
        if len(data) > DOWNLOAD_LIMIT:
            raise ApiError(400, "Bad Request: file is too big")
        return {"file_id": file_id, "file_unique_id": f"u-{file_id}", "file_size": len(data),
                "file_path": f"videos/{file_id}.mp4"}

    async def _download(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        file_id = path.removeprefix("videos/").removesuffix(".mp4")
        if request.match_info["token"] != self.token or file_id not in self.user_files:
            return web.Response(status=404, text="Not Found")
        self.downloads.append(path)
        self._changed.set()
        return web.Response(body=self.user_files[file_id], content_type="application/octet-stream")

    def _api_answerCallbackQuery(self, params: dict[str, Any], files: Any) -> bool:
        if not params.get("callback_query_id"):
            raise ApiError(400, "Bad Request: query is too old or query ID is invalid")
        return True

    def _api_getChatMember(self, params: dict[str, Any], files: Any) -> dict[str, Any]:
        chat_id, user_id = int(params["chat_id"]), int(params["user_id"])
        status = self.members.get((chat_id, user_id), "member")
        user = {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"}
        member: dict[str, Any] = {"status": status, "user": user}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(
                can_be_edited=False, is_anonymous=False, can_manage_chat=True,
                can_delete_messages=True, can_manage_video_chats=True, can_restrict_members=True,
                can_promote_members=False, can_change_info=True, can_invite_users=True,
                can_post_stories=False, can_edit_stories=False, can_delete_stories=False,
            )
            member.update(self.rights.get((chat_id, user_id), {}))
        elif status == "kicked":
            member["until_date"] = 0
        return member


class ApiError(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def _error(code: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=code)


def _reply_to(params: dict[str, Any]) -> int | None:
    reply = params.get("reply_parameters")
    if isinstance(reply, dict) and reply.get("message_id") is not None:
        return int(reply["message_id"])
    if params.get("reply_to_message_id") is not None:
        return int(params["reply_to_message_id"])
    return None


def _u16(text: str) -> int:
    """Entity offsets and lengths count UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2
