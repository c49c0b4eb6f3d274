"""The journal: every intent, every transaction signed for it (each hash sent at its nonce, with its raw bytes
written before broadcast, and the lease epoch it was signed under), the durable nonce of each (chain, account),
the lease of each account, refusals and pauses.

SQLAlchemy 2 Core on SQLite (the embedded default: WAL mode, full fsync) or PostgreSQL (`postgresql://…`, through
psycopg 3); the schema is migrated by Alembic to its head revision each time a journal opens, one process at a time.
State transitions are compare-and-set: each names the state it expects, so two writers can never both win.
Timestamps are unix seconds from the executor's clock.
"""

from __future__ import annotations

import fcntl
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine

from agent.execution.lease import Leases, advisory_key, lock_path
from agent.execution.schema import (
    NEXT_STATES,
    Intent,
    StoredTx,
    events,
    intent_row,
    intents,
    metadata,
    nonces,
    portfolios,
    stored_tx,
    transactions,
)
from agent.model import OPEN_INTENT_STATES, Plan, TxRecord

MIGRATIONS = Path(__file__).resolve().parent / "migrations"



class JournalError(RuntimeError):
    """A journal invariant would break (e.g. an illegal state transition): a bug, never a user error."""


class StaleState(JournalError):
    """A compare-and-set transition found another state than it expected: another writer moved the row first."""


def database_url(db: str | Path) -> str:
    """Returns the SQLAlchemy URL of `BALLAST_DB`: a file path becomes SQLite, `postgresql://…` uses psycopg 3."""
    text = str(db)
    if "://" not in text:
        return f"sqlite:///{Path(text).expanduser()}"
    for scheme in ("postgresql://", "postgres://"):
        if text.startswith(scheme):
            return "postgresql+psycopg://" + text.removeprefix(scheme)
    return text


def plan_id(plan: Plan) -> str:
    """Returns the plan's deterministic id: a hash of its portfolio, snapshot blocks and actions."""
    return _digest(plan.portfolio, repr(plan.blocks), *(repr(action) for action in plan.actions))[:32]


