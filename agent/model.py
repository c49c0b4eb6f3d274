"""The domain vocabulary every layer shares: frozen values with their units in their field names.

On-chain quantities stay `int` in the token's base units (wei, 1e-6 USDC), in Aave's base currency (USD with 8
decimals, `_1e8`) or in wad (1e18) where exactness matters; everything else is a float in the unit its name says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The derivatives venues' markets (agent/markets.py), the risk engine's answers (agent/report.py) and what
# execution records (agent/records.py) are part of the shared vocabulary, re-exported here.
from agent.markets import Market, OptionSeries, PerpMarket  # noqa: F401
from agent.records import INTENT_STATES, OPEN_INTENT_STATES, TxRecord  # noqa: F401
from agent.report import (  # noqa: F401
    AccountHealth,
    AccountStress,
    DeskGreeks,
    FactorRisk,
    PositionRisk,
    RiskReport,
    Scenario,
    ScenarioResult,
)


@dataclass(frozen=True, slots=True)
class Token:
    """An ERC-20 token: `decimals` says how many base units make one token (18 for WETH, 6 for USDC)."""

    symbol: str
    address: str
    decimals: int


@dataclass(frozen=True, slots=True)
class AaveReserve:
    """One asset of one Aave v3 user: balances in the token's base units, price in the base currency (1e8 = 1 USD).

    `liquidation_bonus_bps` is stored the way Aave stores it, 1e4 + bonus (10500 = a 5% bonus).
    `emode_category` is the reserve's e-mode category id (0 = none).
    """

    token: Token
    collateral_base_units: int
    variable_debt_base_units: int
    price_1e8: int
    ltv_bps: int
    liquidation_threshold_bps: int
    liquidation_bonus_bps: int
    usage_as_collateral: bool
    emode_category: int = 0
    stable_debt_base_units: int = 0
    variable_borrow_apr: float = 0.0  # the reserve's current variable borrow rate, a fraction per year
    supply_apr: float = 0.0


@dataclass(frozen=True, slots=True)
class EModeCategory:
    """An Aave v3 e-mode category; `price_1e8` is its price source's price, 0 when the category has none.

    `price_source_symbol` names the asset whose price the price source follows, so that a scenario moving that
    asset moves the category's price too ("" when there is no price source).
    """

    category_id: int
    ltv_bps: int
    liquidation_threshold_bps: int
    liquidation_bonus_bps: int
    price_1e8: int = 0
    price_source_symbol: str = ""


@dataclass(frozen=True, slots=True)
class AaveAccount:
    """One Aave v3 user on one chain: every reserve it supplies or borrows, and its e-mode category (None = 0)."""

    chain: str
    account: str
    reserves: tuple[AaveReserve, ...]
    emode: EModeCategory | None = None
    reported_health_factor_wad: int | None = None  # `getUserAccountData` at the same block, when read on-chain
    flash_loan_premium_bps: int | None = None  # the pool's `FLASHLOAN_PREMIUM_TOTAL` (None: not read)


@dataclass(frozen=True, slots=True)
class MorphoPosition:
    """One borrower's position in one Morpho Blue market, with the market's state at the same block.

    Amounts are base units of the market's tokens; `borrow_shares` are Morpho's debt shares, worth
    `total_borrow_assets / total_borrow_shares` each (interest accrued to the block). `oracle_price_1e36` is the
    market oracle's price of one collateral base unit in loan base units, scaled by 1e36; `lltv_wad` the
    liquidation loan-to-value (1e18 = 100%). `market_id` is the 0x-hex hash of the market's parameters, whose
    oracle and interest-rate model are `oracle` and `irm`. `flash_liquidity_base_units` is Morpho's whole balance of
    the loan token, what its fee-free flash loan can lend. `reported_health_factor_wad` is the health factor of the
    values read at that block, Morpho's own criterion (it has no view for it), like Aave's `getUserAccountData`.
    """

    chain: str
    account: str
    morpho: str
    market_id: str
    loan_token: Token
    collateral_token: Token
    oracle: str
    irm: str
    lltv_wad: int
    collateral_base_units: int
    borrow_shares: int
    total_borrow_assets: int
    total_borrow_shares: int
    oracle_price_1e36: int
    flash_liquidity_base_units: int = 0
    reported_health_factor_wad: int | None = None


@dataclass(frozen=True, slots=True)
class LpPosition:
    """A Uniswap v3 position (one NFT) and the state of its pool at the same block.

    token0 is the token with the lower address; the pool price is token1 per token0 in base units,
    (sqrt_price_x96 / 2**96)**2. `fee_pips` is the pool fee in millionths (500 = 0.05%). `tokens_owed0/1` are
    what `collect` would pay now in base units: amounts already credited plus fees accrued since the last update.
    """

    chain: str
    owner: str
    token_id: int
    token0: Token
    token1: Token
    fee_pips: int
    tick_lower: int
    tick_upper: int
    liquidity: int
    tokens_owed0: int
    tokens_owed1: int
    sqrt_price_x96: int
    tick: int


@dataclass(frozen=True, slots=True)
class PerpPosition:
    """A perpetual future: `size_underlying` is signed (+ long), prices in USD.

    `funding_rate_per_hour` is the fraction of notional a long pays per hour (negative: longs receive), the way
    most venues quote it.
    """

    venue: str
    underlying: str
    size_underlying: float
    entry_price_usd: float
    margin_usd: float
    maintenance_margin_fraction: float
    funding_rate_per_hour: float


@dataclass(frozen=True, slots=True)
class OptionPosition:
    """A European option on `underlying`: `quantity` is signed in units of the underlying (+ long).

    `expiry_ts` is a unix timestamp in seconds, `vol_annual` the implied vol (0.6 = 60%), `mark_price_usd` the
    venue's price per unit when it has one; `series_id` is the venue's id of the series (None where it has none).
    """

    venue: str
    underlying: str
    is_call: bool
    strike_usd: float
    expiry_ts: int
    quantity: float
    vol_annual: float
    mark_price_usd: float | None = None
    series_id: int | None = None


# --- What one cycle reads (chain/, adapters/) -------------------------------------------------------------------

Position = AaveAccount | MorphoPosition | LpPosition | PerpPosition | OptionPosition
LendingPosition = AaveAccount | MorphoPosition


@dataclass(frozen=True, slots=True)
class TokenBalance:
    """An account's idle balance of a token, in base units."""

    chain: str
    owner: str
    token: Token
    amount_base_units: int


