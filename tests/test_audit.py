"""The audit trail and the service's moderation rules, on real SQLite and Redis."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from arq import ArqRedis
from prometheus_client import REGISTRY

from bot.service import Actor, Service, UserFacingError
from config import Settings, load_settings
from gpu_worker.protocol import QUEUE_NAME
from storage import Database

REPO = Path(__file__).resolve().parents[1]
ALICE = Actor("discord", "1", "alice", server_id="guild")
ADMIN = Actor("discord", "2", "admin", server_id="guild", is_server_admin=True)
OPERATOR = Actor("discord", "900", "op", server_id="guild")
OPERATOR_DM = Actor("discord", "900", "op")


def credits_counted(kind: str) -> float:
    return REGISTRY.get_sample_value("talkies_credits_total", {"kind": kind}) or 0.0


async def test_grants_funding_and_refunds_are_audited(service: Service, db: Database) -> None:
    granted, refunded = credits_counted("granted"), credits_counted("refunded")
    await service.fund_pool(OPERATOR, "guild", 50, "season start")
    await service.grant(ADMIN, "1", 30, "contest winner")
    await service.grant(OPERATOR, "3", 7, "bug report")
    accepted = await service.request_video(ALICE, "rain on a tin roof")
    await service.cancel_job(ALICE, accepted.job_id)
    # the metrics saw the same: two grants and the sign-ups they made; one refund
    assert credits_counted("granted") - granted == 30 + 7 + 2 * 200
    assert credits_counted("refunded") - refunded == 20

    entries = await service.audit.latest(platform="discord", server_id="guild")
    summary = [(e.action, e.actor, e.target, e.amount, e.reason) for e in entries]
    assert summary == [
        ("refund", "system", f"job {accepted.job_id}", 20, "cancelled by the user"),
        ("grant", "discord:900", "discord:3", 7, "bug report"),
        ("grant", "discord:2", "discord:1", 30, "contest winner"),
        ("pool_fund", "discord:900", None, 50, "season start"),
    ]
    assert all(e.created_at.startswith("2026-11-28T12:00") for e in entries)
    assert await service.audit.latest(platform="telegram") == []

    with sqlite3.connect(db.path) as conn:  # append-only, like the ledger
        for sql in ("UPDATE audit SET reason = 'x'", "DELETE FROM audit"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(sql)


async def test_a_refused_grant_leaves_no_audit_entry(service: Service) -> None:
    with pytest.raises(UserFacingError):
        await service.grant(ADMIN, "1", 30, "the pool is empty")
    assert await service.audit.latest() == []


async def test_ban_rules(service: Service) -> None:
    for actor, user, code in ((ALICE, "3", "not_allowed"), (ADMIN, "2", "not_allowed"),
                              (ADMIN, "900", "not_allowed")):
        with pytest.raises(UserFacingError) as err:
            await service.ban(actor, user, "because")
        assert err.value.code == code
    with pytest.raises(UserFacingError) as err:
        await service.ban(ADMIN, "3", "   ")
    assert err.value.code == "bad_reason"
    assert not await service.unban(ADMIN, "3", "never banned")
    done = await service.ban(ADMIN, "3", "spam")
    assert done.new and not done.everywhere and done.cancelled == []
    again = await service.ban(ADMIN, "3", "more spam")
    assert not again.new
    with pytest.raises(UserFacingError, match="Reason: more spam"):
        await service.admit(Actor("discord", "3", server_id="guild"))
    await service.admit(Actor("discord", "3", server_id="elsewhere"))  # not banned there
    actions = [e.action for e in await service.audit.latest()]
    assert actions == ["ban", "ban"]  # a refused or empty (un)ban records nothing


async def test_settings_ban_list_applies_everywhere(
    tmp_path: Path, db: Database, queue: ArqRedis
) -> None:
    settings = load_settings(_env_file=None, database_path=tmp_path / "db.sqlite3",
                             banned_terms="gore, nud*", discord_operator_ids="900")
    service = Service(settings, db, queue)
    with pytest.raises(UserFacingError) as err:
        await service.request_video(Actor("telegram", "5"), "N\u00fcdity in art")
    assert err.value.code == "banned_prompt"
    assert "rule C2 of the bot's ban list" in err.value.user_message
    assert "ud" not in err.value.user_message.lower()
    assert await queue.zcard(QUEUE_NAME) == 0
    assert await service.credits.user_id("telegram", "5") is None
    lines = await service.banlist_show(OPERATOR_DM)
    assert lines == ["C1 (bot-wide, from the settings): gore",
                     "C2 (bot-wide, from the settings): nud*"]
    hidden = await service.banlist_show(ADMIN)
    assert all("(hidden)" in line for line in hidden)


def test_talkies_audit_prints_the_trail(tmp_path: Path, settings: Settings) -> None:
    import asyncio

    async def record() -> None:
        async with Database(tmp_path / "audit.sqlite3") as db:
            service = Service(settings, db, None)
            await service.fund_pool(OPERATOR, "guild", 50, "season start")
            await service.ban(OPERATOR_DM, "77", "scam links")

    asyncio.run(record())
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
           "TALKIES_DATABASE_PATH": str(tmp_path / "audit.sqlite3")}
    out = subprocess.run([sys.executable, "-m", "bot.cli", "audit", "--limit", "5"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("discord:- ") and "discord:900 \u00b7 banned \u00b7 discord:77" in lines[0]
    assert lines[0].endswith("\u2014 scam links")
    assert lines[1].startswith("discord:guild ") and "funded the pool \u00b7 50 credits" in lines[1]
