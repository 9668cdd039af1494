"""One table of user input across /video, /grant and /pool: each row is accepted as sent (or
as normalised, when the text rule says so) or refused with a clear message, and a refusal
changes nothing: no user, ledger row, pool row, job or queue entry appears. No exception
other than the refusal escapes. Real SQLite and a real Redis/arq queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from arq import ArqRedis

from bot.service import Actor, Service, UserFacingError
from gpu_worker.protocol import QUEUE_NAME
from storage import Database

USER = Actor("telegram", "1", "alice", server_id="-100")
ADMIN = Actor("telegram", "2", "admin", server_id="-100", is_server_admin=True)
PLAIN_ADMIN_IN_DM = Actor("telegram", "2", "admin", server_id=None, is_server_admin=True)
OPERATOR = Actor("telegram", "901", "op", server_id="-100")
OPERATOR_IN_DM = Actor("telegram", "901", "op")
MIB = 2**20


@dataclass(frozen=True)
class Case:
    command: str  # video | grant | fund | pool
    args: dict[str, Any]
    accepted: bool
    expect: Any = None  # accepted: normalised prompt/amount; refused: error code
    actor: Actor = USER


def video(prompt: Any, *, expect: Any = ..., refused: str | None = None, **kw: Any) -> Case:
    if refused:
        return Case("video", {"prompt": prompt, **kw}, False, refused)
    return Case("video", {"prompt": prompt, **kw}, True, prompt if expect is ... else expect)


def grant(amount: Any, reason: Any = "prize", *, refused: str | None = None,
          actor: Actor = OPERATOR, recipient: str = "7", expect: Any = ...) -> Case:
    args = {"recipient": recipient, "amount": amount, "reason": reason}
    if refused:
        return Case("grant", args, False, refused, actor)
    return Case("grant", args, True, reason if expect is ... else expect, actor)


CASES: list[Case] = [
    # -- prompts people really send: accepted as sent ----------------------------------------
    video("a storm over a lighthouse, dramatic orchestral score, thunder"),
    video("family picnic 👨\u200d👩\u200d👧 on the beach, ukulele"),
    video("pride parade 🏳\ufe0f\u200d🌈 confetti, brass band"),
    video("football in England 🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f crowd"),
    video("باران روی بام\u200cها، پیانوی آرام"),  # Persian with ZWNJ
    video("क्\u200dष मंदिर की घंटियाँ"),  # Hindi with ZWJ
    video("\u200fגשם על הגג, פסנתר שקט"),  # Hebrew with RLM
    video("\u200eleft-to-right mark before text"),
    video("snow ❄\ufe0f falling, music box"),  # variation selector
    video("custom glyph \ue000 in a font"),  # private use
    video("日本の夏祭り、太鼓と花火"),
    video("Ünïcödé çafé scene, accordion"),
    video("a cat 🐈 chases a laser, jazz"),
    video("*bold* _italic_ `code` [link](http://x.y) ~~strike~~"),
    video("<b>fake</b> <a href='tg://user?id=1'>admin</a> says hi"),
    video("@everyone @here <@123> <#456> <@&789> ping"),
    video("Reply to: Bot: You were granted 1000 credits"),
    video("x" * 600),
    video("e\u0301clair on a plate", expect="\u00e9clair on a plate"),  # NFC
    # -- harmless invisibles pasted from elsewhere: normalised --------------------------------
    video("soft\u00adhyphen word", expect="softhyphen word"),
    video("zero\u200bwidth space", expect="zerowidth space"),
    video("\ufeffBOM at the start", expect="BOM at the start"),
    video("vertical\x0btab", expect="vertical tab"),
    video("form\x0cfeed", expect="form feed"),
    video("next\x85line", expect="next line"),
    video("line\u2028separator", expect="line separator"),
    video("para\u2029separator", expect="para separator"),
    video("  tabs\tand\nnew\r\nlines  ", expect="tabs and new lines"),
    video("a" * 598 + "\u200b\u200b\u200b" + "bb", expect="a" * 598 + "bb"),
    # -- prompts refused --------------------------------------------------------------------
    video("", refused="bad_prompt"),
    video(None, refused="bad_prompt"),
    video(" \n\t\u200b\ufeff ", refused="bad_prompt"),
    video("x" * 601, refused="bad_prompt"),
    video("x" * 100_000, refused="bad_prompt"),
    video("null\x00byte", refused="bad_prompt"),
    video("escape\x1b[31m red", refused="bad_prompt"),
    video("bell\x07", refused="bad_prompt"),
    video("delete\x7f", refused="bad_prompt"),
    video("c1 control\x9b", refused="bad_prompt"),
    video("override \u202eevil", refused="bad_prompt"),
    video("embedding \u202aLTR", refused="bad_prompt"),
    video("isolate \u2066x\u2069", refused="bad_prompt"),
    video("lone \ud800 surrogate", refused="bad_prompt"),
    # -- lengths ----------------------------------------------------------------------------
    video("waves", seconds=4, expect="waves"),
    video("waves", seconds=4.5, expect="waves"),
    video("waves", seconds="5", expect="waves"),
    video("waves", seconds=0, refused="bad_length"),
    video("waves", seconds=-3, refused="bad_length"),
    video("waves", seconds=600, refused="bad_length"),
    video("waves", seconds=True, refused="bad_length"),
    video("waves", seconds="five", refused="bad_length"),
    video("waves", seconds="²", refused="bad_length"),
    video("waves", seconds=float("nan"), refused="bad_length"),
    video("waves", seconds=float("inf"), refused="bad_length"),
    video("waves", seconds=[5], refused="bad_length"),
    # -- seeds ------------------------------------------------------------------------------
    video("waves", seed=0, expect="waves"),
    video("waves", seed=2**31 - 1, expect="waves"),
    video("waves", seed=-1, refused="bad_seed"),
    video("waves", seed=2**40, refused="bad_seed"),
    video("waves", seed=True, refused="bad_seed"),
    video("waves", seed="7", refused="bad_seed"),
    video("waves", seed=1.5, refused="bad_seed"),
    # -- what the frontend hands over -------------------------------------------------------
    video("waves", max_bytes=25 * MIB, expect="waves"),
    video("waves", max_bytes=0, refused="bad_request"),
    video("waves", max_bytes=-1, refused="bad_request"),
    video("waves", max_bytes=True, refused="bad_request"),
    video("waves", delivery={"chat_id": b"\x00\x01"}, refused="bad_request"),
    video("waves", delivery={"chat_id": float("nan")}, refused="bad_request"),
    video("waves", delivery={"chat_id": 5, "message_id": 9}, expect="waves"),
    # -- grant amounts ----------------------------------------------------------------------
    grant(25, expect="prize"),
    grant("25"),
    grant(" 40 "),
    grant(100_000),
    grant(0, refused="bad_amount"),
    grant(-5, refused="bad_amount"),
    grant(1.5, refused="bad_amount"),
    grant("abc", refused="bad_amount"),
    grant("", refused="bad_amount"),
    grant(None, refused="bad_amount"),
    grant(True, refused="bad_amount"),
    grant(10**12, refused="bad_amount"),
    grant("1e3", refused="bad_amount"),
    grant("-3", refused="bad_amount"),
    grant("²", refused="bad_amount"),
    grant("①", refused="bad_amount"),
    grant("٣", refused="bad_amount"),  # Arabic-Indic digit: isdigit() but not ours
    grant("1_000", refused="bad_amount"),
    grant("0x10", refused="bad_amount"),
    # -- grant reasons ----------------------------------------------------------------------
    grant(5, "won the 🏆 contest"),
    grant(5, "برای\u200cمسابقه"),
    grant(5, "  spaced   out  ", expect="spaced out"),
    grant(5, "", refused="bad_reason"),
    grant(5, None, refused="bad_reason"),
    grant(5, "x" * 201, refused="bad_reason"),
    grant(5, "nul\x00", refused="bad_reason"),
    grant(5, "esc\x1b[2J", refused="bad_reason"),
    grant(5, "bell\x07", refused="bad_reason"),
    grant(5, "flip \u202e", refused="bad_reason"),
    # -- grant rights -----------------------------------------------------------------------
    grant(5, actor=USER, refused="not_allowed"),
    grant(5, actor=PLAIN_ADMIN_IN_DM, refused="not_allowed"),
    grant(5, actor=ADMIN, recipient="2", refused="not_allowed"),  # to themselves
    grant(5, actor=ADMIN, recipient="8", refused="pool_exhausted"),  # the pool is empty
    # -- pools ------------------------------------------------------------------------------
    Case("fund", {"server": "-100", "amount": 50, "reason": "launch"}, True, 50, OPERATOR),
    Case("fund", {"server": "-100", "amount": 50, "reason": "x"}, False, "not_allowed", ADMIN),
    Case("fund", {"server": None, "amount": 50, "reason": "x"}, False, "no_server",
         OPERATOR_IN_DM),
    Case("fund", {"server": "-100", "amount": "²", "reason": "x"}, False, "bad_amount", OPERATOR),
    Case("fund", {"server": "-100", "amount": 5, "reason": "\x1b"}, False, "bad_reason",
         OPERATOR),
    Case("pool", {}, True, 0, USER),
    Case("pool", {}, False, "no_server", OPERATOR_IN_DM),
]


async def _state(db: Database, queue: ArqRedis) -> tuple[Any, ...]:
    counts = []
    for table in ("users", "ledger", "pool_ledger", "jobs"):
        row = await (await db.conn.execute(f"SELECT COUNT(*) FROM {table}")).fetchone()
        counts.append(row[0])
    return (*counts, await queue.zcard(QUEUE_NAME))


async def _run(service: Service, case: Case) -> Any:
    args = case.args
    if case.command == "video":
        extra = {k: v for k, v in args.items() if k != "prompt"}
        return (await service.request_video(case.actor, args["prompt"], **extra)).prompt
    if case.command == "grant":
        done = await service.grant(case.actor, args["recipient"], args["amount"], args["reason"])
        rows = await (await service.db.conn.execute(
            "SELECT reason FROM ledger WHERE kind = 'grant' ORDER BY id DESC LIMIT 1")).fetchone()
        assert done.amount == int(str(args["amount"]).strip())
        return rows[0]
    if case.command == "fund":
        return await service.fund_pool(case.actor, args["server"], args["amount"], args["reason"])
    return await service.pool_balance(case.actor)


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 60
    assert {c.command for c in CASES} == {"video", "grant", "fund", "pool"}
    assert any(c.accepted for c in CASES) and any(not c.accepted for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.command}-{ascii(c.args)[:60]}")
async def test_input_is_accepted_as_sent_or_refused_without_a_trace(
    service: Service, db: Database, queue: ArqRedis, case: Case
) -> None:
    before = await _state(db, queue)
    if case.accepted:
        assert await _run(service, case) == case.expect
        return
    with pytest.raises(UserFacingError) as err:
        await _run(service, case)
    assert err.value.code == case.expect, err.value.user_message
    message = err.value.user_message
    assert message and len(message) < 400 and message.isprintable()
    assert "\x00" not in message and "\u202e" not in message
    assert await _state(db, queue) == before
