"""Read a demo portfolio straight from the contracts' own getters. It is what `make demo` prints, and the oracle
that tests hold the agent's adapters and risk engine against."""

from __future__ import annotations

from dataclasses import dataclass

from web3 import Web3

from agent.localnet.chain import LocalChain

BASE_CURRENCY_UNIT = 10**8  # AaveOracle's base currency is USD with 8 decimals


@dataclass(frozen=True)
class AaveAccountData:
    """`Pool.getUserAccountData` as the pool returns it (base currency 1e8 USD, HF in wad)."""

    total_collateral_base: int
    total_debt_base: int
    available_borrows_base: int
    current_liquidation_threshold_bps: int
    ltv_bps: int
    health_factor_wad: int


@dataclass(frozen=True)
class LpRange:
    """One NonfungiblePositionManager position as the manager stores it."""

    token_id: int
    fee: int
    tick_lower: int
    tick_upper: int
    liquidity: int


def aave_account(chain: LocalChain, pool_address: str, account: str) -> AaveAccountData:
    """Return `getUserAccountData(account)` from the Aave pool."""
    pool = chain.at("Pool", pool_address)
    return AaveAccountData(*pool.functions.getUserAccountData(Web3.to_checksum_address(account)).call())


def lp_ranges(chain: LocalChain, manager_address: str, owner: str) -> list[LpRange]:
    """Return every Uniswap v3 position `owner` holds in the NonfungiblePositionManager."""
    manager = chain.at("NonfungiblePositionManager", manager_address)
    owner = Web3.to_checksum_address(owner)
    ranges = []
    for index in range(manager.functions.balanceOf(owner).call()):
        token_id = manager.functions.tokenOfOwnerByIndex(owner, index).call()
        position = manager.functions.positions(token_id).call()
        # positions(): nonce, operator, token0, token1, fee, tickLower, tickUpper, liquidity, ...
        ranges.append(LpRange(token_id, position[4], position[5], position[6], position[7]))
    return ranges
