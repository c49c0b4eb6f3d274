"""The fleet's one batch per chain per block returns, for every portfolio, the snapshot its own reader returns."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable

from web3 import Web3

from agent.chain.fleet import Fleet
from agent.chain.multicall import BatchLimits
from agent.chain.reader import PortfolioReader
from agent.cycle import figures_moved
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.fleet import FleetAccount, borrow_for_health_factor, fleet_addresses, fleet_policies, seed_fleet
from agent.localnet.market import set_weth_price
from agent.model import AaveAccount, ChainSnapshot, LpPosition, Snapshot
from agent.policy import Policy


def without_quote_gas(chain: ChainSnapshot) -> ChainSnapshot:
    """QuoterV2 measures its own gas use, which depends on which storage the calls before it in the same batch
    warmed (EIP-2929): the one figure that depends on the batch's company, not on the chain's state."""
    return dataclasses.replace(chain, quotes=tuple(dataclasses.replace(q, gas_estimate=0) for q in chain.quotes))


def fleet_and_singles(policies: list[Policy], limits: BatchLimits) -> tuple[
        dict[str, ChainSnapshot | Exception], dict[str, Snapshot], collections.Counter[str], int]:
    requests: collections.Counter[str] = collections.Counter()
    fleet = Fleet(limits, on_request=lambda _i, method, _o: requests.update([method]))
    for policy in policies:
        PortfolioReader(policy, fleet=fleet)
    (chain,) = fleet.chains.values()
    chain.read(chain.latest_block())  # discovery happens on the first block
    requests.clear()
    block = chain.latest_block()
    read = chain.read(block)
    singles = {p.portfolio.name: PortfolioReader(p).read() for p in policies}
    return read, singles, requests, block.number


def test_fleet_read_of_the_demo_portfolios_equals_their_own_snapshots_in_one_call(
    localnet: Localnet, demo_policy: Callable[[str], Policy]
) -> None:
    policies = [demo_policy(name) for name in localnet.demo_accounts]
    read, singles, requests, block = fleet_and_singles(policies, BatchLimits())

    assert requests == {"eth_getBlockByNumber": 1, "eth_call": 1}
    for name, single in singles.items():
        fleet_chain = read[name]
        assert isinstance(fleet_chain, ChainSnapshot) and fleet_chain.block_number == block
        assert single.chains[0].block_number == block  # nothing was mined in between: the same state
        assert without_quote_gas(fleet_chain) == without_quote_gas(single.chains[0])
        assert fleet_chain.positions and fleet_chain.prices and fleet_chain.markets


def test_fleet_read_of_many_seeded_accounts_split_in_batches_equals_their_own_snapshots(localnet: Localnet) -> None:
    accounts = [FleetAccount(address, 5 + i % 7, borrow_for_health_factor(5 + i % 7, 1.6 + i % 9 / 10),
                             idle_usdc=100 * (i % 3), lp=i % 5 == 0)
                for i, address in enumerate(fleet_addresses(60))]
    seed_fleet(localnet, accounts)
    policies = fleet_policies(localnet, accounts)
    read, singles, requests, block = fleet_and_singles(policies, BatchLimits(max_calls=200))

    assert requests["eth_call"] > 1  # the limit split the batch
    for account, policy in zip(accounts, policies, strict=True):
        fleet_chain, single = read[policy.portfolio.name], singles[policy.portfolio.name]
        assert isinstance(fleet_chain, ChainSnapshot) and single.chains[0].block_number == block
        assert without_quote_gas(fleet_chain) == without_quote_gas(single.chains[0])
        (aave,) = [p for p in fleet_chain.positions if isinstance(p, AaveAccount)]
        assert aave.account == Web3.to_checksum_address(account.address)
        assert sum(isinstance(p, LpPosition) for p in fleet_chain.positions) == int(account.lp)


def test_an_aave_account_s_figures_move_with_the_oracle_not_with_a_new_empty_block(
    localnet: Localnet, chain: LocalChain
) -> None:
    # (Options' marks do move every second, by their time value: a book holding them is assessed every block.)
    accounts = [FleetAccount(fleet_addresses(1)[0], 10, borrow_for_health_factor(10, 2.0), lp=True)]
    seed_fleet(localnet, accounts)
    reader = PortfolioReader(fleet_policies(localnet, accounts)[0])
    first = reader.read()
    # One second later, as the next block on a live chain: interest and option time value barely move.
    chain.w3.provider.make_request("evm_mine", [first.chains[0].timestamp + 1])  # type: ignore[arg-type]
    quiet = reader.read()
    set_weth_price(chain, localnet, 1_950)
    moved = reader.read()

    assert quiet.chains[0].block_number > first.chains[0].block_number
    assert not figures_moved(first, quiet)
    assert figures_moved(quiet, moved)
