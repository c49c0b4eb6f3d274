"""What the daemon watches over each executor: whether it holds its account's lease (otherwise its portfolio is on
standby: read and assessed, never signed for), and whether an intent is stuck past every fee bump and its
cancellation's own budget (`agent.chain.fees.stuck_after_s`). Time comes from the daemon (`now_s`)."""

from __future__ import annotations

from agent.chain.fees import stuck_after_s
from agent.execution.executor import Executor
from agent.execution.journal import Intent
from agent.execution.lease import LeaseHeld


def take_lease(executor: Executor) -> str | None:
    """Starts `executor`, which takes its account's lease and reconciles; returns None when it holds the lease, else
    the one line naming the holder. Publishes `ballast_lease_held`."""
    try:
        executor.start()
    except LeaseHeld as held:
        executor.metrics.lease.labels(executor.portfolio).set(0)
        return str(held)
    executor.metrics.lease.labels(executor.portfolio).set(1)
    return None


def mark_stuck(executor: Executor, now_s: float) -> tuple[list[Intent], list[Intent]]:
    """Records as stuck every unresolved intent of the executor's portfolio signed more than `stuck_after_s` ago;
    returns (the intents newly marked, every stuck one) and publishes `ballast_intents_stuck`."""
    execution, journal = executor.policy.execution, executor.journal
    limit_s = stuck_after_s(execution.deadline_s, execution.replace_after_s)
    marked = []
    for intent in journal.unresolved(executor.portfolio):
        if intent.signed_at is None or intent.stuck_at is not None or now_s - intent.signed_at <= limit_s:
            continue
        reason = (f"nonce {intent.nonce} open {now_s - intent.signed_at:.0f}s after signing: its fee bumps and its "
                  "cancellation's budget are spent; the account's later transactions wait behind it")
        if journal.mark_stuck(intent.id, reason):
            marked.append(intent)
    stuck = journal.stuck(executor.portfolio)
    executor.metrics.stuck.labels(executor.portfolio).set(len(stuck))
    return marked, stuck
