"""Leases: at most one executor signs for an account, whatever runs (a second daemon, `ballast once --execute`, a
reloaded executor, another replica on the same PostgreSQL journal).

A lease is two things. A lock that only one process holds: on SQLite an exclusive `flock` on a file next to the
database, released by the kernel when the process dies; on PostgreSQL a session advisory lock on a connection of its
own, released by the server when that connection ends. And a fencing epoch in the `leases` table, raised by each new
holder: every signed transaction stores the epoch it was signed under, and the broadcast re-reads the epoch in the
database transaction that records it (on PostgreSQL under a row lock, so a new holder's raise waits for it). A
process that lost its lock and missed the news therefore never signs or broadcasts again.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from agent.errors import BallastError
from agent.execution.schema import leases

# libpq keepalives: a replica that vanished without closing its connection loses its advisory lock in about
# idle + interval × count = 25 s, the time another replica needs to take its accounts over.
PG_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


@dataclass(frozen=True, slots=True)
class Lease:
    """Who may sign for `account`: the process `pid` on `host` since `since_s` (unix seconds), under `epoch`."""

    account: str
    epoch: int
    host: str
    pid: int
    since_s: float

    def __str__(self) -> str:
        since = datetime.fromtimestamp(self.since_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{self.host} pid {self.pid} since {since}"


class LeaseHeld(BallastError):
    """Another executor holds the account's lease: this one refuses to sign."""

    def __init__(self, account: str, holder: Lease | None) -> None:
        self.holder = holder
        who = str(holder) if holder is not None else "another process"
        super().__init__(f"account {account} is leased to {who}: only the holder of its lease signs for it")


class LeaseLost(BallastError):
    """This process's lease was taken over (its epoch is no longer current): it must not sign or broadcast."""


class _Lock(Protocol):
    def release(self) -> None: ...


class _FileLock:
    """An exclusive `flock` on a file: per open file, so a second journal in the same process is refused too."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file

    def release(self) -> None:
        self.file.close()


class _AdvisoryLock:
    """A PostgreSQL session advisory lock, held as long as its connection (outside any pool) lives: closing the
    connection ends the session, and the server releases the lock."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def release(self) -> None:
        self.connection.close()


def advisory_key(name: str) -> int:
    """Returns a signed 64-bit advisory-lock key for `name` (stable across processes and hosts)."""
    return int.from_bytes(hashlib.sha256(f"ballast:{name}".encode()).digest()[:8], "big", signed=True)


@dataclass(frozen=True, slots=True)
class _Held:
    lease: Lease
    lock: _Lock
    owner: object  # the executor's claim (its nonce allocator): two executors of one process never share a lease


class Leases:
    """The leases this journal holds, by lowercase account, each for one owner; one `Leases` per `Journal`."""

    def __init__(self, engine: Engine, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.clock = clock
        self.postgres = engine.dialect.name == "postgresql"
        self._held: dict[str, _Held] = {}
        # Advisory locks live on connections outside the pool: each lease keeps its own for its whole life.
        self._lock_engine = sa.create_engine(engine.url, poolclass=NullPool, connect_args=PG_KEEPALIVES) \
            if self.postgres else None

    def acquire(self, account: str, owner: object = None) -> Lease:
        """Returns `owner`'s lease of `account`, taking it (and raising the epoch) if not held yet.

        Raises LeaseHeld naming the holder when another process, another journal or another owner holds it."""
        key = account.lower()
        held = self._held.get(key)
        if held is not None:
            if held.owner is not owner:
                raise LeaseHeld(account, held.lease)
            return held.lease
        lock = self._lock(key)
        if lock is None:
            raise LeaseHeld(account, self.holder(account))
        try:
            lease = self._raise_epoch(key)
        except Exception:
            lock.release()
            raise
        self._held[key] = _Held(lease, lock, owner)
        return lease

    def release(self, account: str, owner: object = None) -> None:
        """Gives `owner`'s lease of `account` up (a no-op when it holds none); the holder row stays, naming the
        last holder."""
        held = self._held.get(account.lower())
        if held is not None and held.owner is owner:
            del self._held[account.lower()]
            held.lock.release()

    def release_all(self) -> None:
        for account, held in list(self._held.items()):
            self.release(account, held.owner)
        if self._lock_engine is not None:
            self._lock_engine.dispose()

    def holder(self, account: str) -> Lease | None:
        """Returns the last lease recorded for `account`, or None when it never had one."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(leases).where(leases.c.account == account.lower())).first()
        return None if row is None else Lease(row.account, int(row.epoch), row.host, int(row.pid), float(row.since))

    def check(self, connection: Connection, account: str, owner: object | None = None) -> int:
        """Returns the epoch of this journal's lease of `account` (held by `owner`, when given) if it is still the
        current one, inside the caller's database transaction (on PostgreSQL the row stays locked until it
        ends); raises LeaseLost otherwise."""
        held = self._held.get(account.lower())
        if held is None or (owner is not None and held.owner is not owner):
            raise LeaseLost(f"account {account}: this executor holds no lease for it and may not sign or send")
        current = connection.execute(sa.select(leases.c.epoch).where(leases.c.account == account.lower())
                                     .with_for_update()).scalar()
        if current != held.lease.epoch:
            self.release(account, held.owner)
            raise LeaseLost(f"account {account}: lease epoch {held.lease.epoch} was taken over (now {current}); "
                            "nothing more is signed or sent by this process")
        return held.lease.epoch

    def _lock(self, account: str) -> _Lock | None:
        if self._lock_engine is not None:
            connection = self._lock_engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            key = advisory_key(f"lease:{account}")
            if connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar():
                return _AdvisoryLock(connection)
            connection.close()
            return None
        file = lock_path(self.engine, f"lease-{account}").open("ab")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            return None
        return _FileLock(file)

    def _raise_epoch(self, account: str) -> Lease:
        host, pid, since = socket.gethostname(), os.getpid(), self.clock()
        values = {"host": host, "pid": pid, "since": since}
        with self.engine.begin() as conn:
            # Waits on the row lock of a broadcast in flight by the previous holder, then fences it out.
            epoch = conn.execute(sa.select(leases.c.epoch).where(leases.c.account == account)
                                 .with_for_update()).scalar()
            if epoch is None:
                epoch = 1
                conn.execute(leases.insert().values(account=account, epoch=epoch, **values))
            else:
                epoch += 1
                conn.execute(leases.update().where(leases.c.account == account).values(epoch=epoch, **values))
        return Lease(account, int(epoch), host, pid, since)


def lock_path(engine: Engine, name: str) -> Path:
    """Returns the path of a lock file next to a SQLite journal's database file (`<db>.<name>.lock`)."""
    database = engine.url.database
    if not database or database == ":memory:":
        raise BallastError("an in-memory SQLite journal cannot hold leases: give BALLAST_DB a file path")
    return Path(f"{database}.{name}.lock")