def intent_id(portfolio: str, plan: str, snapshot_block: int, action_index: int, step: int) -> str:
    """Returns an intent's deterministic id: the same plan from the same snapshot always gives the same ids, so
    executing a plan twice (after a crash, or from two cycles) finds its intents already journaled."""
    return _digest(portfolio, plan, str(snapshot_block), str(action_index), str(step))[:32]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class Journal:
    """The executor's durable memory. Open with a SQLite path or a database URL (`database_url`); the schema is
    migrated on open. `leases` grants each account to one executor at a time."""

    def __init__(self, db: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.url = database_url(db)
        self.clock = clock
        self.engine: Engine = sa.create_engine(self.url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._migrate()
        self.leases = Leases(self.engine, clock)

    def _migrate(self) -> None:
        """Upgrades the schema to head; processes opening one journal together take turns (a file lock next to a
        SQLite database, a transaction-scoped advisory lock on PostgreSQL), so none sees a half-made schema."""
        sqlite = self.engine.dialect.name == "sqlite"
        with (lock_path(self.engine, "migrate").open("ab") if sqlite else _no_file()) as lock, \
                self.engine.begin() as connection:
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            else:
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key("migrate")})
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def close(self) -> None:
        """Gives up every lease this journal holds and closes its connections."""
        self.leases.release_all()
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """Yields a connection in one database transaction: everything done with it commits together, or not at all."""
        with self.engine.begin() as connection:
            yield connection

    # --- intents ------------------------------------------------------------------------------------------------

    def add_intent(self, connection: Connection | None = None, **values: Any) -> bool:
        """Inserts an intent in state `planned` (or the `state` given); returns False when its id already exists."""
        now = self.clock()
        row = {"state": "planned", "bumps": 0, "created_at": now, "updated_at": now, **values}
        with self._connection(connection) as conn:
            if conn.execute(sa.select(intents.c.id).where(intents.c.id == row["id"])).first():
                return False
            conn.execute(intents.insert().values(**row))
        return True

    def intent(self, id: str, connection: Connection | None = None) -> Intent | None:
        """Returns the intent with this id as the database holds it now (inside `connection`'s transaction when
        given, its row then locked on PostgreSQL until that transaction ends), or None."""
        with self._connection(connection) as conn:
            row = conn.execute(sa.select(intents).where(intents.c.id == id).with_for_update()).first()
        return intent_row(row) if row else None

    def intents(
        self, portfolio: str | None = None, states: Iterable[str] | None = None, plan: str | None = None,
        mode: str | None = None, limit: int | None = None, newest_first: bool = False,
    ) -> list[Intent]:
        """Returns intents matching every filter given, oldest first (by creation, plan, action, step)."""
        query = sa.select(intents)
        if portfolio is not None:
            query = query.where(intents.c.portfolio == portfolio)
        if states is not None:
            query = query.where(intents.c.state.in_(list(states)))
        if plan is not None:
            query = query.where(intents.c.plan_id == plan)
        if mode is not None:
            query = query.where(intents.c.mode == mode)
        order = [intents.c.created_at, intents.c.plan_id, intents.c.action_index, intents.c.step]
        query = query.order_by(*(c.desc() for c in order) if newest_first else order)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [intent_row(row) for row in conn.execute(query)]

    def unresolved(self, portfolio: str | None = None) -> list[Intent]:
        """Returns the live intents not yet at an end: planned and simulated steps still to send, and signed, sent
        or mined transactions still to confirm."""
        return self.intents(portfolio, states=("planned", "simulated", *OPEN_INTENT_STATES), mode="live")

    def last_settled(self, portfolio: str, chain: str) -> Intent | None:
        """Returns the portfolio's live intent mined in the newest block of `chain`, or None."""
        query = (sa.select(intents).where(intents.c.portfolio == portfolio, intents.c.chain == chain,
                                          intents.c.mode == "live", intents.c.block_number.is_not(None))
                 .order_by(intents.c.block_number.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return intent_row(row) if row else None

    def transition(self, id: str, state: str, connection: Connection | None = None,
                   expect: str | Iterable[str] | None = None, **values: Any) -> None:
        """Moves an intent from `expect` (a state or several; None: the state read just before) to `state`, setting
        `values` too, in one compare-and-set update. Staying in the same state only updates `values`.

        Raises JournalError for a transition the lifecycle does not allow, StaleState when the intent is no
        longer in an expected state (another writer moved it first)."""
        with self._connection(connection) as conn:
            if expect is None:
                row = conn.execute(sa.select(intents.c.state).where(intents.c.id == id)).first()
                if row is None:
                    raise JournalError(f"no intent {id}")
                expected: tuple[str, ...] = (row.state,)
            else:
                expected = (expect,) if isinstance(expect, str) else tuple(expect)
            for before in expected:
                if state != before and state not in NEXT_STATES.get(before, frozenset()):
                    raise JournalError(f"intent {id}: {before} → {state} is not a lifecycle transition")
            moved = conn.execute(intents.update().where(intents.c.id == id, intents.c.state.in_(expected))
                                 .values(state=state, updated_at=self.clock(), **values))
            if moved.rowcount != 1:
                now = conn.execute(sa.select(intents.c.state).where(intents.c.id == id)).scalar()
                raise StaleState(f"intent {id}: expected {' or '.join(expected)} for → {state}, found {now}")

    def mark_stuck(self, id: str, reason: str) -> bool:
        """Records that an unresolved intent is stuck (its bump and cancellation budgets spent), once, with an event;
        returns whether this call marked it."""
        with self.engine.begin() as conn:
            marked = conn.execute(intents.update().where(
                intents.c.id == id, intents.c.stuck_at.is_(None), intents.c.state.in_(OPEN_INTENT_STATES))
                .values(stuck_at=self.clock())).rowcount == 1
            portfolio = conn.execute(sa.select(intents.c.portfolio).where(intents.c.id == id)).scalar()
        if marked and portfolio is not None:
            self.record_event(portfolio, "stuck", reason, id)
        return marked

    def stuck(self, portfolio: str) -> list[Intent]:
        """Returns the portfolio's unresolved intents marked stuck (they stop being so once they resolve)."""
        return [i for i in self.unresolved(portfolio) if i.stuck_at is not None]

    # --- transactions -------------------------------------------------------------------------------------------

    def add_tx(self, connection: Connection, record: TxRecord, raw_tx: bytes, chain_id: int, account: str) -> None:
        """Stores a signed transaction (state `signed`) with its raw bytes and this process's lease epoch, inside
        the caller's database transaction: it is durable before anything is broadcast. Raises LeaseLost (and the
        transaction rolls back) when this process does not hold the account's current lease."""
        epoch = self.leases.check(connection, account)
        connection.execute(transactions.insert().values(lease_epoch=epoch,
            intent_id=record.intent_id, chain_id=chain_id, account=account, nonce=record.nonce,
            tx_hash=record.tx_hash, kind=record.kind, state=record.state, raw_tx="0x" + raw_tx.hex(),
            max_fee_per_gas_wei=record.max_fee_per_gas_wei,
            max_priority_fee_per_gas_wei=record.max_priority_fee_per_gas_wei, gas_limit=record.gas_limit,
            created_at=self.clock(),
        ))

    def txs(self, intent_id: str) -> list[StoredTx]:
        """Returns every transaction signed for an intent, in signing order."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(transactions, intents.c.chain)
                                .join(intents, intents.c.id == transactions.c.intent_id)
                                .where(transactions.c.intent_id == intent_id).order_by(transactions.c.id))
            return [stored_tx(row) for row in rows]

    def update_tx(self, tx_hash: str, connection: Connection | None = None, **values: Any) -> None:
        """Sets fields of one transaction row (state, sent_at, block_number, status)."""
        with self._connection(connection) as conn:
            conn.execute(transactions.update().where(transactions.c.tx_hash == tx_hash).values(**values))

    @contextmanager
    def fenced(self, account: str, owner: object | None = None) -> Iterator[Connection]:
        """Yields a database transaction in which `owner`'s lease of `account` is current (raises LeaseLost
        otherwise): broadcast and record the broadcast inside it. On PostgreSQL the lease row stays locked until
        the transaction ends, so a new holder cannot raise the epoch between the check and the record."""
        with self.engine.begin() as connection:
            self.leases.check(connection, account, owner)
            yield connection

    # --- nonces -------------------------------------------------------------------------------------------------

    def stored_nonce(self, chain_id: int, account: str, connection: Connection | None = None) -> int | None:
        """Returns the next nonce the journal holds for (chain, account), or None when it has none yet."""
        with self._connection(connection) as conn:
            row = conn.execute(sa.select(nonces.c.next_nonce).where(
                nonces.c.chain_id == chain_id, nonces.c.account == account)).first()
        return None if row is None else int(row.next_nonce)

    def store_nonce(self, chain_id: int, account: str, next_nonce: int, connection: Connection | None = None) -> None:
        """Sets the next nonce of (chain, account)."""
        with self._connection(connection) as conn:
            values = {"next_nonce": next_nonce, "updated_at": self.clock()}
            updated = conn.execute(nonces.update().where(nonces.c.chain_id == chain_id, nonces.c.account == account)
                                   .values(**values))
            if not updated.rowcount:
                conn.execute(nonces.insert().values(chain_id=chain_id, account=account, **values))

    def advance_nonce(self, chain_id: int, account: str, used: int, connection: Connection) -> bool:
        """Moves the next nonce of (chain, account) from `used` to `used + 1` in one compare-and-set update;
        returns whether it was still `used`."""
        moved = connection.execute(nonces.update().where(
            nonces.c.chain_id == chain_id, nonces.c.account == account, nonces.c.next_nonce == used)
            .values(next_nonce=used + 1, updated_at=self.clock()))
        return moved.rowcount == 1

    def highest_open_nonce(self, chain_id: int, account: str) -> int | None:
        """Returns the highest nonce of a signed, sent or mined (unconfirmed) live intent of (chain, account)."""
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(sa.func.max(intents.c.nonce)).where(
                intents.c.chain_id == chain_id, intents.c.account == account,
                intents.c.state.in_(OPEN_INTENT_STATES))).scalar()
        return None if value is None else int(value)

    # --- turnover, events, pauses -------------------------------------------------------------------------------

    def turnover_usd(self, portfolio: str, since: float) -> float:
        """Returns the notional (USD) of the portfolio's live actions signed since `since` (approvals count zero),
        whatever became of them: a sent transaction may still land."""
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(sa.func.sum(intents.c.notional_usd)).where(
                intents.c.portfolio == portfolio, intents.c.mode == "live", intents.c.signed_at >= since,
                intents.c.kind != "approve")).scalar()
        return float(value or 0.0)

    def record_event(self, portfolio: str, kind: str, detail: str, intent_id: str | None = None,
                     connection: Connection | None = None) -> None:
        """Appends an event (a refusal, a deferral, a pause, a reconciliation finding)."""
        with self._connection(connection) as conn:
            conn.execute(events.insert().values(at=self.clock(), portfolio=portfolio, intent_id=intent_id, kind=kind,
                                                detail=detail))

    def events(self, portfolio: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Returns the newest events first, as mappings (at, portfolio, intent_id, kind, detail)."""
        query = sa.select(events).order_by(events.c.id.desc()).limit(limit)
        if portfolio is not None:
            query = query.where(events.c.portfolio == portfolio)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def pause(self, portfolio: str, reason: str, connection: Connection | None = None) -> None:
        """Pauses a portfolio: the guard refuses its plans until `resume`."""
        with self._connection(connection) as conn:
            self._set_paused(portfolio, True, reason, conn)
            self.record_event(portfolio, "paused", reason, connection=conn)

    def resume(self, portfolio: str) -> None:
        """Lifts a pause."""
        self._set_paused(portfolio, False, "")
        self.record_event(portfolio, "resumed", "resumed by the operator")

    def paused(self, portfolio: str) -> str | None:
        """Returns why the portfolio is paused, or None when it is not."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(portfolios).where(portfolios.c.name == portfolio)).first()
        return row.reason if row is not None and row.paused else None

    def paused_portfolios(self) -> dict[str, str]:
        """Returns every paused portfolio with why."""
        with self.engine.connect() as conn:
            return {row.name: row.reason for row in conn.execute(sa.select(portfolios).where(portfolios.c.paused))}

    def _set_paused(self, portfolio: str, paused: bool, reason: str, connection: Connection | None = None) -> None:
        with self._connection(connection) as conn:
            values = {"paused": paused, "reason": reason, "updated_at": self.clock()}
            if not conn.execute(portfolios.update().where(portfolios.c.name == portfolio).values(**values)).rowcount:
                conn.execute(portfolios.insert().values(name=portfolio, **values))

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Returns every row of every table as mappings (for audits and the tests that check no secret is stored)."""
        with self.engine.connect() as conn:
            return {table.name: [dict(row._mapping) for row in conn.execute(sa.select(table))]
                    for table in metadata.sorted_tables}

    @contextmanager
    def _connection(self, connection: Connection | None) -> Iterator[Connection]:
        if connection is not None:
            yield connection
        else:
            with self.engine.begin() as conn:
                yield conn


@contextmanager
def _no_file() -> Iterator[None]:
    yield None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a signed transaction must survive a power cut, not just a crash
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
