"""The backtest's starting portfolio: a YAML file of positions (the snapshot's position types), each sized in tokens
or in USD at the window's first price, so that a window starts at the leverage the file describes; and the
simulated market's parameters (pool liquidity and volume share, gas, Aave utilisation, the perp and options
venues: `agent.sim.conditions`).

Loaded with the policy's loader (`agent.policy.parse_model`): the same file:line errors and `${VAR}` expansion.
Aave reserve parameters (LTV, liquidation threshold, bonus) are the local world's (`agent.localnet.world.RESERVES`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from agent.localnet.world import EMODE_ETH, RESERVES
from agent.model import AaveAccount, AaveReserve, EModeCategory, LpPosition, OptionPosition, PerpPosition, Token
from agent.policy import StrictModel, field_error, parse_model, read_text
from agent.risk import lp as lp_math

SIM_CHAIN = "sim"
SIM_OWNER = "0x000000000000000000000000000000000000bA11"
# Mainnet addresses, so that token0 / token1 of the WETH/USDC pool are ordered as on mainnet (USDC is token0).
TOKENS = {
    "WETH": Token("WETH", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", 18),
    "USDC": Token("USDC", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6),
    "WSTETH": Token("WSTETH", "0x7f39C581F595B53c5cb19bD0b3f8dA6c935E2Ca0", 18),
}
Symbol = Literal["WETH", "USDC", "WSTETH"]


class Amount(StrictModel):
    """An amount of a token: `tokens` (whole tokens) or `usd` (at the window's first price), exactly one."""

    tokens: NonNegativeFloat | None = None
    usd: NonNegativeFloat | None = None

    @model_validator(mode="after")
    def _one(self) -> Amount:
        if (self.tokens is None) == (self.usd is None):
            raise field_error("expected exactly one of tokens or usd")
        return self

    def in_tokens(self, price_usd: float) -> float:
        return self.tokens if self.tokens is not None else (self.usd or 0.0) / price_usd


class Aave(StrictModel):
    """The Aave v3 account: what it supplies (as collateral) and borrows (variable rate); `emode`: in the
    ETH-correlated e-mode category (the local world's: LTV 93%, liquidation threshold 95%, bonus 1%)."""

    supply: dict[Symbol, Amount] = Field(default_factory=dict)
    borrow: dict[Symbol, Amount] = Field(default_factory=dict)
    emode: bool = False


class Lp(StrictModel):
    """A Uniswap v3 WETH/USDC position: `range` is the price range as multiples of the window's first price, funded
    with `underlying` of WETH and the USDC that the range needs at that price."""

    range: tuple[PositiveFloat, PositiveFloat]
    underlying: Amount
    fee_pips: PositiveInt = 500

    @model_validator(mode="after")
    def _ordered(self) -> Lp:
        low, high = self.range
        if not low < 1.0 < high:
            raise field_error("expected [low, high] around the first price: low < 1 < high", "range")
        return self


class Perp(StrictModel):
    """A perpetual future entered at the window's first price: `size` signed by `side`."""

    side: Literal["long", "short"]
    size: Amount
    margin_usd: PositiveFloat
    maintenance_margin_fraction: PositiveFloat = 0.03


class Option(StrictModel):
    """A European option on the underlying: strike as a multiple of the first price, expiry in days from the
    window's start, quantity signed by `side`."""

    kind: Literal["call", "put"]
    side: Literal["long", "short"]
    strike: PositiveFloat
    expiry_days: PositiveFloat
    quantity: Amount


class PoolRange(StrictModel):
    """Liquidity of other LPs: `range` as multiples of the price it is centred on ("full": the whole tick range),
    holding `usd` of value there."""

    range: Literal["full"] | tuple[PositiveFloat, PositiveFloat]
    usd: PositiveFloat

    @model_validator(mode="after")
    def _ordered(self) -> PoolRange:
        if self.range != "full" and not self.range[0] < 1.0 < self.range[1]:
            raise field_error("expected [low, high] around the centre: low < 1 < high", "range")
        return self


class Pool(StrictModel):
    """The WETH/USDC pool the keeper swaps in and the LP earns from: fee, the other LPs' ranges, how often they
    re-centre them on the price (hours)."""

    fee_pips: PositiveInt = 500
    recentre_hours: PositiveFloat = 24.0
    ranges: tuple[PoolRange, ...] = (PoolRange(range="full", usd=200_000_000.0),)
    """Default: the local world's 0.05% pool, 50,000 WETH full range at $2,000 ($200M)."""


class Gas(StrictModel):
    """The gas-price model when no gas file is given: base × min(1 + (bar range % / double_at_pct)², max)."""

    base_gwei: PositiveFloat = 30.0
    double_at_pct: PositiveFloat = 2.0
    max_multiple: PositiveFloat = 10.0


class Stress(StrictModel):
    """Utilisation spikes: a bar whose high/low range is ≥ `move_pct` adds `spike`, decaying with the half-life."""

    move_pct: PositiveFloat = 5.0
    spike: NonNegativeFloat = 0.1
    half_life_hours: PositiveFloat = 24.0


class PerpMarketModel(StrictModel):
    """The simulated perp venue: skew = clip(trend × 72 h log return, ±max_skew) of the skew scale, funding =
    skew × max_funding_per_day; a 5 bps fee."""

    trend: float = 0.005
    max_skew: NonNegativeFloat = 0.002
    max_funding_per_day: NonNegativeFloat = 1.0
    skew_scale_underlying: PositiveFloat = 100_000.0
    fee_fraction: NonNegativeFloat = 0.0005


class OptionsVenue(StrictModel):
    """The simulated options venue: series listed each day at `strikes` (multiples of spot, rounded to $10) and
    `expiry_days`, a call and a put each, Black-Scholes at the implied-vol path, `fee_fraction` of the premium."""

    strikes: tuple[PositiveFloat, ...] = (0.8, 0.9, 1.0, 1.1, 1.2)
    expiry_days: tuple[PositiveInt, ...] = (7, 30)
    fee_fraction: NonNegativeFloat = 0.005


class Depeg(StrictModel):
    """The LST's discount to its peg (model): each bar whose high/low range is ≥ `stress.move_pct` adds
    `per_stress_bar`, decaying with `half_life_hours`, capped at `max`."""

    per_stress_bar: NonNegativeFloat = 0.005
    max: NonNegativeFloat = 0.08
    half_life_hours: PositiveFloat = 168.0


class Lst(StrictModel):
    """The liquid staking token (WSTETH, pegged to WETH), priced at the underlying's price × its ratio: `ratio` at
    the window's first bar, growing with the staking yield `yield_apr`, less the depeg path; swapped in a
    full-range WSTETH/WETH pool of `pool_usd` arbitraged to that ratio each bar."""

    ratio: PositiveFloat = 1.15
    yield_apr: NonNegativeFloat = 0.04
    depeg: Depeg = Field(default_factory=Depeg)
    pool_fee_pips: PositiveInt = 500
    pool_usd: PositiveFloat = 46_000_000.0
    """Default: the local world's WSTETH/WETH pool, 20,000 WSTETH full range at $2,300."""


DEFAULT_UTILISATION: dict[Symbol, float] = {"WETH": 0.45, "USDC": 0.8}


class Market(StrictModel):
    """The simulated market: the pool, gas, Aave utilisation and its stress spikes, the perp and options venues."""

    pool: Pool = Field(default_factory=Pool)
    pool_volume_share: NonNegativeFloat = 0.1
    """The pool's share of the price file's (exchange) volume: what the LP earns fees from."""
    gas: Gas = Field(default_factory=Gas)
    flash_loan_premium_bps: NonNegativeInt = 5
    """Aave's flash-loan premium (Ethereum's v3 market charges 5 bps): what a Safe's flash-loan recipe pays."""
    utilisation: dict[Symbol, float] = Field(default_factory=lambda: dict(DEFAULT_UTILISATION))
    stress: Stress = Field(default_factory=Stress)
    perp: PerpMarketModel = Field(default_factory=PerpMarketModel)
    options: OptionsVenue = Field(default_factory=OptionsVenue)
    lst: Lst | None = None
    """The WSTETH market, for a book that holds it."""


class PortfolioSpec(StrictModel):
    """A starting portfolio for `ballast backtest`."""

    version: Literal[1]
    name: str
    underlying: Literal["WETH"] = "WETH"
    quote: Literal["USDC"] = "USDC"
    aave: Aave = Field(default_factory=Aave)
    wallet: dict[Symbol, Amount] = Field(default_factory=dict)
    lp: tuple[Lp, ...] = ()
    perps: tuple[Perp, ...] = ()
    options: tuple[Option, ...] = ()
    market: Market = Field(default_factory=Market)

    @model_validator(mode="after")
    def _lst_priced(self) -> PortfolioSpec:
        held = {*self.aave.supply, *self.aave.borrow, *self.wallet}
        if "WSTETH" in held and self.market.lst is None:
            raise field_error("WSTETH is held: expected market.lst (its ratio and depeg model)", "market")
        return self


def load_portfolio(path: str | Path) -> PortfolioSpec:
    """Return the validated portfolio file; PolicyError with one `FILE:LINE: field: problem` issue per problem."""
    return parse_model(read_text(path), PortfolioSpec, str(path), env={}, what="portfolio sections")


def parse_portfolio(text: str, source: str = "<portfolio>") -> PortfolioSpec:
    """Return the portfolio in the YAML `text`; `source` names it in errors."""
    return parse_model(text, PortfolioSpec, source, env={}, what="portfolio sections")


@dataclass
class SimBook:
    """The simulated portfolio at one moment: its Aave account, LP positions, perps, options, idle wallet (base
    units) and the gas paid so far (USD, paid in ETH outside the book)."""

    account: AaveAccount | None
    lps: tuple[LpPosition, ...]
    perps: tuple[PerpPosition, ...]
    options: tuple[OptionPosition, ...]
    wallet: dict[str, int] = field(default_factory=dict)
    gas_paid_usd: float = 0.0


def price_1e8(price_usd: float) -> int:
    return round(price_usd * 1e8)


def sqrt_price_x96_for(position: LpPosition, underlying: str, price_usd: float) -> tuple[int, int]:
    """Return the pool's (sqrtPriceX96, tick) at which the underlying is worth `price_usd` (the other token $1)."""
    raw = float(lp_math.pool_price(position, underlying, price_usd, 1.0))
    root = math.sqrt(raw)
    sqrt_x96 = min(max(int(root * lp_math.Q96), lp_math.MIN_SQRT_RATIO), lp_math.MAX_SQRT_RATIO - 1)
    tick = math.floor(math.log(raw) / math.log(1.0001))
    # float rounding can put the tick one off the exact TickMath answer: keep them consistent
    if lp_math.sqrt_ratio_at_tick(tick) > sqrt_x96:
        tick -= 1
    elif lp_math.sqrt_ratio_at_tick(tick + 1) <= sqrt_x96:
        tick += 1
    return sqrt_x96, tick


def starting_prices(spec: PortfolioSpec, price_usd: float) -> dict[str, float]:
    """Return each token's USD price when the underlying is at `price_usd` at the window's first bar."""
    prices = {spec.underlying: price_usd, spec.quote: 1.0}
    if spec.market.lst is not None:
        prices["WSTETH"] = price_usd * spec.market.lst.ratio
    return prices


def starting_book(spec: PortfolioSpec, price_usd: float, start_s: int) -> SimBook:
    """Return the portfolio of `spec` at the window's first price `price_usd` and time `start_s` (unix s)."""
    prices = starting_prices(spec, price_usd)
    params = {r.symbol: r for r in RESERVES}
    emode = EMODE_ETH if spec.aave.emode else None
    account = None
    if spec.aave.supply or spec.aave.borrow:
        reserves = []
        for symbol in dict.fromkeys((spec.underlying, spec.quote, *spec.aave.supply, *spec.aave.borrow)):
            token = TOKENS[symbol]
            supplied = spec.aave.supply.get(symbol)
            borrowed = spec.aave.borrow.get(symbol)
            p = params[symbol]
            collateral = round(supplied.in_tokens(prices[symbol]) * 10**token.decimals) if supplied else 0
            debt = round(borrowed.in_tokens(prices[symbol]) * 10**token.decimals) if borrowed else 0
            category = emode.category_id if emode is not None and symbol in emode.assets else 0
            reserves.append(AaveReserve(token, collateral, debt, price_1e8(prices[symbol]), p.ltv_bps,
                                        p.liquidation_threshold_bps, p.liquidation_bonus_bps, collateral > 0,
                                        category))
        account = AaveAccount(SIM_CHAIN, SIM_OWNER, tuple(reserves), emode=None if emode is None else EModeCategory(
            emode.category_id, emode.ltv_bps, emode.liquidation_threshold_bps, emode.liquidation_bonus_bps),
            flash_loan_premium_bps=spec.market.flash_loan_premium_bps)
    token0, token1 = sorted((TOKENS[spec.underlying], TOKENS[spec.quote]), key=lambda t: int(t.address, 16))
    lps = []
    for index, lp in enumerate(spec.lp, start=1):
        spacing = 10 if lp.fee_pips == 500 else 60
        shell = LpPosition(SIM_CHAIN, SIM_OWNER, index, token0, token1, lp.fee_pips, 0, 0, 0, 0, 0, 0, 0)
        ticks = sorted(sqrt_price_x96_for(shell, spec.underlying, price_usd * bound)[1] for bound in lp.range)
        lower, upper = (ticks[0] // spacing * spacing, -(-ticks[1] // spacing) * spacing)
        root, tick = sqrt_price_x96_for(shell, spec.underlying, price_usd)
        amount_u = round(lp.underlying.in_tokens(price_usd) * 10**TOKENS[spec.underlying].decimals)
        plenty = 10**40
        amounts = (amount_u, plenty) if token0.symbol == spec.underlying else (plenty, amount_u)
        liquidity = lp_math.liquidity_for_amounts(root, lp_math.sqrt_ratio_at_tick(lower),
                                                  lp_math.sqrt_ratio_at_tick(upper), *amounts)
        lps.append(LpPosition(SIM_CHAIN, SIM_OWNER, index, token0, token1, lp.fee_pips, lower, upper, liquidity, 0, 0,
                              root, tick))
    perps = tuple(
        PerpPosition("sim", spec.underlying, (1 if p.side == "long" else -1) * p.size.in_tokens(price_usd), price_usd,
                     p.margin_usd, p.maintenance_margin_fraction, 0.0)
        for p in spec.perps)
    options = tuple(
        OptionPosition("sim", spec.underlying, o.kind == "call", o.strike * price_usd,
                       start_s + round(o.expiry_days * 86_400),
                       (1 if o.side == "long" else -1) * o.quantity.in_tokens(price_usd), 0.8)
        for o in spec.options)
    wallet: dict[str, int] = {s: 0 for s in prices}
    for symbol, amount in spec.wallet.items():
        wallet[symbol] = round(amount.in_tokens(prices[symbol]) * 10**TOKENS[symbol].decimals)
    return SimBook(account, tuple(lps), perps, options, wallet)
