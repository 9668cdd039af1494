"""Plain-text renderings shared by both frontends: the audit trail and the operators' stats."""

from __future__ import annotations

from collections.abc import Sequence

from bot.status import StatusReport
from storage.audit import AuditEntry

ACTIONS = {
    "grant": "granted", "pool_fund": "funded the pool", "ban": "banned", "unban": "unbanned",
    "banlist_add": "added to the ban list", "banlist_remove": "removed from the ban list",
    "refund": "refunded",
}


def audit_line(entry: AuditEntry) -> str:
    """One entry: when, who, what (to whom / which), how much, why."""
    when = entry.created_at[:16].replace("T", " ")
    parts = [f"{when} UTC", entry.actor, ACTIONS.get(entry.action, entry.action)]
    if entry.target:
        parts.append(entry.target)
    if entry.amount is not None:
        parts.append(f"{entry.amount} credits")
    line = " \u00b7 ".join(parts)
    return f"{line} \u2014 {entry.reason}" if entry.reason else line


def audit_text(entries: Sequence[AuditEntry], where: str) -> str:
    if not entries:
        return f"Nothing recorded {where} yet."
    return f"Latest audit entries {where} (newest first):\n" + "\n".join(
        f"\u2022 {audit_line(e)}" for e in entries
    )


def stats_text(report: StatusReport) -> str:
    return "\n".join(report.lines())
