"""The credit ledger: sign-up and daily grants, reservations, commits, refunds, grants, pools.

The ledger is append-only (enforced by triggers); a user's available balance is the sum of
their rows' ``delta``. Each rule is one transaction (a plain function run whole by
:meth:`Database.write`), and the one-per-X rules are also unique indexes, so concurrent
commands can never overspend, double-grant or settle twice.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
import sqlite3
from datetime import timedelta, timezone

from storage import audit
from storage.database import Database, fetch_one, fetch_value
from storage.errors import InsufficientCredits, PoolExhausted


@dataclass(frozen=True)
class UserAccount:
    id: int
    platform: str
    platform_user_id: str
    signed_up_now: bool
    daily_granted_now: bool
    # Why this user's sign-up grant is still withheld ("account_too_new", "signups_paused").
    signup_withheld: str | None = None


@dataclass(frozen=True)
class Balance:
    available: int
    held: int
    spent: int
    daily_granted_today: bool  # today's free credits were given (daily, or the sign-up grant)
    signed_up_today: bool = False  # ... and they were the sign-up grant


@dataclass(frozen=True)
class GrantRecord:
    ledger_id: int
    recipient_user_id: int
    amount: int
    grantor: str
    server_id: str | None
    reason: str
    pool_balance_after: int | None
    recipient_signed_up: bool = False  # the grant signed the recipient up (sign-up grant too)


class SettleOutcome(enum.Enum):
    COMMITTED = "committed"
    REFUNDED = "refunded"
    ALREADY_COMMITTED = "already committed"
    ALREADY_REFUNDED = "already refunded"
    NO_RESERVATION = "no reservation"
    NOT_CLAIM_OWNER = "not the delivery claim's owner"

    @property
    def charged(self) -> bool:
        return self in (SettleOutcome.COMMITTED, SettleOutcome.ALREADY_COMMITTED)


def available_balance(conn: sqlite3.Connection, user_id: int) -> int:
    return fetch_value(conn, "SELECT SUM(delta) FROM ledger WHERE user_id = ?", user_id)


def insert_reservation(
    conn: sqlite3.Connection, now: str, user_id: int, job_id: str, amount: int
) -> None:
    """Hold ``amount`` for ``job_id`` inside the caller's transaction, or raise."""
    available = available_balance(conn, user_id)
    if available < amount:
        raise InsufficientCredits(available, amount)
    conn.execute(
        "INSERT INTO ledger (user_id, kind, delta, job_id, created_at) VALUES (?, 'reserve', ?, ?, ?)",
        (user_id, -amount, job_id, now),
    )


def settle_reservation(conn: sqlite3.Connection, now: str, job_id: str, kind: str) -> SettleOutcome:
    """Commit or refund the reservation of ``job_id`` inside the caller's transaction."""
    reserve = fetch_one(
        conn, "SELECT user_id, delta FROM ledger WHERE job_id = ? AND kind = 'reserve'", job_id
    )
    if reserve is None:
        return SettleOutcome.NO_RESERVATION
    settled = fetch_one(
        conn, "SELECT kind FROM ledger WHERE job_id = ? AND kind IN ('commit', 'refund')", job_id
    )
    if settled is not None:
        return (
            SettleOutcome.ALREADY_COMMITTED
            if settled["kind"] == "commit"
            else SettleOutcome.ALREADY_REFUNDED
        )
    delta = 0 if kind == "commit" else -int(reserve["delta"])
    conn.execute(
        "INSERT INTO ledger (user_id, kind, delta, job_id, created_at) VALUES (?, ?, ?, ?, ?)",
        (reserve["user_id"], kind, delta, job_id, now),
    )
    return SettleOutcome.COMMITTED if kind == "commit" else SettleOutcome.REFUNDED


def read_balance(conn: sqlite3.Connection, user_id: int, today: str) -> Balance:
    """A user's balance, inside the caller's transaction or snapshot."""
    available = available_balance(conn, user_id)
    held = fetch_value(
        conn,
        "SELECT -SUM(r.delta) FROM ledger r WHERE r.user_id = ? AND r.kind = 'reserve' "
        "AND NOT EXISTS (SELECT 1 FROM ledger s WHERE s.job_id = r.job_id "
        "AND s.kind IN ('commit', 'refund'))",
        user_id,
    )
    spent = fetch_value(
        conn,
        "SELECT -SUM(r.delta) FROM ledger r JOIN ledger c ON c.job_id = r.job_id "
        "AND c.kind = 'commit' WHERE r.user_id = ? AND r.kind = 'reserve'",
        user_id,
    )
    daily = fetch_value(
        conn,
        "SELECT COUNT(*) FROM ledger WHERE user_id = ? AND day = ? AND kind IN ('daily', 'signup')",
        user_id,
        today,
    )
    signup = fetch_value(
        conn, "SELECT COUNT(*) FROM ledger WHERE user_id = ? AND day = ? AND kind = 'signup'",
        user_id, today,
    )
    return Balance(available, held, spent, daily > 0, signup > 0)