@dataclass(frozen=True, slots=True)
class PriceReading:
    """A price from an oracle at the snapshot block: `source` names it (e.g. "chainlink:WETH"), `age_s` is the
    block time minus the oracle's `updatedAt`; `stale` is set past the feed's `max_age_s`, for an incomplete round,
    a non-positive answer, or while an L2 sequencer is down."""

    chain: str
    symbol: str
    price_usd: float
    source: str
    updated_at: int
    age_s: int
    stale: bool = False


@dataclass(frozen=True, slots=True)
class SwapQuote:
    """What a swap of `amount_in_base_units` would return now (Uniswap v3 QuoterV2), for slippage estimates."""

    chain: str
    token_in: Token
    token_out: Token
    fee_pips: int
    amount_in_base_units: int
    amount_out_base_units: int
    gas_estimate: int


@dataclass(frozen=True, slots=True)
class DataProblem:
    """Something about the snapshot that the guard must act on: `kind` is one of "stale" (an old or untrusted
    price), "failed_call" (a read that reverted or did not decode), "mismatch" (two sources disagree)."""

    chain: str
    source: str
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class Reading:
    """What one adapter read in one cycle."""

    positions: tuple[Position, ...] = ()
    prices: tuple[PriceReading, ...] = ()
    balances: tuple[TokenBalance, ...] = ()
    quotes: tuple[SwapQuote, ...] = ()
    problems: tuple[DataProblem, ...] = ()
    markets: tuple[Market, ...] = ()


