"""EIP-1559 fees: what to offer for a new transaction, how much to bump a stuck one, and when the policy's gas cap
gives way (near liquidation an expensive repay beats a liquidation).

A stuck action gets `MAX_BUMPS` replacements under the gas cap; past its deadline a same-nonce cancellation takes
over with a budget of its own: `MAX_CANCEL_BUMPS` bumps up to `CANCEL_CAP_MULTIPLE` times the gas cap (a 21,000-gas
transfer costs little, and a stuck nonce blocks every later transaction). An intent still open when that budget is
spent (`stuck_after_s`) is stuck: the daemon records it, fails `/healthz` and raises `ballast_intents_stuck`.

All amounts are wei per gas. Pure functions except `suggest_fees`, which reads the latest base fee and the node's
priority-fee estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from web3 import Web3

from agent.policy import Limits

log = structlog.get_logger(__name__)

GWEI = 10**9
FALLBACK_PRIORITY_FEE_WEI = GWEI  # when the node has no `eth_maxPriorityFeePerGas`
BASE_FEE_HEADROOM = 2  # max fee = 2 × base fee + tip survives six full blocks of +12.5% base fee
MAX_BUMPS = 5
MAX_CANCEL_BUMPS = 10  # 1.1^10: a cancellation may end up at 2.6 times its first offer
CANCEL_CAP_MULTIPLE = 10
CANCEL_GAS = 21_000


class FeeCapExceeded(Exception):
    """The network's base fee alone is above the policy's gas cap: nothing is sent until it falls."""


@dataclass(frozen=True, slots=True)
class Fees:
    """An EIP-1559 fee offer: `max_fee_per_gas_wei` ≥ `max_priority_fee_per_gas_wei`."""

    max_fee_per_gas_wei: int
    max_priority_fee_per_gas_wei: int


def gas_cap_wei(limits: Limits, health_factor: float | None) -> int | None:
    """Returns the policy's cap on the max fee per gas in wei, or None (no cap) when the health factor is within
    `limits.gas_cap_lift_hf` of 1."""
    if health_factor is not None and health_factor < 1.0 + limits.gas_cap_lift_hf:
        return None
    return int(limits.max_gas_price_gwei * GWEI)


def fees_for(base_fee_wei: int, priority_fee_wei: int, cap_wei: int | None) -> Fees:
    """Returns the offer for a base fee and tip: 2 × base + tip, both fields limited to `cap_wei` (None: no cap).

    Raises FeeCapExceeded when the base fee alone is above the cap (such a transaction could not be mined).
    """
    max_fee = BASE_FEE_HEADROOM * base_fee_wei + priority_fee_wei
    if cap_wei is None:
        return Fees(max_fee, priority_fee_wei)
    if base_fee_wei > cap_wei:
        raise FeeCapExceeded(f"base fee {base_fee_wei / GWEI:.3f} gwei is above the gas cap {cap_wei / GWEI:g} gwei")
    max_fee = min(max_fee, cap_wei)
    return Fees(max_fee, min(priority_fee_wei, max_fee))


def priority_fee_wei(w3: Web3) -> int:
    """Returns the node's priority-fee estimate (`eth_maxPriorityFeePerGas`), or 1 gwei when it has none."""
    try:
        return int(w3.eth.max_priority_fee)
    except Exception as exc:  # some nodes lack the method; the fallback is a common tip
        log.info("no priority fee estimate, using the fallback", error=type(exc).__name__)
        return FALLBACK_PRIORITY_FEE_WEI


def next_base_fee_wei(w3: Web3) -> int:
    """Returns the base fee of the next block (`eth_feeHistory` computes it), else the latest block's."""
    try:
        return int(w3.eth.fee_history(1, "latest")["baseFeePerGas"][-1])
    except Exception as exc:  # a node without eth_feeHistory: the latest block is one step behind, still close
        log.info("no fee history, using the latest base fee", error=type(exc).__name__)
        return int(w3.eth.get_block("latest").get("baseFeePerGas", 0))


def suggest_fees(w3: Web3, limits: Limits, health_factor: float | None = None) -> Fees:
    """Returns the fees for a new transaction from the next block's base fee and the node's tip estimate, capped
    by the policy unless the health factor is near 1."""
    return fees_for(next_base_fee_wei(w3), priority_fee_wei(w3), gas_cap_wei(limits, health_factor))


def bumped(previous: Fees, current: Fees | None = None) -> Fees:
    """Returns replacement fees: both fields at least 10% + 1 wei above `previous` (nodes refuse a replacement that
    does not raise both), and at least what `current` network conditions ask for."""
    fee = previous.max_fee_per_gas_wei + previous.max_fee_per_gas_wei // 10 + 1
    tip = previous.max_priority_fee_per_gas_wei + previous.max_priority_fee_per_gas_wei // 10 + 1
    if current is not None:
        fee, tip = max(fee, current.max_fee_per_gas_wei), max(tip, current.max_priority_fee_per_gas_wei)
    return Fees(max(fee, tip), tip)


def replacement_fees(previous: Fees, current: Fees | None, bumps_so_far: int, cap_wei: int | None) -> Fees | None:
    """Returns the fees of the next replacement, or None when no more bumps are allowed: after `MAX_BUMPS`, or when
    the bump would go above the gas cap (`cap_wei`, None: no cap)."""
    if bumps_so_far >= MAX_BUMPS:
        return None
    fees = bumped(previous, current)
    if cap_wei is not None and fees.max_fee_per_gas_wei > cap_wei:
        return None
    return fees


def cancellation_fees(previous: Fees, current: Fees | None) -> Fees:
    """Returns the fees of a same-nonce cancellation: a bump over the last offer, whatever the gas cap (a
    21,000-gas transfer costs little, and a stuck nonce blocks every later transaction)."""
    return bumped(previous, current)


def cancel_cap_wei(limits: Limits) -> int:
    """Returns the ceiling of a cancellation's max fee per gas in wei: `CANCEL_CAP_MULTIPLE` × the policy's gas cap."""
    return int(CANCEL_CAP_MULTIPLE * limits.max_gas_price_gwei * GWEI)


def cancellation_bump(previous: Fees, current: Fees | None, cancel_bumps_so_far: int, limits: Limits) -> Fees | None:
    """Returns the fees of the next bump of a stuck cancellation, counted apart from the action's own bumps, or
    None when its budget is spent: after `MAX_CANCEL_BUMPS`, or above `cancel_cap_wei`. None means stuck."""
    if cancel_bumps_so_far >= MAX_CANCEL_BUMPS:
        return None
    fees = bumped(previous, current)
    return fees if fees.max_fee_per_gas_wei <= cancel_cap_wei(limits) else None


def stuck_after_s(deadline_s: float, replace_after_s: float) -> float:
    """Returns how long after signing an unresolved intent is stuck (seconds): its deadline, then the cancellation
    and every bump of its budget, each given `replace_after_s` to mine, and one more period."""
    return deadline_s + (MAX_CANCEL_BUMPS + 2) * replace_after_s
