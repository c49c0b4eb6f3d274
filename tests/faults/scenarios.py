"""The faults of the matrix: what each endpoint answers (`proxy.py`), and, from `lifecycle.py` and `chain_faults.py`,
kills at each point of an intent's life and what the chain itself does (fees, nonces, oracles, reorgs)."""

from __future__ import annotations

from collections.abc import Callable

from tests.faults.chain_faults import CHAIN_FAULTS
from tests.faults.lifecycle import KILLS
from tests.faults.proxy import Fault, down, error, malformed
from tests.faults.run import SAFE, Run, Scenario

SEND = frozenset({"eth_sendRawTransaction"})
CALLS = frozenset({"eth_call", "eth_estimateGas"})
STEPS = 7  # the crash's price steps (`matrix.CRASH`)


def during(fault: Fault, endpoint: int = 0, first: int = 1, last: int = 3) -> Callable[[Run, int], None]:
    """Returns an `apply` that sets `fault` on proxy `endpoint` for crash steps first…last, and clears it after."""

    def apply(run: Run, step: int) -> None:
        run.proxies[endpoint].fault = fault if first <= step <= last else None

    return apply


def second_daemon(run: Run, step: int) -> None:
    """Starts a second daemon for the same account on the same journal at the first crash step."""
    if step == 1:
        run.start_daemon("second")


ENDPOINT_FAULTS = [
    Scenario("no fault"),
    Scenario("first endpoint down (failover)", during(Fault(down), first=0, last=STEPS), endpoints=2, paths=SAFE),
    Scenario("every endpoint down", during(Fault(down), first=1, last=2)),
    Scenario("transient errors (header not found)",
             during(Fault(error(-32000, "header not found"), methods=CALLS, probability=0.5), first=1, last=4),
             paths=SAFE),
    Scenario("rate limited (429)", during(Fault(error(429, "Too Many Requests"), probability=0.5), first=1, last=4),
             paths=SAFE),
    Scenario("malformed answers", during(Fault(malformed, probability=0.3), first=1, last=4), endpoints=2,
             paths=SAFE),
    Scenario("already known", during(Fault(error(-32000, "already known"), methods=SEND, forward_first=True),
                                     first=0, last=STEPS), paths=SAFE),
    Scenario("nonce too low", during(Fault(error(-32000, "nonce too low"), methods=SEND, forward_first=True),
                                     first=0, last=STEPS)),
    Scenario("replacement underpriced", during(Fault(error(-32000, "replacement transaction underpriced"),
                                                     methods=SEND), first=1, last=2), paths=SAFE),
    Scenario("a revert in simulation", during(Fault(error(3, "execution reverted: 35"), methods=frozenset(
        {"eth_estimateGas"})), first=1, last=2), paths=SAFE),
    Scenario("two daemons for one account", second_daemon),
]

SCENARIOS = ENDPOINT_FAULTS + KILLS + CHAIN_FAULTS
