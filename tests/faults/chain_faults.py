"""Faults of the chain itself, under the daemon's feet: a base fee that rises each block (a transaction, then its
cancellation, stuck below it), transactions dropped from the mempool, a nonce taken by a transaction the journal does
not know, a stale oracle, a reorg that drops a mined transaction."""

from __future__ import annotations

import time
from collections.abc import Callable

from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from tests.faults.lifecycle import WATCH_S, held
from tests.faults.proxy import Fault, dropped
from tests.faults.run import NAME, Run, Scenario

SEND = frozenset({"eth_sendRawTransaction"})
GWEI = 10**9
RAMP = 1.25  # the base fee's rise per block: a transaction priced at twice the base fee is below it in 3 blocks
RAMP_CAP_WEI = 150 * GWEI  # under the policy's 200 gwei gas cap: replacements stay allowed
STALE_S = 2 * 3600  # past the policy's `max_age_s` of 3600


def newest_tx(run: Run, kind: str | None = None) -> tuple[int, int] | None:
    """(nonce, max fee per gas) of the journal's newest transaction (of `kind`), or None."""
    with run.journal() as journal:
        txs = [t for i in journal.intents(NAME) for t in journal.txs(i.id) if kind in (None, t.record.kind)]
    return (txs[-1].record.nonce, txs[-1].record.max_fee_per_gas_wei) if txs else None


def count_txs(run: Run, kind: str) -> int:
    with run.journal() as journal:
        return sum(t.record.kind == kind for i in journal.intents(NAME) for t in journal.txs(i.id))


def rising_base_fee(until: Callable[[Run], bool], what: str) -> Callable[[Run], None]:
    """Returns a `watch`: holds the daemon's first broadcast, raises the base fee above that transaction's max fee,
    lets it reach the mempool, then keeps raising the base fee each block until `until(run)` (or WATCH_S), and
    lowers it back: whatever the daemon has pending then is mined."""

    def watch(run: Run) -> None:
        hold = held(run, lambda h: Fault(h, methods=SEND), "a broadcast")
        if hold is None:
            return
        start_fee = int(run.w3.eth.get_block("pending")["baseFeePerGas"])
        signed = newest_tx(run)
        fee = max((signed[1] if signed else start_fee) + 1, start_fee)
        try:
            run.rpc("anvil_setNextBlockBaseFeePerGas", hex(fee))
            run.rpc("evm_mine")
        finally:
            run.proxies[0].fault = None
            hold.release()
        deadline = time.monotonic() + WATCH_S
        while not until(run) and time.monotonic() < deadline and not run.stopping.is_set():
            fee = min(int(fee * RAMP), RAMP_CAP_WEI)
            run.rpc("anvil_setNextBlockBaseFeePerGas", hex(fee))
            run.rpc("evm_mine")
            time.sleep(0.3)
        applied = until(run)
        run.rpc("anvil_setNextBlockBaseFeePerGas", hex(start_fee))
        run.rpc("evm_mine")
        run.notes.append(f"base fee raised to {fee / GWEI:.1f} gwei; {count_txs(run, 'replacement')} replacements, "
                         f"{count_txs(run, 'cancel')} cancellations signed")
        if not applied:
            run.unapplied.append(f"no {what} under the rising base fee")

    return watch


def dropped_sends(run: Run) -> None:
    """Drops every broadcast (answered with its hash, sent nowhere) from the daemon's first until its deadline's
    cancellation has waited three bump intervals; then the node takes transactions again."""
    run.proxies[0].fault = Fault(dropped, methods=SEND)
    deadline = time.monotonic() + WATCH_S
    while count_txs(run, "cancel") == 0 and time.monotonic() < deadline and not run.stopping.is_set():
        time.sleep(0.1)
    cancelled = count_txs(run, "cancel") > 0
    run.stopping.wait(6.0 if cancelled else 0)
    run.proxies[0].fault = None
    run.notes.append(f"{count_txs(run, 'cancel')} cancellations signed while sends were dropped")
    if not cancelled:
        run.unapplied.append("no cancellation while sends were dropped")


