"""A portfolio snapshot is one block-pinned batch per chain whose values equal the contracts' own getters."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator

import pytest
from structlog.testing import capture_logs

from agent.chain.reader import PortfolioReader
from agent.localnet import Anvil, Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.readback import aave_account, lp_ranges
from agent.localnet.world import MAX_UINT256
from agent.model import AaveAccount, LpPosition
from agent.policy import Policy
from agent.telemetry import REGISTRY


def counting_reader(policy: Policy) -> tuple[PortfolioReader, collections.Counter[tuple[int, str]]]:
    requests: collections.Counter[tuple[int, str]] = collections.Counter()
    return PortfolioReader(policy, on_request=lambda i, m, o: requests.update([(i, m)])), requests


def mint_lp_positions(chain: LocalChain, localnet: Localnet, owner: str, count: int) -> None:
    manager = chain.at("NonfungiblePositionManager", localnet.world.contracts["NonfungiblePositionManager"])
    weth, usdc = (chain.at("MintableERC20", localnet.world.tokens[s]) for s in ("WETH", "USDC"))
    token0, token1 = sorted((weth, usdc), key=lambda t: int(t.address, 16))
    for t in (weth, usdc):
        chain.send(t.functions.mint(owner, 10**30), owner)
        chain.send(t.functions.approve(manager.address, MAX_UINT256), owner)
    tick = chain.at("UniswapV3Pool", localnet.world.pools[500]).functions.slot0().call()[1] // 10 * 10
    for i in range(count):
        width = 100 + 10 * i
        chain.send(manager.functions.mint((token0.address, token1.address, 500, tick - width, tick + width,
                                           10**17, 200 * 10**6, 0, 0, owner, 2**64)), owner)


def test_snapshot_costs_two_requests_per_chain_for_one_or_forty_positions(
    localnet: Localnet, chain: LocalChain, demo_policy: Callable[[str], Policy]
) -> None:
    policy = demo_policy("delta-neutral-lp")
    reader, requests = counting_reader(policy)
    one = reader.read()
    requests.clear()
    reader.read()
    assert sum(requests.values()) == 2 and set(requests) == {(0, "eth_getBlockByNumber"), (0, "eth_call")}

    mint_lp_positions(chain, localnet, policy.portfolio.account, 39)
    forty_reader, forty_requests = counting_reader(policy)
    forty = forty_reader.read()
    forty_requests.clear()
    forty_reader.read()

    assert sum(forty_requests.values()) == 2
    count = lambda snap: sum(isinstance(p, LpPosition) for p in snap.positions)  # noqa: E731
    assert (count(one), count(forty)) == (1, 40)


def test_snapshot_values_equal_the_contracts_getters(
    localnet: Localnet, chain: LocalChain, demo_policy: Callable[[str], Policy]
) -> None:
    owner = localnet.demo_accounts["delta-neutral-lp"]
    snapshot = PortfolioReader(demo_policy("delta-neutral-lp")).read()
    (chain_snapshot,) = snapshot.chains
    assert chain_snapshot.block_number == chain.w3.eth.block_number

    (aave,) = [p for p in snapshot.positions if isinstance(p, AaveAccount)]
    expected = aave_account(chain, localnet.world.contracts["Pool"], owner)
    assert aave.reported_health_factor_wad == expected.health_factor_wad
    collateral = {r.token.symbol: r.collateral_base_units for r in aave.reserves}
    debt = {r.token.symbol: r.variable_debt_base_units for r in aave.reserves}
    assert collateral["USDC"] == 200_000 * 10**6
    pool = chain.at("Pool", localnet.world.contracts["Pool"])
    debt_token = pool.functions.getReserveData(localnet.world.tokens["WETH"]).call()[10]
    assert debt["WETH"] == chain.at("MintableERC20", debt_token).functions.balanceOf(owner).call()
    usdc = next(r for r in aave.reserves if r.token.symbol == "USDC")
    assert (usdc.ltv_bps, usdc.liquidation_threshold_bps, usdc.liquidation_bonus_bps) == (7500, 7800, 10450)
    assert usdc.usage_as_collateral

    (lp,) = [p for p in snapshot.positions if isinstance(p, LpPosition)]
    (expected_lp,) = lp_ranges(chain, localnet.world.contracts["NonfungiblePositionManager"], owner)
    assert (lp.token_id, lp.tick_lower, lp.tick_upper, lp.liquidity) == (
        expected_lp.token_id, expected_lp.tick_lower, expected_lp.tick_upper, expected_lp.liquidity)
    slot0 = chain.at("UniswapV3Pool", localnet.world.pools[500]).functions.slot0().call()
    assert (lp.sqrt_price_x96, lp.tick) == (slot0[0], slot0[1])

    for balance in chain_snapshot.balances:
        token = chain.at("MintableERC20", balance.token.address)
        assert balance.amount_base_units == token.functions.balanceOf(owner).call()
    for price in chain_snapshot.prices:
        feed = chain.at("LocalPriceFeed", localnet.world.feeds[price.symbol])
        _round, answer, _started, updated_at, _answered = feed.functions.latestRoundData().call()
        assert price.price_usd == answer / 1e8 and price.updated_at == updated_at and not price.stale
    assert chain_snapshot.quotes and not chain_snapshot.problems


def test_lp_uncollected_fees_equal_what_collect_would_pay(
    localnet: Localnet, chain: LocalChain, demo_policy: Callable[[str], Policy]
) -> None:
    owner = localnet.demo_accounts["delta-neutral-lp"]
    trader = localnet.accounts[6].address
    router = chain.at("SwapRouter", localnet.world.contracts["SwapRouter"])
    weth, usdc = (chain.at("MintableERC20", localnet.world.tokens[s]) for s in ("WETH", "USDC"))
    for t in (weth, usdc):
        chain.send(t.functions.mint(trader, 10**30), trader)
        chain.send(t.functions.approve(router.address, MAX_UINT256), trader)
    deadline = chain.w3.eth.get_block("latest")["timestamp"] + 600
    for token_in, token_out, amount in ((usdc, weth, 300_000 * 10**6), (weth, usdc, 100 * 10**18)):
        chain.send(router.functions.exactInputSingle(
            (token_in.address, token_out.address, 500, trader, deadline, amount, 0, 0)), trader)

    (lp,) = [p for p in PortfolioReader(demo_policy("delta-neutral-lp")).read().positions if isinstance(p, LpPosition)]
    manager = chain.at("NonfungiblePositionManager", localnet.world.contracts["NonfungiblePositionManager"])
    owed0, owed1 = manager.functions.collect((lp.token_id, owner, 2**128 - 1, 2**128 - 1)).call({"from": owner})
    assert lp.tokens_owed0 > 0 and lp.tokens_owed1 > 0
    assert (lp.tokens_owed0, lp.tokens_owed1) == (owed0, owed1)


def test_feed_older_than_max_age_is_reported_stale(
    localnet: Localnet, chain: LocalChain, demo_policy: Callable[[str], Policy]
) -> None:
    feed = chain.at("LocalPriceFeed", localnet.world.feeds["WETH"])
    now = chain.w3.eth.get_block("latest")["timestamp"]
    chain.send(feed.functions.setAnswerAt(1_900 * 10**8, now - 3_601), localnet.accounts[0].address)

    snapshot = PortfolioReader(demo_policy("leveraged-long")).read()

    weth = next(p for p in snapshot.chains[0].prices if p.symbol == "WETH")
    assert weth.stale and weth.age_s >= 3_601
    assert snapshot.price_usd("WETH") is None and snapshot.price_usd("USDC") == 1.0
    (problem,) = snapshot.problems
    assert problem.kind == "stale" and problem.source == "chainlink:WETH" and "max_age_s 3600" in problem.detail


def test_reading_fails_over_when_the_first_endpoint_is_killed_mid_run(
    localnet: Localnet, demo_policy: Callable[[str], Policy]
) -> None:
    # endpoint 0: a second anvil forked from the local world; endpoint 1: the local world itself
    with Anvil(chain_id=localnet.world.chain_id, fork_url=localnet.rpc_url) as first:
        base = demo_policy("leveraged-long")
        chain = base.portfolio.chains[0].model_copy(update={"rpc": (first.url, localnet.rpc_url)})
        policy = base.model_copy(update={"portfolio": base.portfolio.model_copy(update={"chains": (chain,)})})
        reader, requests = counting_reader(policy)
        before = reader.read()
        assert {endpoint for endpoint, _method in requests} == {0}
        first.stop()
        requests.clear()
        with capture_logs() as logs:
            after = [reader.read() for _ in range(3)]

    assert all(s.chains[0].positions == before.chains[0].positions for s in after)
    assert [entry["event"] for entry in logs].count("rpc failover") == 1
    assert requests[(1, "eth_call")] == 3 and requests[(1, "eth_getBlockByNumber")] == 3
    metric = REGISTRY.get_sample_value
    assert metric("ballast_rpc_requests_total", {"chain": "localnet", "endpoint": "0", "method": "eth_getBlockByNumber",
                                                 "outcome": "unavailable"}) >= 1
    assert metric("ballast_rpc_requests_total", {"chain": "localnet", "endpoint": "1", "method": "eth_call",
                                                 "outcome": "ok"}) >= 3


@pytest.fixture(scope="module")
def second_chain() -> Iterator[Localnet]:
    from agent.localnet import build_localnet

    with Anvil(chain_id=31338) as node:
        yield build_localnet(node.url, node.chain_id)


def test_portfolio_on_two_chains_reads_into_one_snapshot(
    localnet: Localnet, second_chain: Localnet, demo_policy: Callable[[str], Policy]
) -> None:
    base = demo_policy("leveraged-long")
    local = base.portfolio.chains[0]
    contracts = second_chain.world.contracts
    other = local.model_copy(update={
        "name": "second", "chain_id": 31338, "rpc": (second_chain.rpc_url,),
        "protocols": local.protocols.model_copy(update={
            "aave_v3": local.protocols.aave_v3.model_copy(
                update={"pool_addresses_provider": contracts["PoolAddressesProvider"]}),
            "uniswap_v3": None,
            "chainlink": local.protocols.chainlink.model_copy(update={"feeds": second_chain.world.feeds}),
        }),
    })
    policy = base.model_copy(update={"portfolio": base.portfolio.model_copy(update={"chains": (local, other)})})

    snapshot = PortfolioReader(policy).read()

    assert [(c.chain, c.chain_id) for c in snapshot.chains] == [("localnet", 31337), ("second", 31338)]
    accounts = [p for p in snapshot.positions if isinstance(p, AaveAccount)]
    assert [a.chain for a in accounts] == ["localnet", "second"]
    assert all(a.reported_health_factor_wad and a.reported_health_factor_wad < MAX_UINT256 for a in accounts)


def test_sequencer_down_or_in_grace_period_marks_every_price_untrusted(
    localnet: Localnet, chain: LocalChain, demo_policy: Callable[[str], Policy]
) -> None:
    deployer = localnet.accounts[0].address
    sequencer = chain.deploy("LocalPriceFeed", 0, "L2 sequencer uptime", 1, sender=deployer)  # 1: down
    base = demo_policy("leveraged-long")
    local = base.portfolio.chains[0]
    feeds = local.protocols.chainlink.model_copy(update={"sequencer_uptime_feed": sequencer.address,
                                                         "grace_period_s": 3600})
    chain_cfg = local.model_copy(update={"protocols": local.protocols.model_copy(update={"chainlink": feeds})})
    policy = base.model_copy(update={"portfolio": base.portfolio.model_copy(update={"chains": (chain_cfg,)})})
    reader = PortfolioReader(policy)

    down = reader.read()
    assert all(p.stale for p in down.chains[0].prices)
    assert any(p.detail == "L2 sequencer is down" for p in down.problems)

    now = chain.w3.eth.get_block("latest")["timestamp"]
    chain.send(sequencer.functions.setAnswerAt(0, now - 600), deployer)  # up again 10 minutes ago
    in_grace = reader.read()
    assert all(p.stale for p in in_grace.chains[0].prices)
    assert any("grace period" in p.detail for p in in_grace.problems)

    chain.send(sequencer.functions.setAnswerAt(0, now - 7200), deployer)
    assert not reader.read().problems


def test_a_call_that_does_not_decode_is_reported_against_its_source(localnet: Localnet, chain: LocalChain) -> None:
    from agent.chain.abi import Function, load_abi
    from agent.chain.multicall import Call, read_batch

    weth = localnet.world.tokens["WETH"]
    erc20 = load_abi("erc20", "ERC20")
    symbol_as_six_words = Function("symbol", (), ("uint256",) * 6)  # `symbol` returns 96 bytes, not 192
    _block, (good, bad) = read_batch(chain.w3, [
        Call("test:decimals", weth, erc20.fn("decimals")), Call("test:symbol-as-words", weth, symbol_as_six_words),
    ])
    assert good.ok and good.value == 18
    assert not bad.ok and bad.error is not None
    assert bad.error.startswith("test:symbol-as-words: cannot decode symbol")
