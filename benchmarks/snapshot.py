"""Snapshot reading: one block-pinned Multicall3 batch against a JSON-RPC batch of the same `eth_call`s.

Runs a local chain, gives the delta-neutral-lp account 40 LP positions, and times both ways of reading every value
the adapters ask for at one block. The peer is what a competent engineer without Multicall3 would write: every call
in one JSON-RPC batch (`w3.batch_requests()`, one HTTP round trip, pinned to the block it read first), not a loop
of sequential calls. Prints wall time per snapshot, HTTP requests per snapshot and the ratio. No assertions: the
numbers are for the reader."""

from __future__ import annotations

import statistics
import time
from typing import Any

from web3 import HTTPProvider, Web3
from web3.types import RPCEndpoint, RPCResponse

from agent.chain.reader import PortfolioReader
from agent.localnet import Anvil, build_localnet
from agent.localnet.chain import LocalChain
from agent.localnet.policies import render_policy
from agent.localnet.world import MAX_UINT256
from agent.policy import parse_policy

ROUNDS = 20
POSITIONS = 40


class Counted(HTTPProvider):
    """web3's HTTP provider, counting its HTTP requests (a batch is one) into `counter[0]`."""

    def __init__(self, url: str, counter: list[int]) -> None:
        super().__init__(url)
        self.counter = counter

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        self.counter[0] += 1
        return super().make_request(method, params)

    def make_batch_request(self, requests: list[tuple[RPCEndpoint, Any]]) -> list[RPCResponse] | RPCResponse:
        self.counter[0] += 1
        return super().make_batch_request(requests)


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

        # The peer talks to the same node through web3's plain HTTP provider (the agent's failover provider sends
        # one request at a time); `Counted` counts its HTTP requests as the reader's hook counts the agent's.
        w3 = Web3(Counted(node.url, requests))

        def rpc_batch() -> None:
            block = w3.eth.get_block("latest")["number"]
            with w3.batch_requests() as batch:
                for call in calls:
                    batch.add(w3.eth.call({"to": Web3.to_checksum_address(call.target),
                                           "data": call.function.encode(*call.args)}, block_identifier=block))
                answers = batch.execute()
            assert len(answers) == len(calls)

        results = {}
        for name, fn in (("multicall batch", batched), ("JSON-RPC batch", rpc_batch)):
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
        print(f"  {name:16s} {seconds * 1000:8.1f} ms/snapshot  {per:6.0f} HTTP requests/snapshot")
    ratio = results["JSON-RPC batch"][0] / results["multicall batch"][0]
    print(f"  the multicall batch is {ratio:.2f}x the speed of the JSON-RPC batch on loopback (both one round trip "
          "for the calls; a JSON-RPC batch also runs into providers' batch-size limits)")


if __name__ == "__main__":
    main()
