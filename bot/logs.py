"""Logging for every ``talkies`` process, with secrets masked wherever text leaves the process.

Tokens (Discord, Telegram) and the Redis password must never appear in logs, error output or
anything shown to people: python-telegram-bot puts the token in its error texts and every
request URL, and a Redis URL carries its password. :func:`setup_logging` installs one handler
whose formatter masks every configured secret in the finished line (message *and* traceback),
and quiets httpx's per-request INFO lines. :func:`redact` does the same for any text.

``TALKIES_LOG_FORMAT=json`` prints one JSON object a line (``ts``, ``level``, ``logger``,
``message``, ``job_id`` when known, ``exc`` for a traceback), masked the same way; the
default is readable text. Code working on one job runs inside :func:`job_context` (the
watcher's task for a job, the worker's run of it): every line logged there, by us or by a
library, carries that job's id (``[job <id>]`` in text).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import logging.config
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

from config import Settings

MASK = "***"
_secrets: set[str] = set()
current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("talkies_job", default=None)


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Every line logged inside (this task, threads it starts) carries ``job_id``."""
    token = current_job.set(job_id)
    try:
        yield
    finally:
        current_job.reset(token)


class JobIdFilter(logging.Filter):
    """Puts the current job's id on each record (``job_id``, and ``job_tag`` for text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        job_id = getattr(record, "job_id", None) or current_job.get()
        record.job_id = job_id
        record.job_tag = f" [job {job_id}]" if job_id else ""
        return True


def secrets_of(settings: Settings) -> set[str]:
    """Every secret value the settings hold (only those long enough to be real)."""
    found = set()
    for secret in (settings.discord_token, settings.telegram_token):
        if secret is not None:
            found.add(secret.get_secret_value())
    password = urlsplit(settings.redis_url).password
    if password:
        found.add(password)
    return {s for s in found if len(s) >= 4}


def register(values: Iterable[str]) -> None:
    """Add values to mask in everything :func:`redact` and the log handler output."""
    _secrets.update(v for v in values if v and len(v) >= 4)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def masked_url(url: str) -> str:
    """A URL fit to show: its password (if any) becomes ``***``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}{port}"))


class RedactingFormatter(logging.Formatter):
    """A formatter whose every finished line has the secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "job_tag"):
            JobIdFilter().filter(record)
        return redact(super().format(record))


class JsonFormatter(RedactingFormatter):
    """One JSON object a line, secrets masked (in the values, before encoding)."""

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "job_tag"):
            JobIdFilter().filter(record)
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.job_id:  # type: ignore[attr-defined]
            entry["job_id"] = record.job_id  # type: ignore[attr-defined]
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


FORMAT = "%(asctime)s %(levelname)s %(name)s%(job_tag)s: %(message)s"
ARQ_FORMAT = "%(asctime)s:%(job_tag)s %(message)s"  # what the ``arq`` command prints


def make_formatter(settings: Settings, text_format: str, **options: str) -> logging.Formatter:
    """The formatter ``TALKIES_LOG_FORMAT`` asks for."""
    if settings.log_format == "json":
        return JsonFormatter()
    return RedactingFormatter(text_format, **options)


def setup_logging(settings: Settings, *, level: int = logging.INFO) -> None:
    """One stderr handler on the root logger, masking secrets; idempotent.

    Also routes arq's logger (which the ``arq`` command configures by itself) through it in
    arq's own short format, so ``talkies worker`` prints what ``arq ...WorkerSettings`` does.
    """
    register(secrets_of(settings))
    root = logging.getLogger()
    if any(isinstance(h.formatter, RedactingFormatter) for h in root.handlers):
        return
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(settings, FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    arq_handler = logging.StreamHandler(sys.stderr)
    arq_handler.setFormatter(make_formatter(settings, ARQ_FORMAT, datefmt="%H:%M:%S"))
    arq_logger = logging.getLogger("arq")
    arq_logger.handlers = [arq_handler]
    arq_logger.propagate = False
    arq_logger.setLevel(level)
    # httpx logs every request URL at INFO; the Telegram Bot API puts the token in it.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
