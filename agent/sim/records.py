"""What a simulated run records: each action with its predicted and realised cost, each liquidation, and the
portfolio's path bar by bar."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from agent.policy import Policy


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One action the keeper carried out: when (bar close, unix s), at which price, what, and its costs in USD.

    Realised costs are the market's: pool fee and price impact against the oracle price (`slippage_usd`) of the
    pool's fill, perp and option venue fees and premium concession, gas at the bar's gas price, a flash loan's
    premium. `predicted_usd` is what the planner's cost model expected the action to cost (fees, impact and gas).
    `reverted`: the transaction failed on chain (a swap's output fell below its minimum); it cost its gas only.
    """

    unix: int
    price_usd: float
    kind: str
    asset: str
    notional_usd: float
    fee_usd: float
    slippage_usd: float
    gas_usd: float
    reason: str
    predicted_usd: float = 0.0
    premium_usd: float = 0.0
    reverted: bool = False

    @property
    def cost_usd(self) -> float:
        """Return the realised cost: fee, slippage, gas and flash-loan premium, in USD."""
        return self.fee_usd + self.slippage_usd + self.gas_usd + self.premium_usd


@dataclass(frozen=True, slots=True)
class LiquidationRecord:
    """One liquidation: when, at which price (the bar's low or high), and what it took: debt repaid, collateral
    seized and the bonus the owner lost to the liquidator, in USD; `venue` is "aave_v3", "perp" or "options"."""

    unix: int
    price_usd: float
    venue: str
    debt_repaid_usd: float
    collateral_seized_usd: float
    loss_usd: float


@dataclass
class RunResult:
    """A portfolio's path through the window under one keeper (`policy` None: a baseline or nobody). Arrays hold
    one value per bar, at its close after the keeper acted; `health_factor_bar_min` is the lowest health factor
    within the bar (at its low or high, before any liquidation)."""

    label: str
    policy: Policy | None
    unix: NDArray[np.int64]
    close: NDArray[np.float64]
    health_factor: NDArray[np.float64]
    health_factor_bar_min: NDArray[np.float64]
    delta_usd: NDArray[np.float64]
    gamma_usd_1pct: NDArray[np.float64]
    vega_usd_1vol: NDArray[np.float64]
    value_usd: NDArray[np.float64]
    cost_usd: NDArray[np.float64]
    actions: list[ActionRecord] = field(default_factory=list)
    liquidations: list[LiquidationRecord] = field(default_factory=list)
    refusals: list[tuple[int, str]] = field(default_factory=list)
    plans: int = 0
    start_value_usd: float = 0.0
    start_price_usd: float = 0.0
    start_delta_usd: float = 0.0
    theta_usd: float = 0.0  # the options' time decay over the run (what holding them cost), USD
    premium_paid_usd: float = 0.0  # net option premium paid (bought less sold), USD


def empty_run(label: str, policy: Policy | None, unix: NDArray[np.int64], close: NDArray[np.float64]) -> RunResult:
    """Return a run with its per-bar arrays allocated for the bars of `unix`."""
    n = len(unix)
    return RunResult(label, policy, unix.copy(), close.copy(), np.empty(n), np.empty(n), np.empty(n), np.empty(n),
                     np.empty(n), np.empty(n), np.zeros(n))
