"""Aave v3: the account's per-reserve balances, each reserve's risk parameters and rates, prices from AaveOracle,
e-mode, and `getUserAccountData` as the pool itself reports it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from web3 import Web3

from agent.adapters import failed_calls
from agent.adapters.erc20 import ERC20, TokenRegistry
from agent.chain.abi import load_abi
from agent.chain.multicall import Block, Call, CallResult, read_batch
from agent.model import AaveAccount, AaveReserve, EModeCategory, Reading, Token

PROVIDER = load_abi("aave_v3", "PoolAddressesProvider")
POOL = load_abi("aave_v3", "Pool")
ORACLE = load_abi("aave_v3", "AaveOracle")
RAY = 10**27
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


@dataclass(frozen=True)
class ReserveConfig:
    """The fields of Aave's packed ReserveConfigurationMap that risk needs."""

    ltv_bps: int
    liquidation_threshold_bps: int
    liquidation_bonus_bps: int
    decimals: int
    active: bool
    borrowing_enabled: bool
    emode_category: int

    @classmethod
    def unpack(cls, data: int) -> ReserveConfig:
        # Bit layout of DataTypes.ReserveConfigurationMap (Aave v3.0).
        return cls(
            ltv_bps=data & 0xFFFF,
            liquidation_threshold_bps=(data >> 16) & 0xFFFF,
            liquidation_bonus_bps=(data >> 32) & 0xFFFF,
            decimals=(data >> 48) & 0xFF,
            active=bool((data >> 56) & 1),
            borrowing_enabled=bool((data >> 58) & 1),
            emode_category=(data >> 168) & 0xFF,
        )


@dataclass(frozen=True)
class _Reserve:
    id: int
    token: Token
    a_token: str
    variable_debt_token: str
    stable_debt_token: str


