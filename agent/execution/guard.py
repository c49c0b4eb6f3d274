"""The guard: what may be sent at all. Every refusal is a `Refusal` with a rule name and a reason an operator can
act on; the executor journals it.

Rules: the kill switch (a file; nothing is sent while it exists), a paused portfolio, a snapshot with stale or
untrusted data, per-transaction notional, rolling 24-hour turnover, swap slippage against the oracle price (a
bounded emergency cap near liquidation), the
price bounds of perp and option trades against the venue's index price and mark, and every call of a recipe
against the rules the keeper module enforces (`agent.adapters.safe.refusal`): a (target, selector) the policy's
protocols allow, every beneficiary argument the account itself, every approval spender a protocol contract. For
a Safe the module's own configuration, read at the snapshot block, is checked too, so that whatever the module
would refuse is refused before anything is signed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from web3 import Web3

from agent.adapters.encode import Venues, call_rules, decode_approve, spenders
from agent.adapters.safe import CallRule, ModuleConfig
from agent.adapters.safe import refusal as module_refusal
from agent.execution.journal import Intent, Journal
from agent.execution.metrics import ExecutionMetrics
from agent.execution.recipe import Recipe, RecipeCall
from agent.execution.reverts import named
from agent.model import Action, OptionSeries, Plan, Snapshot, TxRequest
from agent.policy import Policy

DAY_S = 86_400.0
DELEVERAGE_KINDS = frozenset({"repay", "withdraw", "swap", "flash_loan", "flash_repay"})
NOTIONAL_ROUNDING = 1e-9  # a chunk planned at the cap is 10000.000000000002 USD in floating point
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
# A failed quote only limits the planner's cost estimate; any other failed read leaves the picture incomplete.
_HARMLESS_FAILED_SOURCES = ("uniswap_v3:quote:",)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why something may not be sent: `rule` names the check (kill_switch, paused, stale_prices, allowlist,
    notional, turnover, slippage), `action_index` the plan's action it concerns (None: the whole plan)."""

    rule: str
    reason: str
    action_index: int | None = None

    def __str__(self) -> str:
        where = "" if self.action_index is None else f"action {self.action_index}: "
        return f"refused ({self.rule}): {where}{self.reason}"


def allowlist(venues: Venues) -> frozenset[str]:
    """Returns the lowercase addresses a transaction may call on one chain: the policy's protocol contracts (the
    Aave pool as its PoolAddressesProvider names it, the Uniswap router and position manager) and the tokens
    known there (for approvals, whose spender must itself be a protocol contract)."""
    return frozenset(a.lower() for a in (*venues.contracts(), *(t.address for t in venues.tokens)))


def policy_rules(venues: Venues, module: str | None = None) -> ModuleConfig:
    """Returns the keeper module's configuration as the policy's protocols on one chain imply it (for a direct
    account too: the same rules, with the account as the beneficiary): the calls of `call_rules`, the spenders,
    the Aave pool and Morpho Blue as flash lenders."""
    pool = Web3.to_checksum_address(venues.aave_pool) if venues.aave_pool else ZERO_ADDRESS
    return ModuleConfig(
        Web3.to_checksum_address(module or ZERO_ADDRESS), Web3.to_checksum_address(venues.account), True,
        ZERO_ADDRESS, True, pool, 0, rules={key: CallRule(True, *bits) for key, bits in call_rules(venues).items()},
        spenders=dict.fromkeys(spenders(venues), True),
        flash_lenders={**({pool: "aave_v3"} if venues.aave_pool else {}),
                       **({venues.morpho.morpho: "morpho_blue"} if venues.morpho else {})},
    )


