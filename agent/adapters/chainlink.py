"""Chainlink AggregatorV3 feeds: prices with their age, stale past `max_age_s` or for an incomplete round, and an
optional L2 sequencer-uptime feed that marks every price untrusted while the sequencer is down or just back up."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from web3 import Web3

from agent.adapters import failed_calls
from agent.chain.abi import load_abi
from agent.chain.multicall import Block, Call, CallResult, read_batch
from agent.model import DataProblem, PriceReading, Reading

AGGREGATOR = load_abi("chainlink", "AggregatorV3")


class ChainlinkFeeds:
    """The policy's feeds (symbol → aggregator address) on one chain."""

    name = "chainlink"

    def __init__(
        self,
        chain: str,
        feeds: Mapping[str, str],
        max_age_s: int,
        sequencer_uptime_feed: str | None = None,
        grace_period_s: int = 3600,
    ) -> None:
        self.chain = chain
        self.feeds = {symbol: Web3.to_checksum_address(a) for symbol, a in feeds.items()}
        self.max_age_s = max_age_s
        self.sequencer = Web3.to_checksum_address(sequencer_uptime_feed) if sequencer_uptime_feed else None
        self.grace_period_s = grace_period_s
        self.decimals: dict[str, int] = {}

    def discover(self, w3: Web3) -> None:
        """Read every feed's decimals once."""
        calls = [Call(f"chainlink:{s}:decimals", a, AGGREGATOR.fn("decimals"), allow_failure=False)
                 for s, a in self.feeds.items()]
        _block, results = read_batch(w3, calls)
        self.decimals = {symbol: int(r.value) for symbol, r in zip(self.feeds, results, strict=True)}

    def calls(self) -> list[Call]:
        calls = [Call(f"chainlink:{s}", a, AGGREGATOR.fn("latestRoundData")) for s, a in self.feeds.items()]
        if self.sequencer:
            calls.append(Call("chainlink:sequencer", self.sequencer, AGGREGATOR.fn("latestRoundData")))
        return calls

    def decode(self, results: Sequence[CallResult], block: Block) -> Reading:
        problems = list(failed_calls(self.chain, results))
        untrusted = self._sequencer_problem(results[-1], block) if self.sequencer else None
        if untrusted:
            problems.append(untrusted)
        prices = []
        for symbol, result in zip(self.feeds, results, strict=False):
            if not result.ok:
                continue
            round_id, answer, _started_at, updated_at, answered_in_round = result.value
            age_s = block.timestamp - updated_at
            reasons = []
            if age_s > self.max_age_s:
                reasons.append(f"updated {age_s}s ago, more than max_age_s {self.max_age_s}")
            if answered_in_round < round_id:
                reasons.append(f"round {round_id} incomplete (answered in {answered_in_round})")
            if answer <= 0:
                reasons.append(f"answer {answer} is not a price")
            if untrusted:
                reasons.append("sequencer down or in its grace period")
            for reason in reasons:
                problems.append(DataProblem(self.chain, f"chainlink:{symbol}", "stale", reason))
            prices.append(PriceReading(
                self.chain, symbol, answer / 10 ** self.decimals[symbol], f"chainlink:{symbol}", updated_at, age_s,
                stale=bool(reasons),
            ))
        return Reading(prices=tuple(prices), problems=tuple(problems))

    def _sequencer_problem(self, result: CallResult, block: Block) -> DataProblem | None:
        if not result.ok:
            return DataProblem(self.chain, "chainlink:sequencer", "stale", "sequencer uptime feed unreadable")
        _round, answer, started_at, _updated, _answered = result.value
        if answer != 0:  # 0: up, 1: down
            return DataProblem(self.chain, "chainlink:sequencer", "stale", "L2 sequencer is down")
        if block.timestamp - started_at < self.grace_period_s:
            return DataProblem(self.chain, "chainlink:sequencer", "stale",
                               f"L2 sequencer back up {block.timestamp - started_at}s ago, within the grace period")
        return None
