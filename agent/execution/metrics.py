"""The executor's Prometheus metrics, registered once per registry (tests pass their own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from agent.telemetry import REGISTRY


class ExecutionMetrics:
    """Counters and gauges of guard decisions, transactions and alerts; label values never hold a secret."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.kill_switch = Gauge("ballast_kill_switch_engaged", "1 while the kill-switch file exists: nothing is sent.",
                                 registry=registry)
        self.refusals = Counter("ballast_guard_refusals", "Plans or actions the guard refused, by rule.",
                                ["portfolio", "rule"], registry=registry)
        self.transactions = Counter("ballast_transactions", "Transactions broadcast, by kind (action, replacement, "
                                    "cancel).", ["chain", "kind"], registry=registry)
        self.intents = Counter("ballast_intents_finished", "Intents that reached an end state, by state.",
                               ["portfolio", "state"], registry=registry)
        self.dry_run = Counter("ballast_dry_run_intents", "Transactions simulated and recorded, not sent (dry run).",
                               ["portfolio"], registry=registry)
        self.unresolved = Gauge("ballast_intents_unresolved", "Live intents not yet at an end state.", ["portfolio"],
                                registry=registry)
        self.stuck = Gauge("ballast_intents_stuck", "Unresolved intents whose fee bumps and cancellation budget are "
                           "spent: the account's nonce is blocked until an operator acts (alert).", ["portfolio"],
                           registry=registry)
        self.lease = Gauge("ballast_lease_held", "1 while this process holds the lease of the portfolio's account "
                           "(it alone signs for it); 0 on a standby replica.", ["portfolio"], registry=registry)
        self.paused = Gauge("ballast_portfolio_paused", "1 while a portfolio is paused (a prediction miss, or an "
                            "intent's nonce used by a transaction the journal does not know): nothing is sent for it "
                            "until an operator resumes it.",
                            ["portfolio"], registry=registry)
        self.prediction_miss = Counter("ballast_prediction_miss", "Executed plans whose read-back state missed the "
                                       "plan's prediction beyond tolerance (alert).", ["portfolio"], registry=registry)


_by_registry: dict[int, ExecutionMetrics] = {}


def execution_metrics(registry: CollectorRegistry = REGISTRY) -> ExecutionMetrics:
    """Returns the metrics registered in `registry`, registering them on first use."""
    key = id(registry)
    if key not in _by_registry:
        _by_registry[key] = ExecutionMetrics(registry)
    return _by_registry[key]
