"""A plan becomes one recipe per chain: the ordered calls that carry out its actions, each ERC-20 approval placed
before the call that spends it for exactly what that call spends, and the flash loan that wraps the calls it funds.

How a recipe reaches the chain is the account's executor's business: through a Safe's keeper module it is one
transaction (`execute`, or `executeWithFlashLoan` around the loan), atomic; from a plain account (`direct`) each
call is its own transaction, in order, and a flash loan cannot be carried.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.adapters.encode import EncodeError, Venues, approval_needed, encode_action, encode_approve
from agent.model import Action, LpPosition, Plan, Snapshot, Token, TxRequest
from agent.risk.lp import position_amounts

Allowance = Callable[[Token, str], int]
"""Returns what the account has allowed `spender` to take of `token` at the plan's snapshot, base units."""


@dataclass(frozen=True, slots=True)
class RecipeCall:
    """One call of a recipe: the index of the plan's action it carries out, what it is ("approve" or the action's
    kind) and the call itself."""

    action_index: int
    kind: str
    request: TxRequest

    def to_json(self) -> dict[str, Any]:
        """Returns the call as the journal lists it."""
        return {"action": self.action_index, "kind": self.kind, "to": self.request.to,
                "data": "0x" + self.request.data.hex(), "description": self.request.description}


@dataclass(frozen=True, slots=True)
class FlashLoan:
    """The loan a recipe runs inside: `amount_base_units` of `asset` from `lender` (its contract), repaid with its
    premium by the module once the calls are done."""

    lender: str
    asset: Token
    amount_base_units: int
    action_index: int


@dataclass(frozen=True, slots=True)
class Recipe:
    """The calls of a plan on one chain, in order; `deleverage` asks the module to check that the recipe does not
    lower the account's health factor."""

    chain: str
    calls: tuple[RecipeCall, ...]
    flash_loan: FlashLoan | None = None
    deleverage: bool = False

    def description(self) -> str:
        """Returns one line naming the recipe's calls (and its flash loan)."""
        loan = self.flash_loan
        head = f"flash loan of {loan.amount_base_units} {loan.asset.symbol} around: " if loan else ""
        return head + "; ".join(c.request.description for c in self.calls)


class _Allowances:
    """What each (token, spender) allowance has left as the recipe's calls spend it."""

    def __init__(self, chain: str, read: Allowance) -> None:
        self.chain = chain
        self.read = read
        self.left: dict[tuple[str, str], int] = {}

    def approval(self, token: Token, spender: str, amount: int) -> TxRequest | None:
        """Returns the approval a call spending `amount` needs first (None when the allowance left covers it):
        exactly `amount`, which that call then spends."""
        key = (token.address.lower(), spender.lower())
        left = self.left[key] if key in self.left else self.read(token, spender)
        if left >= amount:
            self.left[key] = left - amount
            return None
        self.left[key] = 0
        return encode_approve(self.chain, token, spender, amount)


def removal_minimums(action: Action, snapshot: Snapshot, slippage_bps: float) -> tuple[int, int]:
    """Returns the least token0 and token1 (base units) a liquidity removal may pay: what removing the action's
    liquidity pays at the snapshot's pool price, less `slippage_bps`. Removals come first in a plan, before any
    swap moves the pool. Raises EncodeError when the position is not in the snapshot."""
    position = next((p for p in snapshot.positions if isinstance(p, LpPosition) and p.chain == action.chain
                     and p.token_id == action.position_id), None)
    if position is None:
        raise EncodeError(f"LP position {action.position_id} is not in the snapshot")
    amounts = position_amounts(dataclasses.replace(position, liquidity=action.amount_base_units))
    keep = 1.0 - slippage_bps / 10_000
    return math.floor(amounts[0] * keep), math.floor(amounts[1] * keep)


DELEVERAGE_MARGIN = 1e-3  # a plan flagged as a deleverage predicts at least this relative rise (interest moves HF)


def is_deleverage(plan: Plan, snapshot: Snapshot) -> bool:
    """Whether the plan repays debt and predicts a health factor above the snapshot's (by DELEVERAGE_MARGIN): its
    recipe then asks the module to refuse any outcome that lowers the health factor."""
    now = snapshot.lowest_health_factor
    stamps = [a.predicted_health_factor for a in plan.actions if a.predicted_health_factor is not None]
    repays = any(a.kind in ("repay", "flash_loan") for a in plan.actions)
    return repays and now is not None and bool(stamps) and stamps[-1] >= now * (1 + DELEVERAGE_MARGIN)


def compile_recipe(
    plan: Plan, snapshot: Snapshot, venues: Venues, allowance: Allowance, deadline_ts: int, slippage_bps: float,
    lender: Callable[[Action], str],
) -> tuple[Recipe, list[tuple[int, str]]]:
    """Returns the recipe of the plan's actions on `venues.chain`, and (action index, why) for each action that
    cannot be encoded. `lender` names the contract of a flash loan's lender."""
    allowances = _Allowances(venues.chain, allowance)
    calls: list[RecipeCall] = []
    problems: list[tuple[int, str]] = []
    loan: FlashLoan | None = None
    for index, action in enumerate(plan.actions):
        if action.chain != venues.chain:
            continue
        try:
            if action.kind == "flash_loan":
                if loan is not None:
                    raise EncodeError("a recipe carries one flash loan")
                loan = FlashLoan(lender(action), venues.token(action.asset), action.amount_base_units, index)
            minimums = removal_minimums(action, snapshot, slippage_bps) if action.kind == "remove_liquidity" else None
            requests = encode_action(action, venues, deadline_ts, minimums)
            spends = approval_needed(action, venues)
        except EncodeError as error:
            problems.append((index, str(error)))
            continue
        if spends is not None:
            approval = allowances.approval(*spends)
            if approval is not None:
                calls.append(RecipeCall(index, "approve", approval))
        calls += [RecipeCall(index, action.kind, request) for request in requests]
    return Recipe(venues.chain, tuple(calls), loan, is_deleverage(plan, snapshot)), problems
