"""Several risk factors against the real Aave v3: e-mode health factors to the wei, the joint liquidation boundary
of a two-collateral account on the chain's side of 1, and the engine's own check against `getUserAccountData`."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.readback import aave_account
from agent.localnet.world import EMODE_ETH
from agent.model import AaveAccount
from agent.policy import Policy
from agent.risk import lending
from agent.risk.scenarios import joint_liquidation_prices_1e8
from tests.chain.test_risk_onchain import aave_position, frozen_block_time, reader_for, set_price

WAD = 10**18
FEED = {"WETH": 2_000 * 10**8, "WSTETH": 2_300 * 10**8, "WBTC": 60_000 * 10**8}


def _supply(chain: LocalChain, localnet: Localnet, user: str, symbol: str, amount: int) -> None:
    pool = chain.at("Pool", localnet.world.contracts["Pool"])
    token = chain.at("MintableERC20", localnet.world.tokens[symbol])
    chain.send(token.functions.mint(user, amount), user)
    chain.send(token.functions.approve(pool.address, amount), user)
    chain.send(pool.functions.supply(token.address, amount, user, 0), user)


def _borrow_share(chain: LocalChain, localnet: Localnet, user: str, symbol: str, share: float) -> None:
    """Borrow `share` of the account's remaining borrowing power in `symbol`."""
    pool = chain.at("Pool", localnet.world.contracts["Pool"])
    available_1e8 = pool.functions.getUserAccountData(user).call()[2]
    amount = int(available_1e8 * share * 10**18 // FEED[symbol]) if symbol != "USDC" else int(
        available_1e8 * share // 100)
    chain.send(pool.functions.borrow(localnet.world.tokens[symbol], amount, 2, 0, user), user)


@pytest.mark.parametrize("seed", range(3))
def test_emode_health_factor_equals_get_user_account_data_for_random_accounts_and_prices(
    localnet: Localnet, chain: LocalChain, demo_policy: Callable[[str], Policy], seed: int
) -> None:
    # Given: an account in the ETH e-mode with WSTETH (and sometimes WETH) supplied and WETH borrowed near its
    # e-mode limit, far beyond what the reserves' own thresholds would allow
    rng = random.Random(seed)
    user = localnet.accounts[5 + seed].address
    pool = chain.at("Pool", localnet.world.contracts["Pool"])
    _supply(chain, localnet, user, "WSTETH", round(rng.uniform(10, 300) * WAD))
    if rng.random() < 0.5:
        _supply(chain, localnet, user, "WETH", round(rng.uniform(1, 50) * WAD))
    chain.send(pool.functions.setUserEMode(EMODE_ETH.category_id), user)
    _borrow_share(chain, localnet, user, "WETH", rng.uniform(0.85, 0.99))
    reader = reader_for(demo_policy("leveraged-long"), user)
    for _ in range(4):
        # When: the two feeds move apart at random
        set_price(chain, localnet, "WETH", round(FEED["WETH"] * rng.uniform(0.6, 1.4)))
        set_price(chain, localnet, "WSTETH", round(FEED["WSTETH"] * rng.uniform(0.6, 1.4)))
        snapshot = reader.read()
        (account,) = (p for p in snapshot.positions if isinstance(p, AaveAccount))
        onchain = aave_account(chain, pool.address, user)

        # Then: the engine's e-mode health factor is the pool's, and the cycle's own check finds no problem
        assert account.emode is not None and account.emode.liquidation_threshold_bps == 9500
        assert lending.health_factor_wad(account) == onchain.health_factor_wad
        assert lending.account_data(account).total_collateral_1e8 == onchain.total_collateral_base
        assert not [p for p in snapshot.problems if p.source == "aave_v3:health_factor"]


def test_a_misread_account_is_a_data_problem(localnet: Localnet, chain: LocalChain,
                                             demo_policy: Callable[[str], Policy]) -> None:
    # Given: an e-mode account whose reading is altered the way a missed e-mode would alter it
    from agent.adapters.aave_v3 import health_factor_mismatch

    user = localnet.accounts[8].address
    pool = chain.at("Pool", localnet.world.contracts["Pool"])
    _supply(chain, localnet, user, "WSTETH", 100 * WAD)
    chain.send(pool.functions.setUserEMode(EMODE_ETH.category_id), user)
    _borrow_share(chain, localnet, user, "WETH", 0.9)
    account = aave_position(reader_for(demo_policy("leveraged-long"), user))
    without_emode = AaveAccount(account.chain, account.account, account.reserves, None,
                                account.reported_health_factor_wad)

    # Then: the read account passes, the misread one is a "mismatch" problem
    assert health_factor_mismatch(account) == ()
    (problem,) = health_factor_mismatch(without_emode)
    assert problem.kind == "mismatch" and problem.source == "aave_v3:health_factor"


@pytest.mark.parametrize("shocks", [{"WETH": -0.40, "WBTC": -0.30}, {"WETH": -0.05, "WBTC": -0.60},
                                    {"WETH": -0.50, "WBTC": 0.10}])
def test_joint_liquidation_boundary_of_two_collaterals_is_the_chains(
    localnet: Localnet, chain: LocalChain, demo_policy: Callable[[str], Policy], shocks: dict[str, float]
) -> None:
    # Given: WETH and WBTC collateral against USDC debt
    user = localnet.accounts[9].address
    pool = chain.at("Pool", localnet.world.contracts["Pool"])
    _supply(chain, localnet, user, "WETH", 20 * WAD)
    _supply(chain, localnet, user, "WBTC", 1 * 10**8)
    _borrow_share(chain, localnet, user, "USDC", 0.95)
    with frozen_block_time(chain):  # no interest accrues between the reading and the feed updates
        account = aave_position(reader_for(demo_policy("leveraged-long"), user))

        # When: the engine finds where the scenario's ray meets liquidation
        edge = joint_liquidation_prices_1e8(account, shocks)
        assert edge is not None and set(edge) == set(shocks)

        # Then: both feeds at the boundary leave the account healthy on chain, one unit further liquidatable
        for symbol, price in edge.items():
            set_price(chain, localnet, symbol, price)
        assert aave_account(chain, pool.address, user).health_factor_wad >= WAD
        for symbol, price in edge.items():
            set_price(chain, localnet, symbol, price + (1 if shocks[symbol] > 0 else -1))
        assert aave_account(chain, pool.address, user).health_factor_wad < WAD