class AaveV3:
    """One account on one Aave v3 market, found through its PoolAddressesProvider."""

    name = "aave_v3"

    def __init__(self, chain: str, account: str, pool_addresses_provider: str, tokens: TokenRegistry) -> None:
        self.chain = chain
        self.account = Web3.to_checksum_address(account)
        self.provider = Web3.to_checksum_address(pool_addresses_provider)
        self.token_registry = tokens
        self.pool = ""
        self.oracle = ""
        self.reserves: tuple[_Reserve, ...] = ()
        self.emode_price_sources: dict[int, str] = {}
        self._categories: tuple[int, ...] = ()

    @property
    def tokens(self) -> tuple[Token, ...]:
        return tuple(r.token for r in self.reserves)

    def discover(self, w3: Web3) -> None:
        """Find the pool, its oracle, every reserve with its aToken and debt tokens, and the e-mode categories."""
        _b, (pool, oracle) = read_batch(w3, [
            Call("aave_v3:getPool", self.provider, PROVIDER.fn("getPool"), allow_failure=False),
            Call("aave_v3:getPriceOracle", self.provider, PROVIDER.fn("getPriceOracle"), allow_failure=False),
        ])
        self.pool, self.oracle = Web3.to_checksum_address(pool.value), Web3.to_checksum_address(oracle.value)
        _b, (assets,) = read_batch(w3, [Call("aave_v3:getReservesList", self.pool, POOL.fn("getReservesList"))])
        _b, data = read_batch(w3, [
            Call(f"aave_v3:getReserveData:{a}", self.pool, POOL.fn("getReserveData"), (a,), allow_failure=False)
            for a in assets.value
        ])
        tokens = self.token_registry.resolve(w3, assets.value)
        reserves = []
        categories = set()
        for asset, result in zip(assets.value, data, strict=True):
            fields = result.value
            a_token, stable_debt, variable_debt = (Web3.to_checksum_address(a) for a in fields[8:11])
            reserves.append(_Reserve(fields[7], tokens[Web3.to_checksum_address(asset)], a_token, variable_debt,
                                     stable_debt))
            categories.add(ReserveConfig.unpack(fields[0][0]).emode_category)
        self.reserves = tuple(reserves)
        categories.discard(0)
        if categories:
            _b, emodes = read_batch(w3, [
                Call(f"aave_v3:eMode:{c}", self.pool, POOL.fn("getEModeCategoryData"), (c,)) for c in sorted(categories)
            ])
            sources = {c: r.value[3] for c, r in zip(sorted(categories), emodes, strict=True) if r.ok}
            self.emode_price_sources = {c: s for c, s in sources.items() if s != ZERO_ADDRESS}
        self._categories = tuple(sorted(categories))

    def calls(self) -> list[Call]:
        account = (self.account,)
        calls = [
            Call("aave_v3:getUserAccountData", self.pool, POOL.fn("getUserAccountData"), account),
            Call("aave_v3:getUserEMode", self.pool, POOL.fn("getUserEMode"), account),
            Call("aave_v3:getUserConfiguration", self.pool, POOL.fn("getUserConfiguration"), account),
            Call("aave_v3:flashLoanPremium", self.pool, POOL.fn("FLASHLOAN_PREMIUM_TOTAL")),
        ]
        for r in self.reserves:
            s = r.token.symbol
            calls += [
                Call(f"aave_v3:{s}:reserveData", self.pool, POOL.fn("getReserveData"), (r.token.address,)),
                Call(f"aave_v3:{s}:price", self.oracle, ORACLE.fn("getAssetPrice"), (r.token.address,)),
                Call(f"aave_v3:{s}:aToken", r.a_token, ERC20.fn("balanceOf"), account),
                Call(f"aave_v3:{s}:variableDebt", r.variable_debt_token, ERC20.fn("balanceOf"), account),
                Call(f"aave_v3:{s}:stableDebt", r.stable_debt_token, ERC20.fn("balanceOf"), account),
            ]
        for c in self._categories:
            calls.append(Call(f"aave_v3:eMode:{c}", self.pool, POOL.fn("getEModeCategoryData"), (c,)))
            if c in self.emode_price_sources:
                calls.append(Call(f"aave_v3:eMode:{c}:price", self.oracle, ORACLE.fn("getAssetPrice"),
                                  (self.emode_price_sources[c],)))
        return calls

    def decode(self, results: Sequence[CallResult], block: Block) -> Reading:
        problems = failed_calls(self.chain, results)
        if problems:  # a partial Aave account would misstate the health factor: report it, do not guess
            return Reading(problems=problems)
        values = iter(r.value for r in results)
        reported_health_factor_wad = next(values)[5]  # getUserAccountData's last field
        user_emode = int(next(values))
        (user_config,) = next(values)
        flash_loan_premium_bps = int(next(values))
        reserves = []
        for r in self.reserves:
            reserve_data, price, collateral, variable_debt, stable_debt = (next(values) for _ in range(5))
            config = ReserveConfig.unpack(reserve_data[0][0])
            if collateral == variable_debt == stable_debt == 0:
                continue
            reserves.append(AaveReserve(
                token=r.token,
                collateral_base_units=int(collateral),
                variable_debt_base_units=int(variable_debt),
                price_1e8=int(price),
                ltv_bps=config.ltv_bps,
                liquidation_threshold_bps=config.liquidation_threshold_bps,
                liquidation_bonus_bps=config.liquidation_bonus_bps,
                usage_as_collateral=bool((user_config >> (2 * r.id + 1)) & 1),
                emode_category=config.emode_category,
                stable_debt_base_units=int(stable_debt),
                variable_borrow_apr=reserve_data[4] / RAY,
                supply_apr=reserve_data[2] / RAY,
            ))
        emode = None
        for c in self._categories:
            ltv, threshold, bonus, _source, _label = next(values)
            price = int(next(values)) if c in self.emode_price_sources else 0
            if c == user_emode:
                emode = EModeCategory(c, ltv, threshold, bonus, price)
        account = AaveAccount(self.chain, self.account, tuple(reserves), emode,
                              reported_health_factor_wad=reported_health_factor_wad,
                              flash_loan_premium_bps=flash_loan_premium_bps)
        return Reading(positions=(account,))
