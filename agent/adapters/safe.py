"""Safe accounts and the Ballast keeper module (`contracts/BallastKeeperModule.sol`): the recipe entry points a keeper
calls, the module's configuration read in one batch, the module's own rules applied to a call before signing, and
its reason codes.

A recipe is an ordered list of `TxRequest`s (target and data, no value) that the Safe makes, all or nothing. The
module refuses a call with a short reason code: BK010 (target, selector) not allowed, BK011 an argument that must
be the Safe is not, BK012 an approval names a spender that is not allowed, BK013 the target is the Safe or the
module; after the recipe BK030 (health factor under the floor) and BK031 (a deleverage lowered it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from web3 import Web3

from agent.chain.abi import load_abi
from agent.chain.multicall import Block, Call, read_batch
from agent.model import TxRequest

MODULE = load_abi("ballast", "BallastKeeperModule")
SAFE = load_abi("safe", "Safe")
LENDER_KINDS = {1: "aave_v3", 2: "morpho_blue"}
_APPROVE = load_abi("erc20", "ERC20").fn("approve").selector
_REASON = re.compile(r"\b(BK0\d\d|GS\d\d\d)\b")


@dataclass(frozen=True)
class CallRule:
    """What the module allows for one (target, selector): bit i of `safe_args` binds ABI word i of the arguments to
    the Safe, bit i of `spender_args` to an allowed spender."""

    allowed: bool
    safe_args: int
    spender_args: int


@dataclass(frozen=True)
class ModuleConfig:
    """The parts of a keeper module's configuration that a recipe's calls touch, read at one block."""

    module: str
    safe: str
    module_enabled: bool  # the Safe lists the module, and the module is the Safe's
    keeper: str
    keeper_enabled: bool
    aave_pool: str
    health_factor_floor_wad: int
    rules: dict[tuple[str, bytes], CallRule]  # (checksummed target, 4-byte selector) -> rule
    spenders: dict[str, bool]  # checksummed address -> may be approved
    flash_lenders: dict[str, str | None]  # checksummed address -> "aave_v3", "morpho_blue" or None


def _call_tuple(call: TxRequest) -> tuple[str, bytes]:
    if call.value_wei:
        raise ValueError(f"a recipe call carries no value: {call.description or call.to}")
    return Web3.to_checksum_address(call.to), call.data


def _chain_of(calls: Sequence[TxRequest]) -> str:
    chains = {call.chain for call in calls}
    if len(chains) != 1:
        raise ValueError(f"a recipe runs on one chain, not {sorted(chains) or 'none'}")
    return chains.pop()


def encode_execute(module: str, calls: Sequence[TxRequest], deleverage: bool) -> TxRequest:
    """Return the keeper's transaction that makes the Safe run `calls` in order through `module`; `deleverage`
    asks the module to refuse a recipe that lowers the health factor."""
    return TxRequest(
        _chain_of(calls), Web3.to_checksum_address(module),
        MODULE.fn("execute").encode([_call_tuple(c) for c in calls], deleverage),
        description=f"recipe of {len(calls)} calls" + (" (deleverage)" if deleverage else ""),
    )


def encode_execute_with_flash_loan(module: str, lender: str, asset: str, amount_base_units: int,
                                   calls: Sequence[TxRequest], deleverage: bool) -> TxRequest:
    """Return the keeper's transaction that flash-borrows `amount_base_units` of `asset` from `lender` into the
    Safe, runs `calls` and repays the loan and its premium from the Safe, all in one transaction."""
    data = MODULE.fn("executeWithFlashLoan").encode(
        Web3.to_checksum_address(lender), Web3.to_checksum_address(asset), amount_base_units,
        [_call_tuple(c) for c in calls], deleverage,
    )
    return TxRequest(_chain_of(calls), Web3.to_checksum_address(module), data,
                     description=f"flash-loan recipe of {len(calls)} calls" + (" (deleverage)" if deleverage else ""))


def read_module_config(w3: Web3, safe: str, module: str, keeper: str, calls: Iterable[TxRequest] = (),
                       lenders: Iterable[str] = (), block: Block | None = None) -> ModuleConfig:
    """Return, read in one batch, the module's configuration for `keeper`: whether `safe` enabled it, the rules of
    every (target, selector) of `calls`, the spender of every approval among them, and the kind of every flash
    lender in `lenders`."""
    safe, module = Web3.to_checksum_address(safe), Web3.to_checksum_address(module)
    keys = sorted({(Web3.to_checksum_address(c.to), bytes(c.data[:4])) for c in calls})
    spenders = sorted({Web3.to_checksum_address(_word(c.data, 0)[12:]) for c in calls
                       if bytes(c.data[:4]) == _APPROVE and len(c.data) >= 36})
    lender_list = sorted({Web3.to_checksum_address(a) for a in lenders})

    def read(fn: str, *args: object) -> Call:
        return Call(f"keeper_module:{fn}", module, MODULE.fn(fn), args, allow_failure=False)

    batch = [Call("safe:isModuleEnabled", safe, SAFE.fn("isModuleEnabled"), (module,), allow_failure=False),
             read("safe"), read("keepers", keeper), read("aavePool"), read("healthFactorFloor"),
             *(read("callRule", *key) for key in keys), *(read("spenders", s) for s in spenders),
             *(read("flashLenders", a) for a in lender_list)]
    _, results = read_batch(w3, batch, block)
    values = iter(r.value for r in results)
    enabled, module_safe, keeper_enabled, pool, floor = (next(values) for _ in range(5))
    return ModuleConfig(
        module, safe, bool(enabled) and Web3.to_checksum_address(module_safe) == safe,
        Web3.to_checksum_address(keeper), bool(keeper_enabled), Web3.to_checksum_address(pool), int(floor),
        rules={key: CallRule(*next(values)) for key in keys},
        spenders={s: bool(next(values)) for s in spenders},
        flash_lenders={a: LENDER_KINDS.get(int(next(values))) for a in lender_list},
    )


def _word(data: bytes, index: int) -> bytes:
    """ABI word `index` of a call's arguments (after the selector), or 32 bytes of 0xff past the end, which no
    rule accepts (as in the module)."""
    start = 4 + 32 * index
    return bytes(data[start:start + 32]) if len(data) >= start + 32 else b"\xff" * 32


def refusal(config: ModuleConfig, call: TxRequest) -> str | None:
    """Return the reason code the module would refuse `call` with (BK010–BK013), or None if it passes its rules."""
    target = Web3.to_checksum_address(call.to)
    if target in (config.safe, config.module):
        return "BK013"
    rule = config.rules.get((target, bytes(call.data[:4])))
    if len(call.data) < 4 or rule is None or not rule.allowed:
        return "BK010"
    for index in range(max(rule.safe_args | rule.spender_args, 1).bit_length()):
        word = _word(call.data, index)
        if rule.safe_args >> index & 1 and word != bytes(12) + bytes.fromhex(config.safe[2:]):
            return "BK011"
        if rule.spender_args >> index & 1 and (
            word[:12] != bytes(12) or not config.spenders.get(Web3.to_checksum_address(word[12:]), False)
        ):
            return "BK012"
    return None


def revert_code(error: BaseException | str) -> str | None:
    """Return the module's (BK0xx) or the Safe's (GS0xx) reason code in a revert error or message, if any."""
    match = _REASON.search(str(error))
    return match.group(1) if match else None
