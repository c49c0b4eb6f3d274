"""The demo's scenario: the daemon, live, keeps both demo portfolios alive through a scripted crash and rally.

The crash falls 5% a step, then gaps down in one block to where the looped long's health factor is 1.015 (as ETH
did on 2020-03-12), and falls on; the rally climbs 6% a step. Every plan is one keeper transaction to the
portfolio's Safe module: withdraw → swap → repay rounds in one recipe at an ordinary breach, a flash-loan recipe at
the gap, where the rounds would fall short."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console
from rich.table import Table
from web3 import Web3

from agent import telemetry
from agent.daemon import Daemon, load_policies
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from agent.localnet.policies import render_policy
from agent.localnet.readback import aave_account
from agent.settings import Settings

CRASH_BEFORE_GAP = [round(2_000 * 0.95**i, 2) for i in range(1, 6)]  # −5% a step, to about $1,550
GAP_HEALTH_FACTOR = 1.015  # the gap takes the looped long this close to liquidation in one block
CRASH_AFTER_GAP = 3  # then −5% steps again
RALLY_STEPS = 16  # +6% a step
PORTFOLIOS = ("leveraged-long", "delta-neutral-lp")


def _sample(name: str, **labels: str) -> float:
    """Return the sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for family in telemetry.REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _hf(value: float) -> str:
    return f"{value:.3f}" if value < 1_000 else "> 1000 (dust debt)"


def settle(daemon: Daemon, cycles: int = 2, timeout_s: float = 90) -> None:
    """Wait until every portfolio ran `cycles` more cycles and no intent is open."""
    start = {p: _sample("ballast_cycles_total", portfolio=p, outcome="ok") for p in PORTFOLIOS}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.3)
        ran = all(_sample("ballast_cycles_total", portfolio=p, outcome="ok") >= start[p] + cycles for p in PORTFOLIOS)
        if ran and not daemon.journal.unresolved():
            return
    raise TimeoutError(f"the daemon did not settle within {timeout_s:.0f}s")


def run_scenario(console: Console, localnet: Localnet, workdir: Path) -> None:
    """Run the daemon live on the demo portfolios through the crash and the rally, printing each step and a report."""
    policies = workdir / "policies"
    policies.mkdir(parents=True, exist_ok=True)
    for name, account in localnet.demo_accounts.items():
        (policies / f"{name}.yaml").write_text(render_policy(name, account, localnet, mode="live", interval_s=1,
                                                             cooldown_s=0))
    # The daemon signs with the keepers' keys: the Safes' owners' keys never reach it.
    settings = Settings(
        db=str(workdir / "journal.sqlite"), metrics_addr="127.0.0.1:0", kill_switch=workdir / "KILL",
        private_key=SecretStr(",".join(localnet.keeper_key(name) for name in localnet.demo_accounts)),
    )
    (workdir / "journal.sqlite").unlink(missing_ok=True)
    with (workdir / "daemon.log").open("w") as log_file:
        telemetry.configure_logging("json", "info", stream=log_file)
        daemon = Daemon(load_policies([policies]), settings)
        daemon.start()
        try:
            steps = _run_steps(console, localnet, daemon)
            report = _report(daemon, steps)
        finally:
            daemon.stop(drain_s=30)
    console.print(report)


def _prices(chain: LocalChain, localnet: Localnet, index: int, last: float) -> float | None:
    """The WETH price of step `index` (1-based) after `last`, or None past the end: the gap's is where the looped
    long's health factor would be GAP_HEALTH_FACTOR (it is proportional to the WETH price)."""
    if index <= len(CRASH_BEFORE_GAP):
        return CRASH_BEFORE_GAP[index - 1]
    if index == len(CRASH_BEFORE_GAP) + 1:
        health = aave_account(chain, localnet.world.contracts["Pool"], localnet.demo_accounts["leveraged-long"])
        return round(last * GAP_HEALTH_FACTOR / (health.health_factor_wad / 1e18), 2)
    if index <= len(CRASH_BEFORE_GAP) + 1 + CRASH_AFTER_GAP:
        return round(last * 0.95, 2)
    if index <= len(CRASH_BEFORE_GAP) + 1 + CRASH_AFTER_GAP + RALLY_STEPS:
        return round(last * 1.06, 2)
    return None


