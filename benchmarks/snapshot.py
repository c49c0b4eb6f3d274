"""Snapshot reading: one block-pinned Multicall3 batch against naive per-call reading of the same values.

Runs a local chain, gives the delta-neutral-lp account 40 LP positions, and times both ways of reading every value
the adapters ask for. Prints wall time per snapshot, RPC requests per snapshot and the ratio. No assertions: the
numbers are for the reader."""

from __future__ import annotations

import statistics
import time

from web3 import Web3

from agent.chain.reader import PortfolioReader
from agent.localnet import Anvil, build_localnet
from agent.localnet.chain import LocalChain
from agent.localnet.policies import render_policy
from agent.localnet.world import MAX_UINT256
from agent.policy import parse_policy

ROUNDS = 20
POSITIONS = 40


def main() -> None:
    with Anvil() as node:
        localnet = build_localnet(node.url, node.chain_id)
        # The positions are minted by the Safe's owner into the Safe (the Safe itself sends nothing here).
        portfolio = localnet.demo_portfolios["delta-neutral-lp"]
        owner, safe = portfolio.owner, portfolio.address
        chain = LocalChain(Web3(Web3.HTTPProvider(node.url)))
        manager = chain.at("NonfungiblePositionManager", localnet.world.contracts["NonfungiblePositionManager"])
        token0, token1 = sorted(localnet.world.tokens[s] for s in ("WETH", "USDC"))
        for address in (token0, token1):
            token = chain.at("MintableERC20", address)
            chain.send(token.functions.mint(owner, 10**30), owner)
            chain.send(token.functions.approve(manager.address, MAX_UINT256), owner)
        tick = chain.at("UniswapV3Pool", localnet.world.pools[500]).functions.slot0().call()[1] // 10 * 10
        for i in range(POSITIONS - 1):
            chain.send(manager.functions.mint((token0, token1, 500, tick - 100 - 10 * i, tick + 100 + 10 * i,
                                               10**17, 200 * 10**6, 0, 0, safe, 2**64)), owner)

        requests = [0]
        policy = parse_policy(render_policy("delta-neutral-lp", safe, localnet))
        reader = PortfolioReader(policy, on_request=lambda *_: requests.__setitem__(0, requests[0] + 1))
        reader.read()
        (chain_reader,) = reader.chains
        calls = [c for adapter in chain_reader.adapters for c in adapter.calls()]

        def batched() -> None:
            reader.read()

        def naive() -> None:
            block = chain_reader.w3.eth.get_block("latest")["number"]
            for call in calls:
                request = {"to": Web3.to_checksum_address(call.target), "data": call.function.encode(*call.args)}
                chain_reader.w3.eth.call(request, block_identifier=block)

        results = {}
        for name, fn in (("multicall batch", batched), ("naive per call", naive)):
            times = []
            requests[0] = 0
            for _ in range(ROUNDS):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            results[name] = (statistics.median(times), requests[0] / ROUNDS)

    print(f"snapshot of {POSITIONS} LP positions + Aave + feeds + balances + quotes ({len(calls)} reads), "
          f"median of {ROUNDS}:")
    for name, (seconds, per) in results.items():
        print(f"  {name:16s} {seconds * 1000:8.1f} ms/snapshot  {per:6.0f} RPC requests/snapshot")
    ratio = results["naive per call"][0] / results["multicall batch"][0]
    print(f"  batch is {ratio:.1f}x faster than naive reading on loopback (more over a network: one round trip)")


if __name__ == "__main__":
    main()
