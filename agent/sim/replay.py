"""`ballast replay`: a price path on a fresh local chain with the real Aave v3 and Uniswap v3.

The path is rescaled so that it starts at the local world's WETH price ($2,000, where the demo portfolios are
seeded): every price is multiplied by 2,000 / the first bar's open, so the portfolio starts at the leverage it was
seeded with and moves by the path's returns. Each bar: chain time advances one hour (`evm_increaseTime`), the other
feeds are refreshed (so they are not stale), the market is moved to the bar's low and then its high
(`localnet.market.set_weth_price`: feed and pools), and each time a liquidator account liquidates every account it
can with real `liquidationCall`s; then the market is moved to the close and the daemon runs one cycle in live mode
(`agent.daemon.Daemon`, in process, its clock the chain's) and its plan is driven to the end. The managed portfolio
is the demo's Safe: the daemon signs as its keeper and each plan is one recipe through the keeper module. An
unmanaged twin of the demo portfolio, seeded on a plain dev account, lives through the same path.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import SecretStr
from web3 import Web3

from agent.cycle import assess
from agent.daemon import Daemon
from agent.errors import UserInputError
from agent.execution.journal import plan_id
from agent.localnet import DEMO_ACCOUNT_INDEX, Anvil, Localnet, build_localnet
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from agent.localnet.policies import render_policy
from agent.localnet.readback import aave_account
from agent.localnet.seed import DEMO_PORTFOLIOS, seed_portfolio
from agent.localnet.world import FEED_DECIMALS, MAX_UINT256, RESERVES
from agent.model import Snapshot
from agent.planner import prices_usd
from agent.planner.costs import CostModel
from agent.policy import Policy, parse_policy
from agent.settings import Settings
from agent.sim.engine import costed
from agent.sim.market import PricePath
from agent.sim.records import LiquidationRecord, RunResult
from agent.sim.report import summaries

SEED_PRICE_USD = 2_000.0
TWIN_ACCOUNT = 4  # an unused dev account: the unmanaged twin
MAX_LIQUIDATIONS_PER_PRICE = 10
PLAN_WAIT_S = 60.0


@dataclass
class Replay:
    """The replay's runs ("policy": the daemon keeps the account; "unmanaged": its twin) along the rescaled path."""

    policy: Policy
    path: PricePath
    scale: float
    runs: dict[str, RunResult]

    def figures(self) -> dict[str, dict[str, Any]]:
        return summaries(self.runs, self.policy)

    def title(self) -> str:
        first, last = self.path.window()
        return f"replay {self.policy.portfolio.name} · {first} → {last} · {len(self.path)} hourly bars"

    def notes(self) -> list[str]:
        return [f"prices: {self.path.source}, rescaled ×{self.scale:.6g} to start at ${SEED_PRICE_USD:,.0f}",
                "local chain: real Aave v3 and Uniswap v3; the daemon in live mode; a liquidator account"]

    def to_json(self) -> dict[str, Any]:
        figures = self.figures()
        first, last = self.path.window()
        return {"ok": True, "portfolio": self.policy.portfolio.name, "prices": self.path.source,
                "window": {"from": first, "to": last, "bars": len(self.path)}, "price_scale": self.scale,
                "policy": figures["policy"], "unmanaged": figures["unmanaged"]}


class _Side:
    """One replayed account: its policy on the local world and its recorded path."""

    def __init__(self, label: str, policy: Policy, n: int, debt: str, collateral: str) -> None:
        self.label = label
        self.policy = policy
        self.debt = debt
        self.collateral = collateral
        z = np.zeros(n)
        self.result = RunResult(label, None, np.zeros(n, dtype=np.int64), z.copy(), z.copy(), z.copy(), z.copy(),
                                z.copy(), z.copy(), z.copy(), z.copy())


