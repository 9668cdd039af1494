"""SQLite storage: users, the append-only credit ledger, server pools and jobs."""

from storage.credits import Balance, CreditLedger, GrantRecord, SettleOutcome, UserAccount
from storage.database import Database
from storage.errors import InsufficientCredits, StorageError, TooManyJobs
from storage.jobs import Claim, Job, JobStatus, JobStore, NewJob

__all__ = [
    "Balance", "Claim", "CreditLedger", "Database", "GrantRecord", "InsufficientCredits", "Job",
    "JobStatus", "JobStore", "NewJob", "SettleOutcome", "StorageError", "TooManyJobs",
    "UserAccount",
]
