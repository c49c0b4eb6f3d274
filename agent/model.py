"""The domain vocabulary every layer shares: frozen values with their units in their field names.

On-chain quantities stay `int` in the token's base units (wei, 1e-6 USDC), in Aave's base currency (USD with 8
decimals, `_1e8`) or in wad (1e18) where exactness matters; everything else is a float in the unit its name says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


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


@dataclass(frozen=True, slots=True)
class DeskGreeks:
    """Sensitivities in desk units, all in USD (DESIGN.md): `delta_usd` = dV/dS·S, `gamma_usd_1pct` = change of
    delta_usd for a 1% move of the underlying, `vega_usd_1vol` per vol point (0.01), `theta_usd_1d` per calendar
    day, `rho_usd_1pct` per 1% of rate."""

    delta_usd: float = 0.0
    gamma_usd_1pct: float = 0.0
    vega_usd_1vol: float = 0.0
    theta_usd_1d: float = 0.0
    rho_usd_1pct: float = 0.0

    def __add__(self, other: DeskGreeks) -> DeskGreeks:
        return DeskGreeks(
            self.delta_usd + other.delta_usd,
            self.gamma_usd_1pct + other.gamma_usd_1pct,
            self.vega_usd_1vol + other.vega_usd_1vol,
            self.theta_usd_1d + other.theta_usd_1d,
            self.rho_usd_1pct + other.rho_usd_1pct,
        )


@dataclass(frozen=True, slots=True)
class PositionRisk:
    """One position's value and desk Greeks; `label` names it (e.g. "aave_v3:localnet:0xabc…")."""

    label: str
    value_usd: float
    greeks: DeskGreeks


@dataclass(frozen=True, slots=True)
class AccountHealth:
    """An Aave account's health now, and how far the underlying can move before the health factor crosses 1.

    `health_factor_wad` is Aave's own integer (2**256 − 1 with no debt), `health_factor` the same as a float (inf
    with no debt). Distances are in % of spot, `math.inf` when no move in that direction liquidates, 0 when the
    account is liquidatable now. `liquidation_price_usd` is the underlying's price at the nearer crossing (None: none).
    """

    chain: str
    account: str
    health_factor_wad: int
    health_factor: float
    liquidation_price_usd: float | None
    distance_down_pct: float
    distance_up_pct: float


@dataclass(frozen=True, slots=True)
class RiskReport:
    """The whole book against one underlying at one spot price: per-position and total desk Greeks, every lending
    account's health, and the smallest move of the underlying (in % of spot) that liquidates any account."""

    underlying: str
    spot_usd: float
    positions: tuple[PositionRisk, ...]
    total: DeskGreeks
    value_usd: float
    accounts: tuple[AccountHealth, ...]
    liquidation_distance_down_pct: float
    liquidation_distance_up_pct: float


# --- What one cycle reads (chain/, adapters/) -------------------------------------------------------------------

Position = AaveAccount | LpPosition | PerpPosition | OptionPosition


@dataclass(frozen=True, slots=True)
class PerpMarket:
    """A perp venue's market on `underlying` at the snapshot block, what a perp trade is priced with.

    `index_price_usd` is the venue's oracle price; a trade of q units fills at index · (1 + (skew + q/2) / skew
    scale) plus `fee_fraction` of its notional. `funding_rate_per_hour` is the fraction of notional a long pays per
    hour now (negative: longs receive), proportional to the skew. Margins are fractions of notional: growing a
    position needs equity ≥ the initial one, below the maintenance one it can be liquidated. `margin_token` is the
    symbol margin is paid in.
    """

    chain: str
    venue: str
    address: str
    underlying: str
    margin_token: str
    index_price_usd: float
    skew_underlying: float
    skew_scale_underlying: float
    fee_fraction: float
    funding_rate_per_hour: float
    initial_margin_fraction: float
    maintenance_margin_fraction: float
    max_funding_rate_per_hour: float = 0.0  # the funding rate at a skew as large as the skew scale

    def fill_price_usd(self, size_delta_underlying: float) -> float:
        """Return the price (USD) a trade of `size_delta_underlying` (signed) fills at, before the fee."""
        premium = (self.skew_underlying + size_delta_underlying / 2) / self.skew_scale_underlying
        return self.index_price_usd * (1.0 + premium)


@dataclass(frozen=True, slots=True)
class OptionSeries:
    """A listed European option series at the snapshot block, what an option trade is priced with.

    `mark_price_usd` is the venue's price per unit of the underlying, computed by the venue from `spot_usd`, the
    strike, the time to `expiry_ts`, `vol_annual` and `rate_annual`; a buyer pays it plus `fee_fraction` of it, a
    seller receives it less that. `quote_token` is the symbol premiums are paid in. Past expiry the mark is the
    intrinsic value (at the settlement price once settled).
    """

    chain: str
    venue: str
    address: str
    underlying: str
    quote_token: str
    series_id: int
    is_call: bool
    strike_usd: float
    expiry_ts: int
    vol_annual: float
    rate_annual: float
    spot_usd: float
    mark_price_usd: float
    fee_fraction: float

    @property
    def label(self) -> str:
        """Returns e.g. "WETH-1700000000-1800-P"."""
        return f"{self.underlying}-{self.expiry_ts}-{self.strike_usd:g}-{'C' if self.is_call else 'P'}"


Market = PerpMarket | OptionSeries


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
        """The lowest health factor Aave reported among the snapshot's accounts (inf without debt), or None."""
        values = [
            math.inf if p.reported_health_factor_wad >= 2**256 - 1 else p.reported_health_factor_wad / 1e18
            for p in self.positions if isinstance(p, AaveAccount) and p.reported_health_factor_wad is not None
        ]
        return min(values) if values else None

    def price_usd(self, symbol: str) -> float | None:
        """Return the first fresh price of `symbol` across chains, or None when every reading is stale or absent."""
        for chain in self.chains:
            for price in chain.prices:
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
    - "perp_deposit", "perp_withdraw": move `amount_base_units` of the margin token `asset` into or out of the
      perp market (the planner deposits margin when a perp's liquidation price comes within 25% of the
      underlying's price, funded from the idle balance or Aave collateral: `planner/margin.py`);
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


# --- What execution records (execution/) -----------------------------------------------------------------------

INTENT_STATES = ("planned", "simulated", "signed", "sent", "mined", "confirmed", "failed", "expired", "cancelled",
                 "unknown")
"""An intent's lifecycle: planned → simulated → signed → sent → mined → confirmed, or one of the ends failed
(refused, reverted in simulation or on chain), expired (never sent before its deadline), cancelled (replaced by a
no-op, or never sent because an earlier step of its plan did not succeed), unknown (its nonce was used by a
transaction the journal does not hold)."""

OPEN_INTENT_STATES = ("signed", "sent", "mined")
"""States in which a transaction may still land or be undone: the portfolio waits for them before acting again."""


@dataclass(frozen=True, slots=True)
class TxRecord:
    """One signed transaction as the journal holds it: every hash ever sent at an intent's nonce is one record.

    `kind` is "action" (the first signature), "replacement" (same call, bumped fees) or "cancel" (a zero-value
    transfer to the sender at the same nonce); `state` is signed, sent, mined or replaced; fees in wei.
    """

    intent_id: str
    chain: str
    nonce: int
    tx_hash: str
    kind: str
    state: str
    max_fee_per_gas_wei: int
    max_priority_fee_per_gas_wei: int
    gas_limit: int
    block_number: int | None = None
    status: int | None = None
