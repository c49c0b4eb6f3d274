"""The book a plan acts on, and what each action does to it: Aave balances, LP liquidity and the wallet.

A plan's prediction is made by applying its actions, in order, to the positions of the snapshot and re-running the
risk engine on the result. Swaps credit their expected output from the cost model, taking the price impact of the
plan's earlier swaps through the same pool into account.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.model import (
    AaveAccount,
    AaveReserve,
    Action,
    LpPosition,
    MorphoPosition,
    OptionPosition,
    PerpPosition,
    Position,
    RiskReport,
    Scenario,
    Snapshot,
    Token,
)
from agent.planner.costs import CostModel
from agent.risk import lending, morpho
from agent.risk import lp as lp_math
from agent.risk.portfolio import risk_report


@dataclass(frozen=True, slots=True)
class Book:
    """One chain's Aave account and LP positions that a plan acts on, the wallet's idle balances there (base
    units), and every other position unchanged. `swapped_in` holds, per (token in, token out, fee), the base units
    the plan already swapped.
    """

    chain: str
    owner: str
    underlying: str
    account: AaveAccount | None
    lps: tuple[LpPosition, ...]
    others: tuple[Position, ...]
    wallet: tuple[tuple[str, int], ...]
    tokens: tuple[Token, ...]
    swapped_in: tuple[tuple[tuple[str, str, int], int], ...] = ()
    betas: tuple[tuple[str, float], ...] = ()  # each factor's beta to the underlying, for the report

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot, chain: str | None = None,
                      betas: Mapping[str, float] | None = None) -> Book:
        """Return the book that acts on `chain`'s Aave account (default: the snapshot's first chain with one, else
        its first chain), every other position, other chains' included, held unchanged."""
        accounts = [p for p in snapshot.positions if isinstance(p, AaveAccount)]
        if chain is None:
            chain = accounts[0].chain if accounts else snapshot.chains[0].chain
        account = next((a for a in accounts if a.chain == chain), None)
        lps = tuple(p for p in snapshot.positions if isinstance(p, LpPosition) and p.chain == chain
                    and p.owner.lower() == snapshot.account.lower())
        others = tuple(p for p in snapshot.positions if p is not account and p not in lps)
        tokens: dict[str, Token] = {}
        wallet: dict[str, int] = {}
        for chain_snapshot in snapshot.chains:
            if chain_snapshot.chain != chain:
                continue
            for balance in chain_snapshot.balances:
                if balance.owner.lower() == snapshot.account.lower():
                    tokens[balance.token.symbol] = balance.token
                    wallet[balance.token.symbol] = wallet.get(balance.token.symbol, 0) + balance.amount_base_units
            for quote in chain_snapshot.quotes:
                tokens.setdefault(quote.token_in.symbol, quote.token_in)
                tokens.setdefault(quote.token_out.symbol, quote.token_out)
        for reserve in account.reserves if account else ():
            tokens.setdefault(reserve.token.symbol, reserve.token)
        for position in lps:
            tokens.setdefault(position.token0.symbol, position.token0)
            tokens.setdefault(position.token1.symbol, position.token1)
        return cls(chain, snapshot.account, snapshot.underlying, account, lps, others, tuple(sorted(wallet.items())),
                   tuple(sorted(tokens.values(), key=lambda t: t.symbol)), betas=tuple(sorted((betas or {}).items())))

    def with_chain(self, other: Book) -> Book:
        """Return this book with the positions that `other` acts on (its chain's account and LPs) as `other` has
        them: one view of every chain's book, for the portfolio's report."""
        if other.chain == self.chain:
            return self

        def acted(p: Position) -> bool:
            return (isinstance(p, AaveAccount) and p.chain == other.chain) or (
                isinstance(p, LpPosition) and p.chain == other.chain and p.owner.lower() == other.owner.lower())

        kept = tuple(p for p in self.others if not acted(p))
        head: tuple[Position, ...] = (other.account,) if other.account is not None else ()
        return dataclasses.replace(self, others=kept + head + other.lps)

    def token(self, symbol: str) -> Token:
        return next(t for t in self.tokens if t.symbol == symbol)

    def balance(self, symbol: str) -> int:
        """Return the wallet's idle balance of `symbol`, base units."""
        return dict(self.wallet).get(symbol, 0)

    def swapped(self, symbol_in: str, symbol_out: str, fee_pips: int) -> int:
        return dict(self.swapped_in).get((symbol_in, symbol_out, fee_pips), 0)

    def reserve(self, symbol: str) -> AaveReserve | None:
        if self.account is None:
            return None
        return next((r for r in self.account.reserves if r.token.symbol == symbol), None)

    def lp(self, token_id: int) -> LpPosition:
        return next(p for p in self.lps if p.token_id == token_id)

    def positions(self) -> tuple[Position, ...]:
        head: tuple[Position, ...] = (self.account,) if self.account is not None else ()
        return head + self.lps + self.others

    def health_factor_wad(self) -> int:
        """Return the acting account's exact health factor (2**256 − 1 with no debt or no account)."""
        return lending.NO_DEBT_HEALTH_FACTOR if self.account is None else lending.health_factor_wad(self.account)

    def health_factor(self) -> float:
        return lending.health_factor_float(self.health_factor_wad())

    def morpho_health_factor(self, position_id: int) -> float:
        """Return the health factor of the book's Morpho position in market `position_id` (inf without debt)."""
        position = next(p for p in self.others if isinstance(p, MorphoPosition)
                        and int(p.market_id, 16) == position_id)
        return lending.health_factor_float(morpho.health_factor_wad(position))

    def report(self, prices_usd: Mapping[str, float], now_ts: int, scenarios: Sequence[Scenario] = ()) -> RiskReport:
        """Return the risk engine's report on the book's positions (with its factors at the book's betas, and the
        book in `scenarios`)."""
        betas = dict(self.betas) or None
        return risk_report(self.positions(), self.underlying, prices_usd, now_ts, betas=betas, scenarios=scenarios)

    def with_wallet_changes(self, changes: Mapping[str, int]) -> Book:
        """Return the book with each symbol's idle balance moved by its change (base units, signed); ValueError when
        one would go below zero."""
        wallet = dict(self.wallet)
        for symbol, change in changes.items():
            wallet[symbol] = wallet.get(symbol, 0) + change
            if wallet[symbol] < 0:
                raise ValueError(f"plan spends {-wallet[symbol]} base units of {symbol} it does not hold")
        return dataclasses.replace(self, wallet=tuple(sorted(wallet.items())))

    def with_reserve_changes(self, symbol: str, collateral: int = 0, debt: int = 0) -> Book:
        """Return the book with the Aave reserve of `symbol` holding `collateral` more supplied and `debt` more owed
        (base units, signed); ValueError when either would go below zero."""
        assert self.account is not None
        reserves = []
        for r in self.account.reserves:
            if r.token.symbol == symbol:
                owed = r.variable_debt_base_units + debt
                if owed < 0 or r.collateral_base_units + collateral < 0:
                    raise ValueError(f"plan takes more {symbol} out of Aave than the account has")
                supplied = r.collateral_base_units + collateral
                # Aave turns a first supply into collateral when the asset has an LTV.
                usage = r.usage_as_collateral or (collateral > 0 and r.collateral_base_units == 0 and r.ltv_bps > 0)
                r = dataclasses.replace(r, collateral_base_units=supplied, variable_debt_base_units=owed,
                                        usage_as_collateral=usage)
            reserves.append(r)
        return dataclasses.replace(self, account=dataclasses.replace(self.account, reserves=tuple(reserves)))

    def apply(self, action: Action, costs: CostModel) -> Book:
        """Return the book after `action`; ValueError when the action spends what the book does not hold."""
        kind, asset, amount = action.kind, action.asset, action.amount_base_units
        if action.protocol == "morpho_blue" and kind not in ("flash_loan", "flash_repay"):
            from agent.planner.morpho import apply_morpho  # planner/morpho.py builds on this module

            return apply_morpho(self, action)
        if kind == "repay":
            return self.with_wallet_changes({asset: -amount}).with_reserve_changes(asset, debt=-amount)
        if kind == "withdraw":
            return self.with_reserve_changes(asset, collateral=-amount).with_wallet_changes({asset: amount})
        if kind == "supply":
            return self.with_wallet_changes({asset: -amount}).with_reserve_changes(asset, collateral=amount)
        if kind == "borrow":
            return self.with_reserve_changes(asset, debt=amount).with_wallet_changes({asset: amount})
        if kind in ("flash_loan", "flash_repay"):  # the loan is in the wallet only until it is paid back
            return self.with_wallet_changes({asset: amount if kind == "flash_loan" else -amount})
        if kind == "swap":
            key = (asset, action.asset_out, action.fee_pips)
            out = swap_output(self, costs, asset, action.asset_out, amount, action.fee_pips)
            moved = dict(self.swapped_in)
            moved[key] = moved.get(key, 0) + amount
            book = self.with_wallet_changes({asset: -amount, action.asset_out: out})
            return dataclasses.replace(book, swapped_in=tuple(sorted(moved.items())))
        if kind == "remove_liquidity":
            position = self.lp(action.position_id)
            amount0, amount1 = removal_proceeds(position, amount)
            left = dataclasses.replace(position, liquidity=position.liquidity - amount, tokens_owed0=0,
                                       tokens_owed1=0)
            if left.liquidity < 0:
                raise ValueError(f"plan removes more liquidity than position {position.token_id} has")
            lps = tuple(left if p.token_id == position.token_id else p for p in self.lps)
            book = dataclasses.replace(self, lps=lps)
            return book.with_wallet_changes({position.token0.symbol: amount0, position.token1.symbol: amount1})
        if kind in ("perp", "perp_deposit"):
            return self._with_perp(action, costs)
        if kind in ("option_buy", "option_sell"):
            return self._with_option(action, costs)
        raise ValueError(f"cannot simulate action kind {kind!r}")

    def perp(self) -> PerpPosition | None:
        """Returns the book's perp position on the underlying (None: no margin or position at a perp venue)."""
        return next((p for p in self.others if isinstance(p, PerpPosition) and p.underlying == self.underlying),
                    None)

    def option(self, venue: str, series_id: int) -> OptionPosition | None:
        return next((p for p in self.others if isinstance(p, OptionPosition) and p.venue == venue
                     and p.series_id == series_id), None)

    def with_other_replaced(self, old: Position | None, new: Position | None) -> Book:
        """Return the book with position `old` (one it holds unchanged, or None) replaced by `new` (None: removed)."""
        others = tuple(p for p in self.others if p is not old)
        return dataclasses.replace(self, others=others + ((new,) if new is not None else ()))

    def _with_perp(self, action: Action, costs: CostModel) -> Book:
        """The book after a perp trade or margin deposit, as the reference venue books it: the fee comes out of the
        margin, a reduction realises its P&L at the fill price, a growth averages the entry."""
        market = costs.perp_market(self.chain, self.underlying)
        if market is None:
            raise ValueError(f"no perp market on {self.underlying} on {self.chain}")
        old = self.perp()
        position = old or PerpPosition(market.venue, self.underlying, 0.0, 0.0, 0.0,
                                       market.maintenance_margin_fraction, market.funding_rate_per_hour)
        if action.kind == "perp_deposit":
            book = self.with_wallet_changes({action.asset: -action.amount_base_units})
            margin = position.margin_usd + action.amount_base_units / 10**self.token(action.asset).decimals
            return book.with_other_replaced(old, dataclasses.replace(position, margin_usd=margin))
        delta = action.amount_base_units / 1e18
        fill = market.fill_price_usd(delta)
        size, entry, margin = position.size_underlying, position.entry_price_usd, position.margin_usd
        margin -= abs(delta) * fill * market.fee_fraction
        after = size + delta
        if size == 0 or (size > 0) == (delta > 0):
            entry = (abs(size) * entry + abs(delta) * fill) / abs(after)
        else:
            closed = min(abs(delta), abs(size))
            margin += closed * (fill - entry) * (1 if size > 0 else -1)
            entry = 0.0 if abs(after) < 1e-12 else (fill if (after > 0) != (size > 0) else entry)
        moved = dataclasses.replace(position, size_underlying=after, entry_price_usd=entry, margin_usd=margin)
        return self.with_other_replaced(old, moved)

    def _with_option(self, action: Action, costs: CostModel) -> Book:
        """The book after buying (the wallet pays mark plus fee) or selling back (receives mark less fee) options."""
        series = costs.series(self.chain, action.position_id)
        amount = action.amount_base_units / 1e18
        sign = 1 if action.kind == "option_buy" else -1
        premium = amount * series.mark_price_usd * (1 + sign * series.fee_fraction)
        token = self.token(series.quote_token)
        book = self.with_wallet_changes({series.quote_token: -sign * math.ceil(premium * 10**token.decimals)
                                  if sign > 0 else int(premium * 10**token.decimals)})
        old = self.option(series.venue, series.series_id)
        quantity = (old.quantity if old else 0.0) + sign * amount
        if quantity < -1e-12:
            raise ValueError(f"plan sells more of option series {series.series_id} than it holds")
        new = None if abs(quantity) < 1e-12 else OptionPosition(
            series.venue, series.underlying, series.is_call, series.strike_usd, series.expiry_ts, quantity,
            series.vol_annual, series.mark_price_usd, series.series_id)
        return book.with_other_replaced(old, new)