def _run_steps(console: Console, localnet: Localnet, daemon: Daemon) -> list[dict[str, float]]:
    chain = LocalChain(Web3(Web3.HTTPProvider(localnet.rpc_url)))
    table = Table(title="The daemon through a crash and a rally (live, real Aave v3 and Uniswap v3, Safes)")
    for column in ("step", "WETH USD", "HF leveraged-long", "HF delta-neutral-lp", "delta USD delta-neutral-lp",
                   "actions so far", "liquidatable"):
        table.add_column(column, justify="right")
    settle(daemon)
    steps = []
    crash_steps = len(CRASH_BEFORE_GAP) + 1 + CRASH_AFTER_GAP
    price, index = 2_000.0, 1
    with console.status("running the scenario…") as status:
        while (next_price := _prices(chain, localnet, index, price)) is not None:
            price = next_price
            status.update(f"step {index}: WETH to ${price:,.2f}, waiting for the daemon…")
            set_weth_price(chain, localnet, price)
            settle(daemon)
            health = {p: aave_account(chain, localnet.world.contracts["Pool"], localnet.demo_accounts[p])
                      .health_factor_wad / 1e18 for p in PORTFOLIOS}
            row = {
                "price": price, **{f"hf:{p}": health[p] for p in PORTFOLIOS},
                "delta": _sample("ballast_greek_usd", portfolio="delta-neutral-lp", greek="delta_usd"),
                "actions": _sample("ballast_actions_total"),
            }
            steps.append(row)
            label = "gap" if index == len(CRASH_BEFORE_GAP) + 1 else "crash" if index <= crash_steps else "rally"
            table.add_row(
                f"{index} {label}", f"{price:,.2f}",
                _hf(health["leveraged-long"]), _hf(health["delta-neutral-lp"]), f"{row['delta']:,.0f}",
                f"{row['actions']:.0f}", "yes" if min(health.values()) < 1 else "no",
            )
            index += 1
    console.print(table)
    console.print(_plans_table(chain, localnet, daemon))
    return steps


def _plans_table(chain: LocalChain, localnet: Localnet, daemon: Daemon) -> Table:
    """One row per transaction the daemon landed: its portfolio, what it carried, its block and gas, and the Safe's
    health factor at the plan's snapshot block and after the transaction's block (read from the pool)."""
    table = Table(title="Plans, one keeper transaction each (to the Safe's keeper module)")
    for column in ("portfolio", "recipe", "calls", "block", "gas", "HF before", "HF after", "state"):
        table.add_column(column, justify="left" if column in ("portfolio", "recipe", "state") else "right")
    pool = chain.at("Pool", localnet.world.contracts["Pool"])
    for intent in (i for i in daemon.journal.intents() if i.mode == "live" and i.tx_hash):
        safe = localnet.demo_accounts[intent.portfolio]

        def hf(block: int, safe: str = safe) -> str:
            return _hf(pool.functions.getUserAccountData(safe).call(block_identifier=block)[5] / 1e18)

        calls = intent.recipe_calls()
        kinds = [c["kind"] for c in calls]
        what = ", ".join(sorted(set(kinds) - {"approve"})) or intent.kind
        if intent.description.startswith("flash-loan"):
            what = f"flash loan: {what}"
        receipt = chain.w3.eth.get_transaction_receipt(intent.tx_hash)  # type: ignore[arg-type]
        block = int(receipt["blockNumber"])
        table.add_row(intent.portfolio, what, str(len(calls) or 1), str(block), f"{receipt['gasUsed']:,}",
                      hf(intent.snapshot_block), hf(block), intent.state)
    return table


def _report(daemon: Daemon, steps: list[dict[str, float]]) -> Table:
    journal = daemon.journal
    table = Table(title="Report per portfolio")
    for column in ("portfolio", "min HF", "final HF", "calls", "transactions confirmed", "failed", "est. cost USD"):
        table.add_column(column, justify="right")
    for p in PORTFOLIOS:
        intents = [i for i in journal.intents(p) if i.mode == "live"]
        confirmed = [i for i in intents if i.state == "confirmed"]
        kinds = Counter(c["kind"] for i in confirmed for c in i.recipe_calls() or [{"kind": i.kind}])
        table.add_row(
            p, _hf(min(s[f"hf:{p}"] for s in steps)), _hf(steps[-1][f"hf:{p}"]),
            ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none", str(len(confirmed)),
            str(sum(i.state == "failed" for i in intents)),
            f"{_sample('ballast_action_cost_usd_total', portfolio=p):,.2f}",
        )
    return table