def reduces_risk(plan: Plan, snapshot: Snapshot) -> bool:
    """Whether `plan` only lowers risk: a deleverage (its actions all repay debt, withdraw or swap collateral for the
    repay, or flash-borrow for it) that the planner predicts leaves the lowest health factor above the snapshot's."""
    if not plan.actions or any(a.kind not in DELEVERAGE_KINDS for a in plan.actions):
        return False
    now = snapshot.lowest_health_factor
    if plan.predicted is not None and plan.predicted.accounts:
        after: float | None = min(a.health_factor for a in plan.predicted.accounts)
    else:
        after = next((a.predicted_health_factor for a in reversed(plan.actions) if a.predicted_health_factor), None)
    return now is not None and after is not None and after > now


class Guard:
    """Checks plans and transactions against a policy's limits and the operator's switches."""

    def __init__(
        self, policy: Policy, journal: Journal, kill_switch: Path, venues: Mapping[str, Venues],
        metrics: ExecutionMetrics, clock: Callable[[], float],
    ) -> None:
        self.policy = policy
        self.journal = journal
        self.kill_switch = kill_switch
        self.venues = dict(venues)
        self.metrics = metrics
        self.clock = clock
        executor = policy.portfolio.executor
        module = executor.module if executor.kind == "safe_module" else None
        self.rules = {chain: policy_rules(v, module) for chain, v in self.venues.items()}

    def kill_switch_engaged(self) -> bool:
        """Returns whether the kill-switch file exists (and updates its metric)."""
        engaged = self.kill_switch.exists()
        self.metrics.kill_switch.set(1 if engaged else 0)
        return engaged

    def sending_refusal(self) -> Refusal | None:
        """Returns the refusal of any broadcast right now (the kill switch), or None."""
        if self.kill_switch_engaged():
            return Refusal("kill_switch", f"kill switch {self.kill_switch} exists: nothing is sent")
        return None

    def check_plan(self, plan: Plan, snapshot: Snapshot) -> list[Refusal]:
        """Returns every refusal of `plan` as a whole and of each of its actions (empty: approved)."""
        refusals: list[Refusal] = []
        stop = self.sending_refusal()
        if stop is not None:
            refusals.append(stop)
        paused = self.journal.paused(plan.portfolio)
        if paused is not None:
            refusals.append(Refusal("paused", f"portfolio {plan.portfolio} is paused: {paused}"))
        untrusted = [p for p in snapshot.problems
                     if p.kind != "failed_call" or not p.source.startswith(_HARMLESS_FAILED_SOURCES)]
        if untrusted:
            detail = "; ".join(f"{p.source}: {p.detail}" for p in untrusted[:3])
            more = f" (and {len(untrusted) - 3} more)" if len(untrusted) > 3 else ""
            refusals.append(Refusal("stale_prices", f"the snapshot has stale or untrusted data: {detail}{more}"))
        limits = self.policy.limits
        total = sum(a.notional_usd for a in plan.actions)
        spent = self.journal.turnover_usd(plan.portfolio, self.clock() - DAY_S)
        # A deleverage that only lowers risk is never held back by the turnover cap: it is what the cap protects.
        if spent + total > limits.max_daily_turnover_usd and not reduces_risk(plan, snapshot):
            refusals.append(Refusal("turnover", f"{spent:,.0f} USD traded in 24 h plus this plan's {total:,.0f} USD "
                                                f"exceeds max_daily_turnover_usd {limits.max_daily_turnover_usd:,.0f}"))
        for index, action in enumerate(plan.actions):
            if action.notional_usd > limits.max_notional_per_tx_usd * (1 + NOTIONAL_ROUNDING):
                refusals.append(Refusal("notional", f"{action.kind} of {action.notional_usd:,.0f} USD exceeds "
                                        f"max_notional_per_tx_usd {limits.max_notional_per_tx_usd:,.0f}", index))
            if action.kind == "swap":
                refusal = self._slippage(action, snapshot, index)
                if refusal is not None:
                    refusals.append(refusal)
            if action.kind in ("perp", "option_buy", "option_sell"):
                refusal = self._venue_slippage(action, snapshot, index)
                if refusal is not None:
                    refusals.append(refusal)
        return refusals

    def check_tx(self, request: TxRequest, index: int | None = None) -> Refusal | None:
        """Returns the refusal of one call that breaks the policy's call rules (target and selector, beneficiary,
        approval spender), or that carries value."""
        venues = self.venues.get(request.chain)
        if venues is None:
            return Refusal("allowlist", f"chain {request.chain} is not in the policy", index)
        if request.value_wei:
            return Refusal("allowlist", f"a call to {request.to} may not carry value", index)
        code = module_refusal(self.rules[request.chain], request)
        return None if code is None else Refusal("allowlist", self._broken(code, request, venues), index)

    def _broken(self, code: str, request: TxRequest, venues: Venues) -> str:
        """Says which of the policy's call rules `request` breaks."""
        if code == "BK013":
            return f"a call to the account or its module itself ({request.to})"
        if code == "BK011":
            return f"a call to {request.to} ({request.description}) names a beneficiary other than {venues.account}"
        approval = decode_approve(request.data)
        if code == "BK012" and approval is not None:
            return f"approval spender {approval[0]} is not a contract of the policy's protocols"
        if request.to.lower() not in allowlist(venues):
            return f"{request.to} on {request.chain} is not a contract of the policy's protocols"
        return f"{request.to} on {request.chain}: 0x{request.data[:4].hex()} is not a call the policy allows"

    def check_intent(self, intent: Intent, module: str | None) -> Refusal | None:
        """Returns why a journaled intent may not be sent now: its call (a recipe's: each of its calls, and the
        recipe itself addressed to the Safe's `module`) breaks the policy's rules."""
        if intent.kind != "recipe":
            return self.check_tx(TxRequest(intent.chain, intent.to_address, intent.data_bytes, int(intent.value_wei),
                                           intent.description))
        if intent.to_address.lower() != (module or "").lower():
            return Refusal("allowlist", f"a recipe goes to the Safe's module {module}, not {intent.to_address}")
        calls = [TxRequest(intent.chain, c["to"], bytes.fromhex(c["data"][2:]), 0, c["description"])
                 for c in intent.recipe_calls()]
        return next((r for c in calls if (r := self.check_tx(c)) is not None), None)

    def check_recipe(self, recipe: Recipe, module: ModuleConfig | None, atomic: bool) -> list[Refusal]:
        """Returns every refusal of a recipe: each call against the policy's rules, a flash loan from a lender the
        policy does not name or on an account that cannot run one atomically, and, for a Safe, everything its
        keeper module (`module`, read at the snapshot block) would refuse."""
        refusals = [r for c in recipe.calls if (r := self.check_tx(c.request, c.action_index)) is not None]
        passed = [c for c in recipe.calls if self.check_tx(c.request) is None]
        loan = recipe.flash_loan
        if loan is not None:
            lender = Web3.to_checksum_address(loan.lender)
            if not atomic:
                refusals.append(Refusal("allowlist", "a flash loan needs a Safe with the keeper module (portfolio."
                                        "executor.kind: safe_module)", loan.action_index))
            elif lender not in self.rules[recipe.chain].flash_lenders:
                refusals.append(Refusal("allowlist", f"flash lender {lender} is not a contract of the policy's "
                                        "protocols", loan.action_index))
        # The module's own configuration is asked about what the policy allows (its refusals are the module's).
        return refusals + ([] if module is None else _module_refusals(recipe, passed, module))

    def _venue_slippage(self, action: Action, snapshot: Snapshot, index: int) -> Refusal | None:
        """A perp trade's acceptable price against the index price, an option trade's cost bound against the
        venue's mark with its fee: neither may concede more than `max_slippage_bps`."""
        limit = self.policy.hedging.max_slippage_bps
        if action.kind == "perp":
            price = snapshot.price_usd(action.asset)
            if not price or action.acceptable_price_1e18 <= 0:
                return Refusal("slippage", f"no fresh price for {action.asset} or no acceptable price", index)
            side = 1 if action.amount_base_units > 0 else -1
            conceded = side * (action.acceptable_price_1e18 / 1e18 / price - 1) * 10_000
            what = "perp trade accepts a fill"
        else:
            series = next((m for m in snapshot.markets if isinstance(m, OptionSeries) and m.chain == action.chain
                           and m.series_id == action.position_id), None)
            venues = self.venues.get(action.chain)
            if series is None or venues is None:
                return Refusal("slippage", f"option series {action.position_id} is not in the snapshot", index)
            decimals = venues.token(series.quote_token).decimals
            buy = action.kind == "option_buy"
            fair = (action.amount_base_units / 1e18 * series.mark_price_usd
                    * (1 + (series.fee_fraction if buy else -series.fee_fraction)) * 10**decimals)
            bound = action.max_amount_in_base_units if buy else action.min_amount_out_base_units
            conceded = ((bound / fair - 1) if buy else (1 - bound / fair)) * 10_000 if fair > 0 else 10_000.0
            what = "option trade accepts a price"
        if conceded > limit + 1e-6:  # rounding to base units and to 1e18
            return Refusal("slippage", f"{what} {conceded:,.1f} bps worse than the venue's, more than "
                                       f"max_slippage_bps {limit:g}", index)
        return None

    def _slippage(self, action: Action, snapshot: Snapshot, index: int) -> Refusal | None:
        venues = self.venues.get(action.chain)
        try:
            if venues is None:
                raise ValueError(f"chain {action.chain} is not in the policy")
            token_in, token_out = venues.token(action.asset), venues.token(action.asset_out)
        except ValueError as error:
            return Refusal("slippage", str(error), index)
        price_in = snapshot.price_usd(token_in.symbol, action.chain)
        price_out = snapshot.price_usd(token_out.symbol, action.chain)
        if not price_in or not price_out:
            return Refusal("slippage", f"no fresh price for {token_in.symbol} and {token_out.symbol}", index)
        fair_out = (action.amount_base_units / 10**token_in.decimals * price_in / price_out
                    * 10**token_out.decimals)
        slippage_bps = (1 - action.min_amount_out_base_units / fair_out) * 10_000 if fair_out > 0 else 10_000.0
        # Near liquidation the cap rises to a bounded emergency one: a dearer repay beats a liquidation.
        limit = self.policy.swap_slippage_limit_bps(snapshot.lowest_health_factor)
        if slippage_bps > limit + 1e-6:  # the minimum output is a whole base unit: allow its rounding
            name = "max_slippage_bps" if limit == self.policy.hedging.max_slippage_bps else "emergency_max_slippage_bps"
            return Refusal("slippage", f"swap accepts {slippage_bps:,.1f} bps below the oracle price, more than "
                                       f"{name} {limit:g}", index)
        return None


def _module_refusals(recipe: Recipe, calls: Sequence[RecipeCall], module: ModuleConfig) -> list[Refusal]:
    """What the keeper module, as configured on chain, would refuse in the recipe and of its `calls`."""
    refusals = []
    if not module.module_enabled:
        refusals.append(Refusal("module", f"the Safe {module.safe} has not enabled the keeper module {module.module}"))
    if not module.keeper_enabled:
        refusals.append(Refusal("module", f"{module.keeper} is not a keeper of the module {module.module}: BK001"))
    for call in calls:
        code = module_refusal(module, call.request)
        if code is not None:
            refusals.append(Refusal("module", f"the keeper module would refuse {call.request.description}: "
                                              f"{named(code)}", call.action_index))
    loan = recipe.flash_loan
    if loan is not None and module.flash_lenders.get(Web3.to_checksum_address(loan.lender)) is None:
        refusals.append(Refusal("module", f"the keeper module does not take flash loans from {loan.lender}: "
                                          f"{named('BK041')}", loan.action_index))
    return refusals