def run_replay(policy: Policy, path: PricePath, workdir: Path | None = None) -> Replay:
    """Return the managed and unmanaged runs of the demo portfolio `policy` names along `path` on a local chain."""
    name = policy.portfolio.name
    if name not in DEMO_ACCOUNT_INDEX:
        raise UserInputError(f"replay: the policy's portfolio must be a demo portfolio "
                             f"({', '.join(DEMO_ACCOUNT_INDEX)}), not {name!r}")
    scale = SEED_PRICE_USD / float(path.open[0])
    scaled = path.scaled(scale)
    with tempfile.TemporaryDirectory() as scratch, Anvil() as node:
        directory = workdir or Path(scratch)
        localnet = build_localnet(node.url, node.chain_id)
        chain = LocalChain(Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 30})))
        demo = next(d for d in DEMO_PORTFOLIOS if d.name == name)
        twin = localnet.accounts[TWIN_ACCOUNT]
        seed_portfolio(chain, localnet.world, demo, twin.address)
        safe = localnet.demo_accounts[name]
        managed = _on_localnet(policy, name, safe, localnet, live=True)
        unmanaged = _on_localnet(policy, name, twin.address, localnet, live=False)
        debt, collateral = demo.borrow[0], demo.supply[0]
        sides = [_Side("policy", managed, len(path), debt, collateral),
                 _Side("unmanaged", unmanaged, len(path), debt, collateral)]
        sides[0].result.policy = managed
        key = localnet.keeper_key(name)  # the daemon signs as the Safe's keeper, through its module
        settings = Settings(_env_file=None, db=str(directory / "journal.sqlite"),  # type: ignore[call-arg]
                            private_key=SecretStr(key), kill_switch=directory / "KILL", metrics_addr="127.0.0.1:0")
        now = [int(chain.w3.eth.get_block("latest")["timestamp"])]
        daemon = Daemon({directory / f"{name}.yaml": managed}, settings, clock=lambda: float(now[0]))
        try:
            _replay(chain, localnet, daemon, sides, scaled, now)
        finally:
            for portfolio in daemon.portfolios.values():
                portfolio.reader.close()
            daemon.journal.close()
    return Replay(policy, path, scale, {s.label: s.result for s in sides})


def _on_localnet(policy: Policy, name: str, account: str, localnet: Localnet, live: bool) -> Policy:
    """The policy for `account` on the local world, with the bands, triggers, hedging and limits of `policy`."""
    local = parse_policy(render_policy(name, account, localnet), f"{name}.yaml")
    execution = local.execution.model_copy(update={"mode": "live" if live else "dry-run"})
    return local.model_copy(update={"bands": policy.bands, "triggers": policy.triggers, "hedging": policy.hedging,
                                    "limits": policy.limits, "execution": execution})


def _replay(chain: LocalChain, localnet: Localnet, daemon: Daemon, sides: list[_Side], path: PricePath,
            now: list[int]) -> None:
    from agent.chain.reader import PortfolioReader

    readers = {s.label: PortfolioReader(s.policy) for s in sides}
    name = sides[0].policy.portfolio.name
    portfolio = daemon.portfolios[name]
    try:
        for side in sides:
            snapshot = readers[side.label].read()
            side.result.start_value_usd = _value(snapshot)
            side.result.start_price_usd = float(path.open[0])
            side.result.start_delta_usd = assess(snapshot).total.delta_usd
        for i in range(len(path)):
            chain.w3.provider.make_request("evm_increaseTime", [3600])  # type: ignore[arg-type]
            chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            _refresh_feeds(chain, localnet)
            bar_min = {s.label: math.inf for s in sides}
            for extreme in (float(path.low[i]), float(path.high[i])):
                set_weth_price(chain, localnet, extreme)
                for side in sides:
                    hf = _liquidate(chain, localnet, side, extreme, int(path.unix[i]) + 3600)
                    bar_min[side.label] = min(bar_min[side.label], hf)
            close = float(path.close[i])
            set_weth_price(chain, localnet, close)
            now[0] = int(chain.w3.eth.get_block("latest")["timestamp"])
            cycle = daemon.cycle(name)
            if cycle is not None and cycle.plan.actions:
                portfolio.executor.wait(PLAN_WAIT_S)
                _record_actions(daemon, sides[0], cycle.plan, cycle.snapshot, close, i, int(path.unix[i]) + 3600)
            for side in sides:
                snapshot = readers[side.label].read()
                report = assess(snapshot)
                hf = min((a.health_factor for a in report.accounts), default=math.inf)
                r = side.result
                r.unix[i] = int(path.unix[i])
                r.close[i] = close
                r.health_factor[i] = hf
                r.health_factor_bar_min[i] = min(bar_min[side.label], hf)
                r.delta_usd[i] = report.total.delta_usd
                r.gamma_usd_1pct[i] = report.total.gamma_usd_1pct
                r.vega_usd_1vol[i] = report.total.vega_usd_1vol
                r.value_usd[i] = _value(snapshot)
    finally:
        for reader in readers.values():
            reader.close()


