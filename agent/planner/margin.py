"""Keep every perp position alive: when its liquidation price is within MIN_DISTANCE of the underlying's price, add
margin until it is TARGET_DISTANCE away.

The margin comes from the wallet's idle margin token first, then from that token's Aave collateral, withdrawn only
as far as the health factor stays at or above the band's min; when both fall short (and the policy allows perp
trades) the position is reduced until the margin it has keeps it TARGET_DISTANCE away, and the plan says it was
limited by "no_funds". Distances are fractions of the underlying's price: a short's liquidation price above it, a
long's below it.
"""

from __future__ import annotations

import math

from agent.model import Action, PerpPosition
from agent.planner.book import Book, Steps, chunks
from agent.planner.costs import CostModel, usd
from agent.planner.hedge import perp_step
from agent.planner.outcome import DUST_USD, WAD, Outcome, cap_base_units
from agent.planner.search import least, most
from agent.policy import Policy
from agent.risk.perps import liquidation_price_usd

MIN_DISTANCE = 0.25  # act when the liquidation price is nearer than this fraction of the underlying's price
TARGET_DISTANCE = 0.5  # and add margin until it is this far
_REDUCE_STEPS = 1000  # a reduction is sized in thousandths of the position


def liquidation_distance(position: PerpPosition, spot_usd: float) -> float:
    """Return |liquidation price − spot| / spot (math.inf without a liquidation price, 0 past it)."""
    price = liquidation_price_usd(position)
    if price is None or spot_usd <= 0:
        return math.inf
    beyond = price <= spot_usd if position.size_underlying < 0 else price >= spot_usd
    return 0.0 if beyond else abs(price - spot_usd) / spot_usd


def perp_at_risk(position: PerpPosition | None, spot_usd: float) -> bool:
    """Whether a perp position's liquidation price is within MIN_DISTANCE of `spot_usd`."""
    return position is not None and position.size_underlying != 0 and \
        liquidation_distance(position, spot_usd) < MIN_DISTANCE


def margin_needed_usd(position: PerpPosition, spot_usd: float, distance: float = TARGET_DISTANCE) -> float:
    """Return the margin (USD) to add so that the liquidation price is `distance` of `spot_usd` away: solves
    margin + q(P − entry) = m·|q|·P at P = spot·(1 ± distance) for the margin (0 when it already has enough)."""
    q, m = position.size_underlying, position.maintenance_margin_fraction
    if q == 0:
        return 0.0
    target = spot_usd * (1 + distance) if q < 0 else spot_usd * max(1 - distance, 0.0)
    required = q * position.entry_price_usd - target * (q - m * abs(q))
    return max(required - position.margin_usd, 0.0)


def plan_perp_margin(book: Book, costs: CostModel, policy: Policy, hf_min: float) -> Outcome:
    """Return the "perp_deposit" steps (after any Aave withdrawal that funds them, or the perp reduction that
    replaces them) that move the book's perp position's liquidation price TARGET_DISTANCE from the underlying's
    price, when it is nearer than MIN_DISTANCE; nothing otherwise."""
    position = book.perp()
    spot = costs.prices_usd.get(book.underlying)
    if position is None or spot is None or not perp_at_risk(position, spot):
        return Outcome((), book)
    market = costs.perp_market(book.chain, book.underlying)
    symbol = market.margin_token if market is not None else ""
    if market is None or not any(t.symbol == symbol for t in book.tokens):
        return Outcome((), book, "no_instrument")
    token = book.token(symbol)
    price = costs.prices_usd.get(symbol, 1.0)
    liquidation = liquidation_price_usd(position)
    reason = (f"perp {position.size_underlying:+,.4g} {book.underlying} liquidation price {liquidation:,.2f} within "
              f"{liquidation_distance(position, spot):.1%} of {book.underlying} {spot:,.2f} (min "
              f"{MIN_DISTANCE:.0%}): add margin to move it {TARGET_DISTANCE:.0%} away")
    # The venue books margin-token units as USD.
    need = math.ceil(margin_needed_usd(position, spot) * 10**token.decimals)
    steps = Steps(book, costs)
    cap = cap_base_units(policy, token, price)
    from_wallet = min(book.balance(symbol), need)
    withdrawn = 0
    reserve = book.reserve(symbol)
    if need > from_wallet and reserve is not None and reserve.collateral_base_units > 0:
        min_wad = int(hf_min * WAD)

        def keeps_min(w: int) -> bool:
            return book.with_reserve_changes(symbol, collateral=-w).health_factor_wad() >= min_wad

        withdrawn = most(keeps_min, min(need - from_wallet, reserve.collateral_base_units))
        if usd(withdrawn, token, price) < DUST_USD:
            withdrawn = 0
        why = f"{reason}: withdraw {usd(withdrawn, token, price):,.0f} USD of {symbol} (HF stays ≥ {hf_min:g})"
        steps.add_aave("withdraw", symbol, withdrawn, cap, why)
    deposit = from_wallet + withdrawn
    if usd(deposit, token, price) >= DUST_USD:
        source = f"{usd(from_wallet, token, price):,.0f} USD idle" + (
            f", {usd(withdrawn, token, price):,.0f} USD from Aave" if withdrawn else "")
        for part in chunks(deposit, cap):
            steps.add(Action("perp_deposit", book.chain, "perps", symbol, part, usd(part, token, price),
                             f"{reason}: deposit {source}", cost_usd=costs.gas_usd("perp_deposit", book.chain)))
    if deposit >= need:
        return Outcome(tuple(steps.actions), steps.book)
    _reduce(steps, costs, policy, spot, reason)
    return Outcome(tuple(steps.actions), steps.book, "no_funds")


def _reduce(steps: Steps, costs: CostModel, policy: Policy, spot: float, reason: str) -> None:
    """Add the smallest reduction of the perp position that leaves its liquidation price TARGET_DISTANCE away with
    the margin it has (nothing unless the policy allows perp trades)."""
    if "perp" not in policy.hedging.instruments:
        return
    book = steps.book
    position = book.perp()
    market = costs.perp_market(book.chain, book.underlying)
    if position is None or market is None:
        return
    size = position.size_underlying
    slippage = policy.hedging.max_slippage_bps

    def action(k: int) -> Action:
        delta_usd = -size * k / _REDUCE_STEPS * market.index_price_usd
        why = f"{reason}: not enough {market.margin_token}, reduce the perp by {k / _REDUCE_STEPS:.1%}"
        return perp_step(book, costs, delta_usd, slippage, why)

    def safe(k: int) -> bool:
        if k == _REDUCE_STEPS:
            return True
        after = book.apply(action(k), costs).perp()
        return after is None or liquidation_distance(after, spot) >= TARGET_DISTANCE

    k = least(safe, _REDUCE_STEPS)
    if k > 0:
        steps.add(action(k))