def pool_balance_of(conn: sqlite3.Connection, platform: str, server_id: str) -> int:
    return fetch_value(
        conn,
        "SELECT SUM(delta) FROM pool_ledger WHERE platform = ? AND server_id = ?",
        platform,
        server_id,
    )


class CreditLedger:
    """Credit rules over a :class:`Database`. Amounts are validated by the caller (service)."""

    def __init__(
        self, db: Database, *, signup_grant: int, daily_grant: int, max_signups_per_hour: int = 0
    ) -> None:
        self.db = db
        self.signup_grant = signup_grant
        self.daily_grant = daily_grant
        self.max_signups_per_hour = max_signups_per_hour

    async def ensure_user(
        self,
        platform: str,
        platform_user_id: str,
        display_name: str | None = None,
        *,
        with_daily: bool = True,
        too_new: bool = False,
    ) -> UserAccount:
        """Sign the user up (signup grant, exactly once) or give today's daily grant.

        The sign-up grant stands in for the daily grant on the day of sign-up; from the next
        UTC day on, the user's first command of each day adds the daily grant. Pass
        ``with_daily=False`` when the user is only the target of someone else's command.

        The sign-up grant is withheld (and with it the daily grants) while ``too_new`` (the
        platform account is younger than the operator's minimum) or while the last hour's
        sign-ups reached ``max_signups_per_hour``; a later command gives it once allowed.
        """
        return await self.db.write(lambda conn: self.ensure_user_in(
            conn, platform, platform_user_id, display_name, with_daily=with_daily,
            too_new=too_new,
        ))

    def ensure_user_in(
        self,
        conn: sqlite3.Connection,
        platform: str,
        platform_user_id: str,
        display_name: str | None,
        *,
        with_daily: bool,
        too_new: bool = False,
    ) -> UserAccount:
        """:meth:`ensure_user` inside the caller's transaction."""
        now, today = self.db.now(), self.db.today()
        cursor = conn.execute(
            "INSERT INTO users (platform, platform_user_id, display_name, created_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (platform, platform_user_id) DO NOTHING",
            (platform, platform_user_id, display_name, now),
        )
        created = cursor.rowcount == 1
        user_id = fetch_value(
            conn,
            "SELECT id FROM users WHERE platform = ? AND platform_user_id = ?",
            platform,
            platform_user_id,
        )
        signup = fetch_one(
            conn, "SELECT day FROM ledger WHERE user_id = ? AND kind = 'signup'", user_id
        )
        signed_up = False  # the sign-up grant given now (then it stands in for today's daily)
        if signup is None:
            withheld = self._signup_withheld(conn, too_new)
            if withheld is not None:
                return UserAccount(user_id, platform, platform_user_id, False, False, withheld)
            signed_up = self._insert_once(
                conn,
                "INSERT INTO ledger (user_id, kind, delta, day, created_at) "
                "VALUES (?, 'signup', ?, ?, ?) ON CONFLICT DO NOTHING",
                (user_id, self.signup_grant, today, now),
            )
        daily = False
        if with_daily and not created and signup is not None and signup["day"] != today:
            daily = self._insert_once(
                conn,
                "INSERT INTO ledger (user_id, kind, delta, day, created_at) "
                "VALUES (?, 'daily', ?, ?, ?) ON CONFLICT DO NOTHING",
                (user_id, self.daily_grant, today, now),
            )
        return UserAccount(user_id, platform, platform_user_id, signed_up, daily)

    def _signup_withheld(self, conn: sqlite3.Connection, too_new: bool) -> str | None:
        if too_new:
            return "account_too_new"
        if self.max_signups_per_hour:
            since = (self.db.clock() - timedelta(hours=1)).astimezone(timezone.utc).isoformat()
            recent = fetch_value(
                conn, "SELECT COUNT(*) FROM ledger WHERE kind = 'signup' AND created_at > ?",
                since,
            )
            if recent >= self.max_signups_per_hour:
                return "signups_paused"
        return None

    @staticmethod
    def _insert_once(conn: sqlite3.Connection, sql: str, args: tuple[object, ...]) -> bool:
        return conn.execute(sql, args).rowcount == 1

    async def user_id(self, platform: str, platform_user_id: str) -> int | None:
        row = await self.db.read(lambda conn: fetch_one(
            conn,
            "SELECT id FROM users WHERE platform = ? AND platform_user_id = ?",
            platform,
            platform_user_id,
        ))
        return int(row["id"]) if row else None

    async def available(self, user_id: int) -> int:
        """What the user can spend now (the balance's ``available`` alone: one query)."""
        return await self.db.read(lambda conn: available_balance(conn, user_id))

    async def balance(self, user_id: int) -> Balance:
        today = self.db.today()
        return await self.db.read(lambda conn: read_balance(conn, user_id, today))

    async def reserve(self, user_id: int, job_id: str, amount: int) -> None:
        """Hold ``amount`` credits for ``job_id``; raises :class:`InsufficientCredits`."""
        now = self.db.now()
        await self.db.write(lambda conn: insert_reservation(conn, now, user_id, job_id, amount))

    async def commit(self, job_id: str) -> SettleOutcome:
        now = self.db.now()
        return await self.db.write(lambda conn: settle_reservation(conn, now, job_id, "commit"))

    async def refund(self, job_id: str) -> SettleOutcome:
        now = self.db.now()
        return await self.db.write(lambda conn: settle_reservation(conn, now, job_id, "refund"))

    async def grant(
        self,
        recipient_user_id: int,
        amount: int,
        *,
        grantor: str,
        reason: str,
        from_pool: tuple[str, str] | None = None,
        where: str | None = None,
    ) -> GrantRecord:
        """Add credits. With ``from_pool=(platform, server_id)`` they come out of that pool.
        ``where`` is the server the grant was made in (for the audit trail)."""
        return await self.db.write(lambda conn: self._grant(
            conn, recipient_user_id, amount, grantor, reason, from_pool, where
        ))

    async def grant_to(
        self,
        platform: str,
        platform_user_id: str,
        amount: int,
        *,
        grantor: str,
        reason: str,
        from_pool: tuple[str, str] | None = None,
        too_new: bool = False,
        where: str | None = None,
    ) -> GrantRecord:
        """Sign the recipient up if new, then :meth:`grant`, in one transaction: a grant
        refused for an exhausted pool leaves no trace, not even the recipient's sign-up."""
        def work(conn: sqlite3.Connection) -> GrantRecord:
            account = self.ensure_user_in(
                conn, platform, platform_user_id, None, with_daily=False, too_new=too_new
            )
            record = self._grant(conn, account.id, amount, grantor, reason, from_pool, where)
            return dataclasses.replace(record, recipient_signed_up=account.signed_up_now)

        return await self.db.write(work)

    def _grant(
        self,
        conn: sqlite3.Connection,
        recipient_user_id: int,
        amount: int,
        grantor: str,
        reason: str,
        from_pool: tuple[str, str] | None,
        where: str | None = None,
    ) -> GrantRecord:
        now = self.db.now()
        pool_after: int | None = None
        server_id = from_pool[1] if from_pool else None
        if from_pool is not None:
            pool = pool_balance_of(conn, *from_pool)
            if pool < amount:
                raise PoolExhausted(pool, amount)
            conn.execute(
                "INSERT INTO pool_ledger (platform, server_id, kind, delta, actor, "
                "recipient_user_id, reason, created_at) VALUES (?, ?, 'grant', ?, ?, ?, ?, ?)",
                (*from_pool, -amount, grantor, recipient_user_id, reason, now),
            )
            pool_after = pool - amount
        cursor = conn.execute(
            "INSERT INTO ledger (user_id, kind, delta, grantor, server_id, reason, created_at) "
            "VALUES (?, 'grant', ?, ?, ?, ?, ?)",
            (recipient_user_id, amount, grantor, server_id, reason, now),
        )
        ledger_id = int(cursor.lastrowid or 0)
        recipient = fetch_one(
            conn, "SELECT platform, platform_user_id FROM users WHERE id = ?", recipient_user_id
        )
        assert recipient is not None
        audit.record(
            conn, now, platform=recipient["platform"], server_id=server_id or where,
            actor=grantor, action="grant",
            target=f"{recipient['platform']}:{recipient['platform_user_id']}", amount=amount,
            reason=reason,
        )
        return GrantRecord(
            ledger_id, recipient_user_id, amount, grantor, server_id, reason, pool_after
        )

    async def fund_pool(
        self, platform: str, server_id: str, amount: int, *, actor: str, reason: str
    ) -> int:
        """Add ``amount`` to a server's pool; returns the new pool balance."""
        now = self.db.now()

        def work(conn: sqlite3.Connection) -> int:
            conn.execute(
                "INSERT INTO pool_ledger (platform, server_id, kind, delta, actor, reason, "
                "created_at) VALUES (?, ?, 'fund', ?, ?, ?, ?)",
                (platform, server_id, amount, actor, reason, now),
            )
            audit.record(
                conn, now, platform=platform, server_id=server_id, actor=actor,
                action="pool_fund", amount=amount, reason=reason,
            )
            return pool_balance_of(conn, platform, server_id)

        return await self.db.write(work)

    async def pool_balance(self, platform: str, server_id: str) -> int:
        return await self.db.read(lambda conn: pool_balance_of(conn, platform, server_id))
