"""The journal on SQLite and on a real PostgreSQL server: migrations, compare-and-set transitions and nonces, leases
that admit one executor per account and fence out one that lost its lease."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent.execution.journal import Journal, JournalError, StaleState, database_url
from agent.execution.lease import LeaseHeld, LeaseLost
from agent.execution.nonce import NonceAllocator
from agent.model import TxRecord

ROOT = Path(__file__).parents[2]
ACCOUNT = "0x00000000000000000000000000000000000000aa"
OTHER = "0x00000000000000000000000000000000000000bb"
COMMON: dict[str, Any] = dict(
    portfolio="p", plan_id="x", chain="c", chain_id=1, account=ACCOUNT, action_index=0, step=0, kind="borrow",
    mode="live", to_address="0xB", data="0x", value_wei="0", description="", notional_usd=5.0, snapshot_block=7,
    plan_reason="", action_reason="",
)


def record(tx_hash: str, nonce: int, fee_wei: int = 50 * 10**9) -> TxRecord:
    return TxRecord("i", "c", nonce, tx_hash, "action", "signed", fee_wei, 10**9, 21_000)


def test_journal_is_migrated_and_refuses_illegal_transitions(journal_db: str) -> None:
    journal = Journal(journal_db, clock=lambda: 1_000.0)
    assert journal.add_intent(id="i", **COMMON) and not journal.add_intent(id="i", **COMMON)
    with pytest.raises(JournalError, match="planned → confirmed"):
        journal.transition("i", "confirmed")
    journal.transition("i", "simulated", gas_limit=21_000)
    journal.close()

    reopened = Journal(journal_db)  # migrations at open are idempotent
    intent = reopened.intent("i")
    assert intent is not None and (intent.state, intent.gas_limit, intent.created_at) == ("simulated", 21_000, 1_000.0)
    with reopened.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0003"
    reopened.close()


def test_sqlite_journal_runs_in_wal_mode(tmp_path: Path) -> None:
    Journal(tmp_path / "journal.sqlite").close()
    with sqlite3.connect(tmp_path / "journal.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_postgresql_urls_use_psycopg_3() -> None:
    assert database_url("postgresql://u@db:5432/ballast") == "postgresql+psycopg://u@db:5432/ballast"
    assert database_url("/var/lib/ballast/journal.sqlite") == "sqlite:////var/lib/ballast/journal.sqlite"


def test_fees_above_two_gwei_fit_the_transactions_table(journal_db: str) -> None:
    journal = Journal(journal_db)
    journal.add_intent(id="i", **COMMON)
    journal.leases.acquire(ACCOUNT)
    with journal.begin() as conn:
        journal.add_tx(conn, record("0x01", 0, fee_wei=500 * 10**9), b"\x01", 2**40, ACCOUNT)
    (stored,) = journal.txs("i")
    assert stored.record.max_fee_per_gas_wei == 500 * 10**9
    journal.close()


def test_a_transition_names_the_state_it_expects_and_a_second_writer_loses(journal_db: str) -> None:
    journal = Journal(journal_db)
    journal.add_intent(id="i", state="simulated", **COMMON)
    # Two writers both saw the intent simulated; the first signs it at nonce 5.
    journal.transition("i", "signed", expect="simulated", nonce=5)
    with pytest.raises(StaleState, match="expected simulated for → signed, found signed"):
        journal.transition("i", "signed", expect="simulated", nonce=6)
    intent = journal.intent("i")
    assert intent is not None and intent.nonce == 5
    journal.close()


def test_a_nonce_is_committed_only_if_nobody_took_it_meanwhile(journal_db: str) -> None:
    journal = Journal(journal_db)
    nonces = NonceAllocator(journal)
    journal.leases.acquire(ACCOUNT, owner=nonces)
    journal.store_nonce(1, ACCOUNT, 5)
    peeked = nonces.peek(1, ACCOUNT)
    with journal.begin() as conn:  # another signer uses nonce 5 first
        nonces.commit(conn, 1, ACCOUNT, peeked)
    with pytest.raises(StaleState, match=r"nonce 5 .* was taken meanwhile"), journal.begin() as conn:
        nonces.commit(conn, 1, ACCOUNT, peeked)
    assert journal.stored_nonce(1, ACCOUNT) == 6
    journal.close()


def test_one_lease_per_account_and_the_refusal_names_its_holder(journal_db: str) -> None:
    first, second = Journal(journal_db, clock=lambda: 1_700_000_000.0), Journal(journal_db)
    lease = first.leases.acquire(ACCOUNT)
    assert first.leases.acquire(ACCOUNT) == lease  # idempotent for its holder
    with pytest.raises(LeaseHeld) as refused:
        second.leases.acquire(ACCOUNT)
    (line,) = refused.value.lines()
    assert line == (f"account {ACCOUNT} is leased to {lease.host} pid {os.getpid()} since 2023-11-14 22:13:20 UTC: "
                    "only the holder of its lease signs for it")
    assert second.leases.acquire(OTHER).epoch == 1  # other accounts are free

    first.close()  # the holder stops: the lease passes on, under a new epoch
    assert second.leases.acquire(ACCOUNT).epoch == lease.epoch + 1
    second.close()


def lose_lock(journal_db: str) -> None:
    """Takes every lease lock away behind its holder's back: deletes SQLite's lock files, or ends the PostgreSQL
    sessions that hold advisory locks (as a dropped connection would)."""
    if "://" not in journal_db:
        for lock in Path(journal_db).parent.glob("*.lease-*.lock"):
            lock.unlink()
        return
    with sa.create_engine(database_url(journal_db)).connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"))


def test_a_process_that_lost_its_lease_can_neither_sign_nor_broadcast(journal_db: str) -> None:
    old, new = Journal(journal_db), Journal(journal_db)
    old.add_intent(id="i", **COMMON)
    held = old.leases.acquire(ACCOUNT)
    # The old holder's lock goes away behind its back and another process takes the account over: the old one
    # still believes it holds the lease.
    lose_lock(journal_db)
    assert new.leases.acquire(ACCOUNT).epoch == held.epoch + 1

    with pytest.raises(LeaseLost, match="was taken over"), old.begin() as conn:
        old.add_tx(conn, record("0x01", 0), b"\x01", 1, ACCOUNT)
    with pytest.raises(LeaseLost, match="holds no lease"), old.fenced(ACCOUNT):  # and it knows it now
        pass
    assert old.txs("i") == []
    with new.fenced(ACCOUNT) as conn:
        new.add_tx(conn, record("0x02", 0), b"\x02", 1, ACCOUNT)
    (stored,) = new.txs("i")
    assert stored.record.tx_hash == "0x02"
    old.close()
    new.close()


HOLD = """
import sys, time
from agent.execution.journal import Journal
journal = Journal(sys.argv[1])
journal.leases.acquire(sys.argv[2])
print("HELD", flush=True)
time.sleep(600)
"""


def test_a_killed_holder_releases_its_lease_to_the_next_process(journal_db: str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, journal_db, ACCOUNT], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "HELD"
        journal = Journal(journal_db)
        with pytest.raises(LeaseHeld, match=f"pid {holder.pid} since"):
            journal.leases.acquire(ACCOUNT)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    assert journal.leases.acquire(ACCOUNT).epoch == 2
    journal.close()


OPEN = """
import sys
from agent.execution.journal import Journal
sys.stdin.readline()
Journal(sys.argv[1]).close()
"""


def test_processes_opening_a_new_journal_together_all_migrate_it(journal_db: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    openers = [subprocess.Popen([sys.executable, "-c", OPEN, journal_db], stdin=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env) for _ in range(4)]
    for opener in openers:  # every interpreter is up and waiting: release them at once
        assert opener.stdin is not None
        opener.stdin.write("go\n")
        opener.stdin.flush()
    results = [(opener.wait(timeout=60), opener.stderr.read() if opener.stderr else "") for opener in openers]
    assert [code for code, _ in results] == [0, 0, 0, 0], results