def removal_proceeds(position: LpPosition, liquidity: int) -> tuple[int, int]:
    """Return (token0, token1) base units that decreasing `liquidity` and collecting everything owed pays out."""
    amount0, amount1 = lp_math.position_amounts(dataclasses.replace(position, liquidity=liquidity))
    return amount0 + position.tokens_owed0, amount1 + position.tokens_owed1


def swap_output(book: Book, costs: CostModel, symbol_in: str, symbol_out: str, amount: int, fee_pips: int) -> int:
    """Return the expected output of a swap through the pool with `fee_pips`, after the plan's earlier swaps."""
    for curve in costs.curves[(book.chain, symbol_in, symbol_out)]:
        if curve.fee_pips == fee_pips:
            already = book.swapped(symbol_in, symbol_out, fee_pips)
            return curve.amount_out(already + amount) - curve.amount_out(already)
    raise KeyError(f"no {symbol_in}→{symbol_out} pool with fee {fee_pips}")


def swapped_by_fee(book: Book, symbol_in: str, symbol_out: str) -> dict[int, int]:
    """Return the base units the plan already swapped from one token to the other, per pool fee."""
    return {fee: amount for (i, o, fee), amount in book.swapped_in if i == symbol_in and o == symbol_out}


def swap_step(
    book: Book, costs: CostModel, symbol_in: str, symbol_out: str, amount: int, max_slippage_bps: float, reason: str
) -> Action:
    """Return a swap of `amount` base units through the pool that pays the most, with `min_amount_out` the
    oracle value of `amount` less the policy's slippage tolerance (the guard's measure: fees and price impact
    included), or the expected output where that is lower (the guard then refuses the swap as too costly)."""
    estimate = costs.swap(book.chain, symbol_in, symbol_out, amount, swapped_by_fee(book, symbol_in, symbol_out))
    token_in, token_out = book.token(symbol_in), book.token(symbol_out)
    fair_out = (amount / 10**token_in.decimals * costs.prices_usd[symbol_in] / costs.prices_usd[symbol_out]
                * 10**token_out.decimals)
    min_out = min(estimate.expected_out_base_units, math.ceil(fair_out * (1.0 - max_slippage_bps / 1e4)))
    notional = amount / 10 ** book.token(symbol_in).decimals * costs.prices_usd[symbol_in]
    return Action("swap", book.chain, "uniswap_v3", symbol_in, amount, notional, reason,
                  cost_usd=estimate.cost_usd, asset_out=symbol_out, min_amount_out_base_units=min_out,
                  fee_pips=estimate.fee_pips)


