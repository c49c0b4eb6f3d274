"""The Ballast keeper module on a local Safe: deployed for the Safe, enabled and configured by its owner with the
calls a keeper's recipes may make (docs: /contracts/BallastKeeperModule.sol and the README's "Accounts")."""

from __future__ import annotations

from web3 import Web3

from agent.localnet.chain import LocalChain
from agent.localnet.safe import SafeAccount, exec_batch_as_owner
from agent.localnet.world import RESERVES, World

AAVE_FLASH_LENDER = 1  # BallastKeeperModule.LENDER_AAVE_V3
HEALTH_FACTOR_FLOOR_WAD = 105 * 10**16  # 1.05: no recipe may leave the Safe closer to liquidation than this


def bit(*words: int) -> int:
    """Return the argument-rule mask with the bits of these ABI word indexes set."""
    return sum(1 << word for word in set(words))


# What a keeper's recipe may call, by the world's contract name: (signature, safeArgs, spenderArgs). A bit of
# safeArgs says that ABI word of the arguments must be the Safe; a bit of spenderArgs, an allowed spender.
KEEPER_CALLS: dict[str, tuple[tuple[str, int, int], ...]] = {
    "Pool": (
        ("supply(address,uint256,address,uint16)", bit(2), 0),
        ("repay(address,uint256,uint256,address)", bit(3), 0),
        ("withdraw(address,uint256,address)", bit(2), 0),
        ("borrow(address,uint256,uint256,uint16,address)", bit(4), 0),
    ),
    # exactInputSingle's one argument is a static tuple, so its fields are the words: recipient is word 3.
    "SwapRouter": (("exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))", bit(3), 0),),
    # decreaseLiquidity needs no rule: the manager only lets the position's owner (the Safe) call it.
    "NonfungiblePositionManager": (
        ("decreaseLiquidity((uint256,uint128,uint256,uint256,uint256))", 0, 0),
        ("collect((uint256,address,uint128,uint128))", bit(1), 0),
    ),
    # The venues' account is the caller, the Safe.
    "PerpMarket": (("depositMargin(uint256)", 0, 0), ("withdrawMargin(uint256)", 0, 0),
                   ("modifyPosition(int256,uint256)", 0, 0)),
    "OptionsMarket": (("buy(uint256,uint256,uint256)", 0, 0), ("sell(uint256,uint256,uint256)", 0, 0)),
    **{reserve.symbol: (("approve(address,uint256)", 0, bit(0)),) for reserve in RESERVES},
}
SPENDERS = ("Pool", "SwapRouter", "PerpMarket", "OptionsMarket")


def selector(signature: str) -> bytes:
    """Return a function's 4-byte selector."""
    return bytes(Web3.keccak(text=signature)[:4])


def install_keeper_module(chain: LocalChain, world: World, safe: str, owner: str, keeper: str) -> SafeAccount:
    """Deploy a keeper module for `safe`, and have its owner enable and configure it in one Safe transaction: the
    keeper, the calls of `KEEPER_CALLS`, the spenders, Aave as flash lender and the health-factor floor."""
    module = chain.deploy("BallastKeeperModule", safe, sender=owner)
    safe_contract = chain.at("Safe", safe)
    calls: list[tuple[str, bytes | str]] = [
        (safe, safe_contract.encode_abi("enableModule", [module.address])),
        (module.address, module.encode_abi("setKeeper", [keeper, True])),
    ]
    for name, rules in KEEPER_CALLS.items():
        for signature, safe_args, spender_args in rules:
            calls.append((module.address, module.encode_abi(
                "setCall", [world.contracts[name], selector(signature), safe_args, spender_args])))
    calls += [(module.address, module.encode_abi("setSpender", [world.contracts[name], True])) for name in SPENDERS]
    calls += [
        (module.address, module.encode_abi("setFlashLender", [world.contracts["Pool"], AAVE_FLASH_LENDER])),
        (module.address, module.encode_abi("setHealthCheck", [world.contracts["Pool"], HEALTH_FACTOR_FLOOR_WAD])),
    ]
    exec_batch_as_owner(chain, world, safe, owner, calls)
    return SafeAccount(safe, owner, keeper, module.address)
