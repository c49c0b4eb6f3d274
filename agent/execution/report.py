"""What `execute_plan` reports of one plan: its intents as journaled, the guard's refusals, or why it was deferred."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.execution.guard import Refusal
from agent.execution.journal import Intent


@dataclass(frozen=True)
class ExecutionReport:
    """What `execute_plan` did: the plan's intents as journaled now, the guard's refusals, and `deferred` (why
    nothing was done: an unresolved intent of the portfolio, or one mined after the plan's snapshot), empty when the
    plan went ahead."""

    portfolio: str
    plan_id: str
    mode: str
    intents: tuple[Intent, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    deferred: str = ""

    @property
    def states(self) -> tuple[str, ...]:
        return tuple(i.state for i in self.intents)

    def to_json(self) -> dict[str, Any]:
        """Returns the report as a JSON-ready mapping."""
        return {
            "portfolio": self.portfolio, "plan_id": self.plan_id, "mode": self.mode, "deferred": self.deferred,
            "refusals": [str(r) for r in self.refusals],
            "intents": [{"id": i.id, "step": f"{i.action_index}.{i.step}", "kind": i.kind, "state": i.state,
                         "description": i.description, "error": i.error, "nonce": i.nonce, "tx_hash": i.tx_hash,
                         "block": i.block_number, "calls": i.recipe_calls()}
                        for i in self.intents],
        }