@dataclass(frozen=True, slots=True)
class ChainSnapshot:
    """Everything read from one chain, all at one block."""

    chain: str
    chain_id: int
    block_number: int
    block_hash: str
    timestamp: int
    base_fee_wei: int
    positions: tuple[Position, ...]
    prices: tuple[PriceReading, ...]
    balances: tuple[TokenBalance, ...]
    quotes: tuple[SwapQuote, ...]
    problems: tuple[DataProblem, ...]
    markets: tuple[Market, ...] = ()  # the derivatives venues' markets: perp market state, listed option series


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A portfolio's consistent picture at the start of a cycle: one block-pinned reading per chain."""

    portfolio: str
    account: str
    underlying: str
    chains: tuple[ChainSnapshot, ...]

    @property
    def positions(self) -> tuple[Position, ...]:
        return tuple(p for c in self.chains for p in c.positions)

    @property
    def problems(self) -> tuple[DataProblem, ...]:
        return tuple(p for c in self.chains for p in c.problems)

    @property
    def markets(self) -> tuple[Market, ...]:
        return tuple(m for c in self.chains for m in c.markets)

    @property
    def timestamp(self) -> int:
        """The newest block time among the chains (seconds): the cycle's notion of "now"."""
        return max(c.timestamp for c in self.chains)

    @property
    def lowest_health_factor(self) -> float | None:
        """The lowest health factor the lending protocols reported among the snapshot's Aave accounts and Morpho
        positions (inf without debt), or None."""
        values = [
            math.inf if p.reported_health_factor_wad >= 2**256 - 1 else p.reported_health_factor_wad / 1e18
            for p in self.positions
            if isinstance(p, AaveAccount | MorphoPosition) and p.reported_health_factor_wad is not None
        ]
        return min(values) if values else None

    def price_usd(self, symbol: str, chain: str | None = None) -> float | None:
        """Return the first fresh price of `symbol` across chains (`chain`'s first, when given: each chain's trades
        are priced by its own oracles), or None when every reading is stale or absent."""
        for c in sorted(self.chains, key=lambda c: c.chain != chain):
            for price in c.prices:
                if price.symbol == symbol and not price.stale:
                    return price.price_usd
        return None


# --- What a cycle decides and does (planner/, execution/) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Action:
    """One step of a plan, in protocol terms; adapters encode it into transactions.

    `kind` is one of: "repay", "withdraw", "supply", "borrow" (Aave v3: `asset` is the reserve), "swap" (Uniswap v3:
    `asset` in, `asset_out` out, at pool `fee_pips`, receiving at least `min_amount_out_base_units`),
    "remove_liquidity" (Uniswap v3 position `position_id`, `amount_base_units` of liquidity), and the derivatives
    venues' kinds (`protocol` "perps" or "options"):
    - "perp": change the perp position by `amount_base_units` (signed, 1e18 units of the underlying `asset`, +
      buys) at a fill no worse than `acceptable_price_1e18` (USD, 1e18: a buy fills at or below it, a sell at or
      above);
    - "perp_deposit": move `amount_base_units` of the margin token `asset` into the perp market (the planner
      deposits margin when a perp's liquidation price comes within 25% of the underlying's price, funded from the
      idle balance or Aave collateral: `planner/margin.py`; the keeper never withdraws margin);
    - "option_buy", "option_sell": buy or sell back `amount_base_units` options (1e18 units of the underlying) of
      the venue's series `position_id` (`asset` names it, e.g. "WETH-1700000000-1800-P"), paying at most
      `max_amount_in_base_units` or receiving at least `min_amount_out_base_units` of the venue's quote token;
    - "flash_loan", "flash_repay": the bracket of a flash loan (`protocol` names the lender, "aave_v3"): the first
      borrows `amount_base_units` of `asset` into the account, the actions after it are the ones the loan funds,
      the second pays back `amount_base_units` (loan + premium) once they are done. Its `cost_usd` carries the
      premium. Only an atomic recipe (the Safe's keeper module) can carry it.
    `reason` says which band and by how much; `predicted_health_factor` is the account's health factor once this
    step is done (None where it does not apply).
    """

    kind: str
    chain: str
    protocol: str
    asset: str
    amount_base_units: int
    notional_usd: float
    reason: str
    cost_usd: float = 0.0
    asset_out: str = ""
    min_amount_out_base_units: int = 0
    fee_pips: int = 0
    position_id: int = 0
    predicted_health_factor: float | None = None
    acceptable_price_1e18: int = 0
    max_amount_in_base_units: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do about a snapshot: ordered actions (possibly none) and why.

    `blocks` are the (chain, block number) pairs of the snapshot it was made from; `predicted` is the risk report
    expected after all actions; `limited_by` names the policy limit that kept the plan from restoring every band
    ("" when none did).
    """

    portfolio: str
    blocks: tuple[tuple[str, int], ...]
    actions: tuple[Action, ...]
    reason: str
    predicted: RiskReport | None = None
    limited_by: str = ""

    @property
    def empty(self) -> bool:
        return not self.actions


@dataclass(frozen=True, slots=True)
class TxRequest:
    """A transaction an adapter encoded for an action: call `data` on contract `to` with `value_wei`."""

    chain: str
    to: str
    data: bytes
    value_wei: int = 0
    description: str = ""