def aave_step(book: Book, costs: CostModel, kind: str, symbol: str, amount: int, reason: str) -> Action:
    """Return an Aave v3 `kind` ("repay", "withdraw", "supply", "borrow") of `amount` base units of `symbol`."""
    notional = amount / 10 ** book.token(symbol).decimals * costs.prices_usd[symbol]
    return Action(kind, book.chain, "aave_v3", symbol, amount, notional, reason,
                  cost_usd=costs.gas_usd(kind, book.chain))


def remove_liquidity_step(book: Book, costs: CostModel, position: LpPosition, liquidity: int, reason: str) -> Action:
    """Return a removal of `liquidity` from an LP position (decrease and collect); its notional is the proceeds'."""
    amount0, amount1 = removal_proceeds(position, liquidity)
    notional = (amount0 / 10**position.token0.decimals * costs.prices_usd[position.token0.symbol]
                + amount1 / 10**position.token1.decimals * costs.prices_usd[position.token1.symbol])
    return Action("remove_liquidity", book.chain, "uniswap_v3", f"{position.token0.symbol}/{position.token1.symbol}",
                  liquidity, notional, reason, cost_usd=costs.gas_usd("remove_liquidity", book.chain),
                  fee_pips=position.fee_pips, position_id=position.token_id)


class Steps:
    """A plan under construction: actions in order, each stamped with the health factor it leaves, and the book
    after them."""

    def __init__(self, book: Book, costs: CostModel) -> None:
        self.book = book
        self.costs = costs
        self.actions: list[Action] = []

    def add(self, action: Action) -> Action:
        """Append `action` (after checking it against the book) and return it as stamped."""
        self.book = self.book.apply(action, self.costs)
        hf = self.book.health_factor() if self.book.account is not None else None
        if action.protocol == "morpho_blue" and action.position_id and action.kind not in ("flash_loan", "flash_repay"):
            hf = self.book.morpho_health_factor(action.position_id)
        stamped = dataclasses.replace(action, predicted_health_factor=hf)
        self.actions.append(stamped)
        return stamped

    def add_aave(self, kind: str, symbol: str, amount: int, max_units: int, reason: str) -> None:
        """Add an Aave `kind` of `amount` base units of `symbol`, split into parts of at most `max_units`."""
        for part in chunks(amount, max_units):
            self.add(aave_step(self.book, self.costs, kind, symbol, part, reason))

    def add_swaps(self, symbol_in: str, symbol_out: str, amount: int, max_units: int, max_slippage_bps: float,
                  reason: str) -> int:
        """Add a swap of `amount` base units split into parts of at most `max_units`; return the sum of the parts'
        minimum outputs."""
        received = 0
        for part in chunks(amount, max_units):
            received += self.add(swap_step(self.book, self.costs, symbol_in, symbol_out, part, max_slippage_bps,
                                           reason)).min_amount_out_base_units
        return received


def chunks(amount: int, max_units: int) -> list[int]:
    """Return `amount` split into near-equal parts of at most `max_units` each (no parts for 0)."""
    if amount <= 0:
        return []
    if max_units <= 0 or amount <= max_units:
        return [amount]
    count = -(-amount // max_units)
    base, extra = divmod(amount, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def add_removal(steps: Steps, token_id: int, liquidity: int, max_notional_usd: float, reason: str) -> None:
    """Add the removal of `liquidity` from LP `token_id`, split so that each part's proceeds stay within the cap."""
    whole = remove_liquidity_step(steps.book, steps.costs, steps.book.lp(token_id), liquidity, reason)
    parts = max(1, math.ceil(whole.notional_usd / max_notional_usd)) if max_notional_usd > 0 else 1
    for part in chunks(liquidity, -(-liquidity // parts)):
        steps.add(remove_liquidity_step(steps.book, steps.costs, steps.book.lp(token_id), part, reason))
