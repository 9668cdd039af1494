"""bot.logs formatters: the job id on every line logged inside a job's context (also from a
thread it starts), secrets masked in text and JSON, tracebacks included."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

from bot.logs import job_context, make_formatter, register
from config import load_settings

SECRET = "s3cr3t-TOKEN-value-123"


def capture(tmp_path: Path, log_format: str) -> tuple[logging.Logger, io.StringIO]:
    settings = load_settings(_env_file=None, database_path=tmp_path / "db.sqlite3",
                             log_format=log_format)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(settings, "%(levelname)s %(name)s%(job_tag)s: %(message)s"))
    logger = logging.getLogger(f"test.logs.{log_format}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    register([SECRET])
    return logger, stream


async def log_a_job(logger: logging.Logger) -> None:
    logger.info("before any job")
    with job_context("job42"):
        logger.info("stage video started")
        await asyncio.to_thread(logger.info, "from the pipeline thread")
        try:
            raise RuntimeError(f"token {SECRET} rejected")
        except RuntimeError:
            logger.exception("upload failed")
    logger.info("after the job, url http://x/bot%s/getMe", SECRET)


async def test_json_lines_carry_the_job_id_and_no_secret(tmp_path: Path) -> None:
    logger, stream = capture(tmp_path, "json")
    await log_a_job(logger)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == [
        "before any job", "stage video started", "from the pipeline thread",
        "upload failed", "after the job, url http://x/bot***/getMe",
    ]
    assert [line.get("job_id") for line in lines] == [None, "job42", "job42", "job42", None]
    assert "RuntimeError: token *** rejected" in lines[3]["exc"]
    assert SECRET not in stream.getvalue()
    assert {"ts", "level", "logger"} <= set(lines[0])


async def test_text_lines_tag_the_job(tmp_path: Path) -> None:
    logger, stream = capture(tmp_path, "text")
    await log_a_job(logger)
    text = stream.getvalue()
    assert "INFO test.logs.text [job job42]: stage video started" in text
    assert "INFO test.logs.text [job job42]: from the pipeline thread" in text
    assert "INFO test.logs.text: before any job" in text
    assert SECRET not in text and "token *** rejected" in text
