"""SIGKILL at each point of an intent's life, and at random moments. The proxy holds the daemon's request that
follows the point (its first simulation, its fee lookup, its broadcast, anvil's answer to it, the receipt that
shows it mined): the daemon is frozen there, its journal as the point left it, when the test kills it and starts
another on the same journal."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from tests.faults.proxy import Fault, Hold
from tests.faults.run import PATHS, SAFE, Run, Scenario

WATCH_S = 40  # how long a kill waits for its point (the crash makes the daemon act within ~10 s)


def mined(answer: dict[str, Any]) -> bool:
    result = answer.get("result")
    return isinstance(result, dict) and result.get("blockNumber") is not None


# Each point: the request held there, and the state the journal must show the intent in when the kill comes.
POINTS: dict[str, tuple[Callable[[Hold], Fault], str]] = {
    "planned (journaled, not simulated)": (lambda hold: Fault(hold, methods=frozenset({"eth_estimateGas"})),
                                           "planned"),
    "simulated (not signed)": (lambda hold: Fault(hold, methods=frozenset({"eth_feeHistory"})), "simulated"),
    "signed (not broadcast)": (lambda hold: Fault(hold, methods=frozenset({"eth_sendRawTransaction"})), "signed"),
    "broadcast (mined, not journaled as sent)": (
        lambda hold: Fault(hold, methods=frozenset({"eth_sendRawTransaction"}), forward_first=True), "signed"),
    "mined (not journaled as confirmed)": (
        lambda hold: Fault(hold, methods=frozenset({"eth_getTransactionReceipt"}), answered=mined), "sent"),
}


def held(run: Run, fault: Callable[[Hold], Fault], what: str) -> Hold | None:
    """Sets the hold `fault` on the first proxy and waits until it holds a request (None: it never did in time,
    noted as unapplied). The caller releases it."""
    hold = Hold()
    run.proxies[0].fault = fault(hold)
    deadline = time.monotonic() + WATCH_S
    while not hold.reached.wait(0.1):
        if time.monotonic() > deadline or run.stopping.is_set():
            run.proxies[0].fault = None
            hold.release()
            run.unapplied.append(f"the daemon never reached {what}")
            return None
    return hold


def kill_at(point: str) -> Callable[[Run], None]:
    """Returns a `watch` that SIGKILLs the daemon at `point` (once) and starts another."""
    fault, state = POINTS[point]

    def watch(run: Run) -> None:
        hold = held(run, fault, point)
        if hold is None:
            return
        states = run.open_states()
        try:
            run.restart(f"at {point}: open intents {states}")
        finally:
            run.proxies[0].fault = None
            hold.release()
        if state not in states:
            run.unapplied.append(f"at {point} the journal showed {states}, not an intent {state}")

    return watch


def kill_at_random(run: Run) -> None:
    """SIGKILLs the daemon three times at moments drawn from the run's seed, from the crossing of its band to the
    end of the crash (when it plans and sends), starting another each time."""
    rng = random.Random(run.index)
    start = time.monotonic()
    for moment in sorted(rng.uniform(4.0, 11.0) for _ in range(3)):
        while time.monotonic() - start < moment:
            if run.stopping.wait(0.05):
                return
        run.restart(f"at {moment:.1f} s: open intents {run.open_states()}")


SAFE_ONLY = ("planned (journaled, not simulated)", "simulated (not signed)")  # nothing signed yet: no nonce at stake
KILLS = [Scenario(f"SIGKILL at {point}", watch=kill_at(point), paths=SAFE if point in SAFE_ONLY else PATHS)
         for point in POINTS] + [
    Scenario("SIGKILL at random moments (seeded)", watch=kill_at_random),
]
