"""Faults of the chain itself, under the daemon's feet: a base fee that rises each block (a transaction, then its
cancellation, stuck below it), transactions dropped from the mempool, a nonce taken by a transaction the journal does
not know, a stale oracle, a reorg that drops a mined transaction."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from tests.faults.lifecycle import WATCH_S, held
from tests.faults.proxy import Fault, dropped
from tests.faults.run import NAME, SAFE, Run, Scenario

SEND = frozenset({"eth_sendRawTransaction"})
GWEI = 10**9
RAMP = 1.25  # the base fee's rise per step
ABOVE_GAS_CAP_WEI = 300 * GWEI  # the policy's gas cap is 200 gwei: no replacement may pay this
ABOVE_CANCEL_CAP_WEI = 2_500 * GWEI  # a cancellation's cap is 10 times the gas cap: 2,000 gwei
STALE_S = 2 * 3600  # past the policy's `max_age_s` of 3600


def newest_tx(run: Run, kind: str | None = None) -> tuple[int, int] | None:
    """(nonce, max fee per gas) of the journal's newest transaction (of `kind`), or None."""
    with run.journal() as journal:
        txs = [t for i in journal.intents(NAME) for t in journal.txs(i.id) if kind in (None, t.record.kind)]
    return (txs[-1].record.nonce, txs[-1].record.max_fee_per_gas_wei) if txs else None


def count_txs(run: Run, kind: str) -> int:
    with run.journal() as journal:
        return sum(t.record.kind == kind for i in journal.intents(NAME) for t in journal.txs(i.id))


def below_base_fee(answer: dict[str, object]) -> bool:
    """anvil refuses a transaction whose max fee is below the base fee; geth and most nodes keep it in their pool
    until the base fee falls: the proxy answers as those do (the daemon then re-broadcasts it itself)."""
    return "less than block base fee" in str(answer.get("error", ""))


class BaseFee:
    """Keeps anvil's next base fee at `target` (None: as anvil computes it), whatever the blocks mined meanwhile do
    to it, from a thread, until `stop()` sets it back where it was."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.start_fee = int(run.w3.eth.get_block("pending")["baseFeePerGas"])
        self.target: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, daemon=True)
        self._thread.start()

    def set(self, fee: int) -> None:
        self.target = fee
        self.run.rpc("anvil_setNextBlockBaseFeePerGas", hex(fee))

    def _keep(self) -> None:
        while not self._stop.wait(0.1):
            if self.target is not None:
                self.run.rpc("anvil_setNextBlockBaseFeePerGas", hex(self.target))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.run.rpc("anvil_setNextBlockBaseFeePerGas", hex(self.start_fee))


def stuck_broadcast(run: Run, base_fee: BaseFee, fee: Callable[[int], int],
                    only: Callable[[object], bool] | None = None) -> bool:
    """Holds the daemon's next broadcast (of those `only` picks), raises the base fee to `fee(its max fee)` and lets
    it through to the node, which keeps it in its pool (`below_base_fee`), where it cannot be mined."""
    hold = held(run, lambda h: Fault(h, methods=SEND, only=only), "a broadcast")
    if hold is None:
        return False
    try:
        signed = newest_tx(run)
        base_fee.set(fee(signed[1] if signed else GWEI))
    finally:
        run.proxies[0].fault = Fault(dropped, methods=SEND, answered=below_base_fee)
        hold.release()
    return True


def stuck_transaction(run: Run) -> None:
    """The daemon's first transaction stuck under a base fee rising 25% a step to three times its max fee (under
    the gas cap: a replacement may pay it), which stays there until the run ends."""
    base_fee = BaseFee(run)
    try:
        if not stuck_broadcast(run, base_fee, lambda max_fee: max_fee + 1):
            return
        plateau = min(3 * (base_fee.target or GWEI), 90 * GWEI)
        while not run.stopping.wait(0.2):
            base_fee.set(min(int((base_fee.target or GWEI) * RAMP), plateau))
        run.notes.append(f"base fee held at {plateau / GWEI:.1f} gwei; {count_txs(run, 'replacement')} "
                         "replacements")
    finally:
        base_fee.stop()


def stuck_cancellation(run: Run) -> None:
    """The daemon's first transaction stuck under a base fee above the gas cap (it may not be bumped), until past its
    deadline; then its cancellation stuck under a base fee above the cancellation's own cap, until the daemon
    marks the intent stuck; then the base fee falls back and the cancellation can be mined."""
    base_fee = BaseFee(run)
    try:
        if not stuck_broadcast(run, base_fee, lambda _max_fee: ABOVE_GAS_CAP_WEI):
            return
        if not stuck_broadcast(run, base_fee, lambda _max_fee: ABOVE_CANCEL_CAP_WEI,
                               only=lambda params: is_cancel(run, params)):
            return
        deadline = time.monotonic() + WATCH_S
        while stuck_events(run) == 0 and time.monotonic() < deadline and not run.stopping.wait(0.2):
            pass
    finally:
        base_fee.stop()
    run.notes.append(f"{count_txs(run, 'cancel')} cancellations signed, {stuck_events(run)} intents marked stuck")
    if stuck_events(run) == 0:
        run.unapplied.append("the stuck cancellation was never marked stuck")


def is_cancel(run: Run, params: object) -> bool:
    """Whether a broadcast's raw transaction is one of the journal's cancellations."""
    raw = str(params[0]) if isinstance(params, list) and params else ""
    with run.journal() as journal:
        return any(t.raw_tx == raw for i in journal.intents(NAME) for t in journal.txs(i.id)
                   if t.record.kind == "cancel")


def stuck_events(run: Run) -> int:
    with run.journal() as journal:
        return sum(e["kind"] == "stuck" for e in journal.events(NAME, limit=1000))


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
    stamp = int(run.w3.eth.get_block("latest")["timestamp"]) - STALE_S if 2 <= step <= 4 else None
    set_weth_price(LocalChain(run.w3), run.localnet, price, updated_at=stamp)


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


FAST_BUMPS = (("replace_after_s", "2"),)
CHAIN_FAULTS = [
    Scenario("stuck transaction (rising base fee)", watch=stuck_transaction, execution=FAST_BUMPS),
    Scenario("stuck cancellation (base fee above its cap)", watch=stuck_cancellation,
             execution=(("replace_after_s", "1"), ("deadline_s", "4")), paths=SAFE),
    Scenario("sends dropped, cancellation stuck", watch=dropped_sends, execution=(*FAST_BUMPS, ("deadline_s", "6")),
             paths=SAFE),
    Scenario("nonce taken by an outside transaction", watch=nonce_taken),
    Scenario("stale oracle", move=stale_prices, check=saw_stale_prices, paths=SAFE),
    Scenario("reorg drops a mined transaction", watch=reorg_of_a_mined, execution=(("confirmations", "3"),)),
]
