"""One durable nonce allocator per (chain, account), kept in the journal.

The node's pending count is never the source of truth: a private mempool hides pending transactions and a restarted
node forgets them. The truth is the journal's own record of what it signed, reconciled at startup with the count of
mined transactions (`eth_getTransactionCount(…, "latest")`). Only the holder of the account's lease touches its
nonces: `reconcile` takes the lease first, and `commit` is a compare-and-set, so a nonce is never handed out twice.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager

import structlog
from sqlalchemy.engine import Connection
from web3 import Web3

from agent.execution.journal import Journal, StaleState

log = structlog.get_logger(__name__)


class NonceAllocator:
    """Hands out nonces for the accounts this process signs for; `commit` is part of the database transaction that
    stores the signed transaction, so a nonce is used exactly when a signature for it is journaled. The thread lock
    keeps one process's `reconcile`, `peek` and `commit` from interleaving; the compare-and-set in `commit` keeps
    any other writer out."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._lock = threading.Lock()

    def reconcile(self, w3: Web3, chain_id: int, account: str) -> int:
        """Sets and returns the next nonce of (chain, account): one above the highest nonce the journal still waits
        on, and never below the count of mined transactions. A nonce journaled but never signed (a crash between
        the two) is handed out again, so it cannot leave a gap that blocks every later transaction.

        Takes the account's lease first: raises LeaseHeld (naming the holder) when another executor has it."""
        with self._lock:
            self.journal.leases.acquire(account, owner=self)
            mined = int(w3.eth.get_transaction_count(Web3.to_checksum_address(account), "latest"))
            stored = self.journal.stored_nonce(chain_id, account)
            open_nonce = self.journal.highest_open_nonce(chain_id, account)
            next_nonce = max(mined, open_nonce + 1 if open_nonce is not None else 0)
            if stored is not None and stored != next_nonce:
                log.info("nonce reconciled", chain_id=chain_id, account=account, journal=stored, chain=mined,
                         next_nonce=next_nonce)
            self.journal.store_nonce(chain_id, account, next_nonce)
            return next_nonce

    def peek(self, chain_id: int, account: str, connection: Connection | None = None) -> int:
        """Returns the next nonce of (chain, account). Raises RuntimeError when `reconcile` never ran for it."""
        with self._lock:
            value = self.journal.stored_nonce(chain_id, account, connection)
        if value is None:
            raise RuntimeError(f"nonce of {account} on chain {chain_id} used before reconciliation")
        return value

    def commit(self, connection: Connection, chain_id: int, account: str, used: int) -> None:
        """Records that `used` is taken, inside the caller's database transaction: the next nonce moves from
        `used` to `used + 1` only if it still is `used`. Raises StaleState otherwise (another writer took it or
        reconciled it meanwhile; the caller's transaction, signature included, rolls back)."""
        with self._lock:
            self.journal.leases.check(connection, account, owner=self)
            if not self.journal.advance_nonce(chain_id, account, used, connection):
                now = self.journal.stored_nonce(chain_id, account, connection)
                raise StaleState(f"nonce {used} of {account} on chain {chain_id} was taken meanwhile (next is {now})")

    def fenced(self, account: str) -> AbstractContextManager[Connection]:
        """Returns a database transaction in which this allocator's lease of `account` is current (see
        `Journal.fenced`): the executor broadcasts inside it."""
        return self.journal.fenced(account, owner=self)

    def release(self, account: str) -> None:
        """Gives this allocator's lease of `account` up: another executor may take it."""
        self.journal.leases.release(account, owner=self)
