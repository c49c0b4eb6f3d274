"""The planner's shared vocabulary: what a planning step returns, the units every module uses, and the
per-transaction notional cap in base units."""

from __future__ import annotations

from dataclasses import dataclass

from agent.model import Action, Token
from agent.planner.book import Book
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