def _refresh_feeds(chain: LocalChain, localnet: Localnet) -> None:
    """Set every feed but WETH's to its own price again: a new `updatedAt`, so that no price goes stale."""
    deployer = localnet.accounts[0].address
    for reserve in RESERVES:
        if reserve.symbol == "WETH":
            continue
        feed = chain.at("LocalPriceFeed", localnet.world.feeds[reserve.symbol])
        chain.send(feed.functions.setAnswer(int(reserve.price_usd * 10**FEED_DECIMALS)), deployer)


def _liquidate(chain: LocalChain, localnet: Localnet, side: _Side, price: float, bar_close_s: int) -> float:
    """Liquidate the side's account while its health factor is below 1 (real `liquidationCall`s from the liquidator
    account, close factor and bonus as the pool applies them); return the health factor found first."""
    pool_address = localnet.world.contracts["Pool"]
    pool = chain.at("Pool", pool_address)
    account = side.policy.portfolio.account
    first = aave_account(chain, pool_address, account)
    data = first
    for _ in range(MAX_LIQUIDATIONS_PER_PRICE):
        if data.health_factor_wad >= 10**18 or data.total_debt_base == 0:
            break
        chain.send(pool.functions.liquidationCall(localnet.world.tokens[side.collateral],
                                                  localnet.world.tokens[side.debt], account, MAX_UINT256, False),
                   localnet.liquidator.address)
        after = aave_account(chain, pool_address, account)
        repaid = (data.total_debt_base - after.total_debt_base) / 1e8
        seized = (data.total_collateral_base - after.total_collateral_base) / 1e8
        side.result.liquidations.append(LiquidationRecord(bar_close_s, price, "aave_v3", repaid, seized,
                                                          seized - repaid))
        data = after
    wad = first.health_factor_wad
    return math.inf if wad == MAX_UINT256 else wad / 1e18


def _record_actions(daemon: Daemon, side: _Side, plan: Any, snapshot: Snapshot, price: float, index: int,
                    bar_close_s: int) -> None:
    """Record the plan's actions whose transactions all confirmed, with their costs from the cost model."""
    intents = daemon.journal.intents(plan.portfolio, plan=plan_id(plan))
    if not intents:
        return
    side.result.plans += 1
    done: dict[int, bool] = {}
    for intent in intents:
        # A Safe's recipe carries every action of the plan on its chain; a direct account's intents one each.
        carried = [i for i, a in enumerate(plan.actions) if a.chain == intent.chain] if intent.kind == "recipe" \
            else [intent.action_index]
        for index in carried:
            done[index] = done.get(index, True) and intent.state == "confirmed"
    costs = CostModel(snapshot, side.policy.triggers.max_hedge_age_s, prices_usd(snapshot))
    before = len(side.result.actions)
    for position, action in enumerate(plan.actions):
        if done.get(position):
            side.result.actions.append(costed(action, costs, bar_close_s, price))
    side.result.cost_usd[index] = sum(a.cost_usd for a in side.result.actions[before:])
    if not all(done.values()):
        side.result.refusals.append((bar_close_s, plan.reason))


def _value(snapshot: Snapshot) -> float:
    """The account's positions and idle balances in USD at the snapshot's prices."""
    prices = prices_usd(snapshot)
    idle = sum(b.amount_base_units / 10**b.token.decimals * prices.get(b.token.symbol, 0.0)
               for c in snapshot.chains for b in c.balances)
    return assess(snapshot).value_usd + idle