def nonce_taken(run: Run) -> None:
    """Holds the daemon's first broadcast, sends a transaction of its own from the sender's key at that nonce, then
    lets the daemon's through (anvil answers "nonce too low")."""
    hold = held(run, lambda h: Fault(h, methods=SEND), "a broadcast")
    if hold is None:
        return
    try:
        signed = newest_tx(run)
        if signed is None:
            run.unapplied.append("a broadcast held with no transaction in the journal")
            return
        run.notes.append(f"nonce {signed[0]} taken by {run.send_from_keeper(signed[0])}")
    finally:
        run.proxies[0].fault = None
        hold.release()


def stale_prices(run: Run, step: int, price: float) -> None:
    """The crash, with the price feeds' `updatedAt` two hours old at steps 2 to 4 (the answer still moves)."""
    chain = LocalChain(run.w3)
    set_weth_price(chain, run.localnet, price)
    if not 2 <= step <= 4:
        return
    stamp = int(run.w3.eth.get_block("latest")["timestamp"]) - STALE_S
    for symbol in ("WETH", "WSTETH"):
        feed = chain.at("LocalPriceFeed", run.localnet.world.feeds[symbol])
        chain.send(feed.functions.setAnswerAt(feed.functions.latestAnswer().call(), stamp),
                   run.localnet.accounts[0].address)


def saw_stale_prices(run: Run) -> str | None:
    """The daemon said, in its log or journal, that it held back on stale prices."""
    logs = " ".join(log.read_text() for log in run.workdir.glob("*.log"))
    with run.journal() as journal:
        events = " ".join(str(e["detail"]) for e in journal.events(NAME, limit=1000))
    return None if "stale" in logs + events else "no sign that the daemon saw the stale prices"


def reorg_of_a_mined(run: Run) -> None:
    """Mines a block every half second (three confirmations need blocks) and, once an intent is journaled as mined,
    reorganises the chain from that transaction's block (`anvil_reorg`: the same height, without it)."""
    reorged = False
    while not run.stopping.wait(0.5):
        run.rpc("evm_mine")
        if reorged:
            continue
        with run.journal() as journal:
            mined = [i for i in journal.unresolved(NAME) if i.state == "mined" and i.block_number is not None]
        if not mined:
            continue
        tx_hash, block = str(mined[0].tx_hash), int(mined[0].block_number or 0)
        run.rpc("anvil_reorg", run.w3.eth.block_number - block + 1, [])
        reorged = True
        gone = run.rpc("eth_getTransactionReceipt", tx_hash) is None
        run.notes.append(f"reorg from block {block}: {tx_hash[:10]} {'dropped' if gone else 'still mined'}")
        if not gone:
            run.unapplied.append("the reorg left the transaction mined")
    if not reorged:
        run.unapplied.append("no intent was mined to reorganise away")


def replaced(run: Run) -> bool:
    return count_txs(run, "replacement") > 0


def cancel_bumped(run: Run) -> bool:
    return count_txs(run, "cancel") > 1


FAST_BUMPS = (("replace_after_s", "2"),)
CHAIN_FAULTS = [
    Scenario("stuck transaction (rising base fee)", watch=rising_base_fee(replaced, "replacement"),
             execution=FAST_BUMPS),
    Scenario("stuck cancellation (rising base fee)", watch=rising_base_fee(cancel_bumped, "bumped cancellation"),
             execution=(*FAST_BUMPS, ("deadline_s", "6"))),
    Scenario("sends dropped, cancellation stuck", watch=dropped_sends, execution=(*FAST_BUMPS, ("deadline_s", "6")),
             paths=("safe",)),
    Scenario("nonce taken by an outside transaction", watch=nonce_taken),
    Scenario("stale oracle", move=stale_prices, check=saw_stale_prices),
    Scenario("reorg drops a mined transaction", watch=reorg_of_a_mined, execution=(("confirmations", "3"),)),
]
