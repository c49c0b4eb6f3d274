"""The demo portfolios live in Safe 1.4.1 accounts: 1-of-1 Safes of an owner key that is not the keeper's, with the
keeper module enabled and configured as the spec says, and the positions inside the Safe."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eth_utils import function_signature_to_4byte_selector

from agent.adapters.safe import read_module_config
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.keeper import HEALTH_FACTOR_FLOOR_WAD
from agent.localnet.policies import render_policy
from agent.localnet.readback import aave_account, lp_ranges
from agent.localnet.seed import option_series_id
from agent.model import TxRequest
from agent.policy import DirectExecutor, Policy, SafeModuleExecutor, parse_policy

WAD, USDC = 10**18, 10**6

# What the spec says the local Safes' modules allow: (contract, signature) → (safeArgs, spenderArgs), bit i meaning
# ABI word i of the arguments (the Safe; an allowed spender).
SPEC_CALLS = {
    ("Pool", "supply(address,uint256,address,uint16)"): (1 << 2, 0),
    ("Pool", "repay(address,uint256,uint256,address)"): (1 << 3, 0),
    ("Pool", "withdraw(address,uint256,address)"): (1 << 2, 0),
    ("Pool", "borrow(address,uint256,uint256,uint16,address)"): (1 << 4, 0),
    ("SwapRouter", "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"): (1 << 3, 0),
    ("NonfungiblePositionManager", "decreaseLiquidity((uint256,uint128,uint256,uint256,uint256))"): (0, 0),
    ("NonfungiblePositionManager", "collect((uint256,address,uint128,uint128))"): (1 << 1, 0),
    ("PerpMarket", "depositMargin(uint256)"): (0, 0),
    ("PerpMarket", "withdrawMargin(uint256)"): (0, 0),
    ("PerpMarket", "modifyPosition(int256,uint256)"): (0, 0),
    ("OptionsMarket", "buy(uint256,uint256,uint256)"): (0, 0),
    ("OptionsMarket", "sell(uint256,uint256,uint256)"): (0, 0),
    **{(token, "approve(address,uint256)"): (0, 1 << 0) for token in ("WETH", "USDC", "WBTC")},
}
SPENDERS = ("Pool", "SwapRouter", "PerpMarket", "OptionsMarket")


def selector(signature: str) -> bytes:
    return function_signature_to_4byte_selector(signature)


@pytest.mark.parametrize("name", ["leveraged-long", "delta-neutral-lp"])
def test_demo_account_is_a_safe_of_its_owner_with_the_keeper_module_enabled(
    localnet: Localnet, chain: LocalChain, name: str
) -> None:
    portfolio = localnet.demo_portfolios[name]
    safe = chain.at("Safe", portfolio.address)
    module = chain.at("BallastKeeperModule", portfolio.module)

    assert localnet.demo_accounts[name] == portfolio.address
    assert safe.functions.getOwners().call() == [portfolio.owner] and safe.functions.getThreshold().call() == 1
    assert safe.functions.isModuleEnabled(portfolio.module).call()
    assert module.functions.safe().call() == portfolio.address
    assert portfolio.keeper != portfolio.owner
    assert module.functions.keepers(portfolio.keeper).call() and not module.functions.keepers(portfolio.owner).call()
    # the keeper's key is at hand for the daemon, and it is not the owner's
    assert localnet.keeper_key(name) == localnet.key_of(portfolio.keeper) != localnet.key_of(portfolio.owner)


def test_module_allows_the_spec_calls_spenders_lender_and_floor(localnet: Localnet, chain: LocalChain) -> None:
    # given one probe call per (target, selector) of the spec, one that is not allowed (transfer), and an approval
    # naming each spender
    portfolio = localnet.demo_portfolios["leveraged-long"]
    contracts = localnet.world.contracts
    keys = {(contracts[name], selector(signature)): bits for (name, signature), bits in SPEC_CALLS.items()}
    transfer = (contracts["USDC"], selector("transfer(address,uint256)"))
    probes = [TxRequest("localnet", target, sel + bytes(32 * 8)) for target, sel in [*keys, transfer]]
    approvals = [TxRequest("localnet", contracts["USDC"], selector("approve(address,uint256)")
                           + bytes(12) + bytes.fromhex(contracts[s][2:]) + bytes(32)) for s in SPENDERS]

    config = read_module_config(chain.w3, portfolio.address, portfolio.module, portfolio.keeper,
                                probes + approvals, lenders=[contracts["Pool"], contracts["SwapRouter"]])

    # then the module allows exactly the spec's rules, and not transfer
    assert config.module_enabled and config.keeper_enabled
    assert {key: (r.safe_args, r.spender_args) for key, r in config.rules.items() if r.allowed} == keys
    assert not config.rules[transfer].allowed
    # and its configuration events name no call besides them
    module = chain.at("BallastKeeperModule", portfolio.module)
    configured = {(e["args"]["target"], e["args"]["selector"]): (e["args"]["safeArgs"], e["args"]["spenderArgs"])
                  for e in module.events.CallSet().get_logs(from_block=0)}
    assert configured == keys and not module.events.CallRemoved().get_logs(from_block=0)
    # (the probes' approvals of address 0 are read too: not a spender)
    assert config.spenders == {**{contracts[s]: True for s in SPENDERS}, "0x" + "00" * 20: False}
    assert config.flash_lenders == {contracts["Pool"]: "aave_v3", contracts["SwapRouter"]: None}
    assert (config.aave_pool, config.health_factor_floor_wad) == (contracts["Pool"], HEALTH_FACTOR_FLOOR_WAD)


def test_leveraged_long_is_a_looped_long_without_idle_funds(localnet: Localnet, chain: LocalChain) -> None:
    safe = localnet.demo_accounts["leveraged-long"]
    account = aave_account(chain, localnet.world.contracts["Pool"], safe)
    tokens = {s: chain.at("MintableERC20", a) for s, a in localnet.world.tokens.items()}

    assert 1.65 < account.health_factor_wad / WAD < 1.75
    assert account.total_debt_base == pytest.approx(97_000 * 10**8, rel=1e-6)
    # 52 WETH of its own and ~48 bought with the borrowed USDC, all supplied
    assert account.total_collateral_base / 10**8 / 2_000 == pytest.approx(99.7, abs=0.5)
    assert {s: t.functions.balanceOf(safe).call() for s, t in tokens.items()} == {"WETH": 0, "USDC": 0, "WBTC": 0}
    # the protective put was paid from the loop's first borrow, and no approval was left standing
    options = chain.at("OptionsMarket", localnet.world.contracts["OptionsMarket"])
    put = option_series_id(chain, localnet.world, False, 1_800, 30)
    assert options.functions.balanceOf(put, safe).call() == 20 * WAD
    spenders = [localnet.world.contracts[n] for n in ("Pool", "SwapRouter", "OptionsMarket", "PerpMarket")]
    assert {t.functions.allowance(safe, s).call() for t in tokens.values() for s in spenders} == {0}


def test_delta_neutral_lp_holds_its_positions_in_its_safe(localnet: Localnet, chain: LocalChain) -> None:
    portfolio = localnet.demo_portfolios["delta-neutral-lp"]
    pool, manager = localnet.world.contracts["Pool"], localnet.world.contracts["NonfungiblePositionManager"]

    assert 1.75 < aave_account(chain, pool, portfolio.address).health_factor_wad / WAD < 1.9
    (lp,) = lp_ranges(chain, manager, portfolio.address)
    assert lp.token_id == localnet.lp_token_ids["delta-neutral-lp"] and lp.liquidity > 0
    perp = chain.at("PerpMarket", localnet.world.contracts["PerpMarket"]).functions.position(portfolio.address).call()
    assert perp[0] == -5 * WAD
    # the owner's own wallet holds none of it
    assert aave_account(chain, pool, portfolio.owner).total_collateral_base == 0
    assert lp_ranges(chain, manager, portfolio.owner) == []


def test_aave_charges_5_bps_for_a_flash_loan(localnet: Localnet, chain: LocalChain) -> None:
    pool = chain.at("Pool", localnet.world.contracts["Pool"])
    assert pool.functions.FLASHLOAN_PREMIUM_TOTAL().call() == 5


def test_rendered_policy_names_the_module_for_a_safe_and_direct_for_a_wallet(
    localnet: Localnet, demo_policy: Callable[[str], Policy]
) -> None:
    module = localnet.demo_portfolios["leveraged-long"].module
    assert demo_policy("leveraged-long").portfolio.executor == SafeModuleExecutor(kind="safe_module", module=module)
    wallet = localnet.accounts[5].address
    direct = parse_policy(render_policy("leveraged-long", wallet, localnet), "wallet.yaml")
    assert direct.portfolio.executor == DirectExecutor() and direct.portfolio.account == wallet

