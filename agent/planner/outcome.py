"""The planner's shared vocabulary: what a planning step returns, the units every module uses, the
per-transaction notional cap in base units, and the base of the planners that split their steps within it."""

from __future__ import annotations

from dataclasses import dataclass

from agent.model import Action, Token
from agent.planner.book import Book, Steps
from agent.planner.costs import base_units
from agent.policy import Policy

WAD = 10**18  # Aave's and Morpho's fixed-point unit (health factors, LTVs)
DUST_USD = 1.0  # a step worth less than this is not worth a call


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a planning step chose: its actions (stamped with their health factors), the book after them, and the
    policy limit that stopped it short ("" when none)."""

    actions: tuple[Action, ...]
    book: Book
    limited_by: str = ""


def cap_base_units(policy: Policy, token: Token, price_usd: float) -> int:
    """Return the policy's per-transaction notional cap (`limits.max_notional_per_tx_usd`) in base units of `token`
    at `price_usd` (rounded down; 0 for a non-positive price)."""
    return base_units(policy.limits.max_notional_per_tx_usd, token, price_usd)


class CappedPlanner:
    """The state the hedge and deleverage planners share: the steps under construction, priced by their cost
    model, and the policy whose per-transaction cap and slippage bound each step."""

    def __init__(self, steps: Steps, policy: Policy) -> None:
        self.steps, self.costs, self.policy = steps, steps.costs, policy
        self.slippage_bps = policy.hedging.max_slippage_bps

    def cap_units(self, symbol: str) -> int:
        """Return the per-transaction cap in base units of `symbol` at the cost model's price."""
        return cap_base_units(self.policy, self.steps.book.token(symbol), self.costs.prices_usd[symbol])
