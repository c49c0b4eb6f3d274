"""Revert reasons in words: `Error(string)` messages, panics, Aave's numeric codes and the keeper module's and
Safe's short codes, named."""

from __future__ import annotations

from eth_abi import decode as abi_decode

_ERROR_STRING = bytes.fromhex("08c379a0")
_PANIC = bytes.fromhex("4e487b71")

# Aave v3.0 `Errors.sol`: the pool reverts with these numbers as strings.
AAVE_ERRORS = {
    1: "CALLER_NOT_POOL_ADMIN", 9: "NOT_CONTRACT", 23: "CALLER_MUST_BE_POOL", 24: "INVALID_MINT_AMOUNT",
    25: "INVALID_BURN_AMOUNT", 26: "INVALID_AMOUNT", 27: "RESERVE_INACTIVE", 28: "RESERVE_FROZEN",
    29: "RESERVE_PAUSED", 30: "BORROWING_NOT_ENABLED", 31: "STABLE_BORROWING_NOT_ENABLED",
    32: "NOT_ENOUGH_AVAILABLE_USER_BALANCE", 33: "INVALID_INTEREST_RATE_MODE_SELECTED",
    34: "COLLATERAL_BALANCE_IS_ZERO", 35: "HEALTH_FACTOR_LOWER_THAN_LIQUIDATION_THRESHOLD",
    36: "COLLATERAL_CANNOT_COVER_NEW_BORROW", 37: "COLLATERAL_SAME_AS_BORROWING_CURRENCY",
    38: "AMOUNT_BIGGER_THAN_MAX_LOAN_SIZE_STABLE", 39: "NO_DEBT_OF_SELECTED_TYPE",
    40: "NO_EXPLICIT_AMOUNT_TO_REPAY_ON_BEHALF", 41: "NO_OUTSTANDING_STABLE_DEBT", 42: "NO_OUTSTANDING_VARIABLE_DEBT",
    43: "UNDERLYING_BALANCE_ZERO", 45: "HEALTH_FACTOR_NOT_BELOW_THRESHOLD", 46: "COLLATERAL_CANNOT_BE_LIQUIDATED",
    47: "SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER", 48: "SAME_BLOCK_BORROW_REPAY", 50: "BORROW_CAP_EXCEEDED",
    51: "SUPPLY_CAP_EXCEEDED", 53: "DEBT_CEILING_EXCEEDED", 57: "LTV_VALIDATION_FAILED",
    58: "INCONSISTENT_EMODE_CATEGORY", 59: "PRICE_ORACLE_SENTINEL_CHECK_FAILED",
    60: "ASSET_NOT_BORROWABLE_IN_ISOLATION", 62: "USER_IN_ISOLATION_MODE_OR_LTV_ZERO", 89: "SILOED_BORROWING_VIOLATION",
    91: "FLASHLOAN_DISABLED",
}
# The Ballast keeper module (`contracts/BallastKeeperModule.sol`).
MODULE_ERRORS = {
    "BK001": "caller is not a keeper", "BK002": "caller is not the Safe", "BK010": "call not allowed",
    "BK011": "an argument must be the Safe", "BK012": "approval spender not allowed",
    "BK013": "call to the Safe or the module", "BK020": "a call reverted", "BK030": "health factor below the floor",
    "BK031": "a deleverage lowered the health factor", "BK040": "flash-loan callback not from the lender in flight",
    "BK041": "flash lender not allowed",
}


def revert_reason(error: Exception) -> str:
    """Returns a revert's reason as text: an `Error(string)` message (Aave's numeric codes and the keeper
    module's codes with their names), a panic code, or the node's message."""
    data = getattr(error, "data", None)
    reason = ""
    if isinstance(data, str) and data.startswith("0x"):
        reason = reason_of(bytes.fromhex(data[2:]))
    if not reason:
        message = getattr(error, "message", None) or str(error)
        reason = str(message).removeprefix("execution reverted: ").removeprefix("execution reverted")
    return named(reason.strip() or "reverted without a reason")


def reason_of(raw: bytes) -> str:
    """Returns the text of revert data: an `Error(string)` message or a panic code ("" for anything else)."""
    if raw[:4] == _ERROR_STRING:
        return str(abi_decode(["string"], raw[4:])[0])
    if raw[:4] == _PANIC:
        return f"panic 0x{int(abi_decode(['uint256'], raw[4:])[0]):02x}"
    return ""


def named(reason: str) -> str:
    """Returns a reason with its code's name appended: Aave's numbers, the module's BK codes."""
    if reason.isdigit() and int(reason) in AAVE_ERRORS:
        return f"{reason} ({AAVE_ERRORS[int(reason)]})"
    if reason in MODULE_ERRORS:
        return f"{reason} ({MODULE_ERRORS[reason]})"
    return reason
