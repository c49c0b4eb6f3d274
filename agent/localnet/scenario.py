"""The demo's scenario: the daemon, live, keeps the demo portfolios alive through a scripted crash and rally of
WETH, then a depeg of WSTETH against WETH.

The crash falls 5% a step, then gaps down in one block to where the looped long's health factor is 1.015 (as ETH
did on 2020-03-12), and falls on; the rally climbs 6% a step; then WSTETH falls 2% a step below its WETH ratio, to
8%. Every plan is one keeper transaction to the portfolio's Safe module: withdraw → swap → repay rounds in one
recipe at an ordinary breach, a flash-loan recipe at the gap, where the rounds would fall short."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.table import Table
from web3 import Web3

from agent import telemetry
from agent.console import progress
from agent.daemon import Daemon
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_lst_depeg, set_weth_price
from agent.localnet.policies import render_policy
from agent.localnet.readback import aave_account
from agent.policy.files import load_policies
from agent.settings import Settings

CRASH_BEFORE_GAP = [round(2_000 * 0.95**i, 2) for i in range(1, 6)]  # −5% a step, to about $1,550
GAP_HEALTH_FACTOR = 1.015  # the gap takes the looped long this close to liquidation in one block
CRASH_AFTER_GAP = 3  # then −5% steps again
RALLY_STEPS = 16  # +6% a step
DEPEG = [0.02, 0.04, 0.06, 0.08]  # WSTETH below its WETH ratio, a step at a time
PORTFOLIOS = ("leveraged-long", "delta-neutral-lp", "lst-loop", "cross-protocol")  # every demo portfolio (Aave HF)


def _sample(name: str, **labels: str) -> float:
    """Return the sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for family in telemetry.REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _hf(value: float) -> str:
    return f"{value:.3f}" if value < 1_000 else "> 1000 (dust)"


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


def _run_steps(console: Console, localnet: Localnet, daemon: Daemon) -> list[dict[str, float | str]]:
    """Move the WETH price through the crash and the rally, then WSTETH below its peg, waiting for the daemon at each
    step; print the steps and the plans, and return one row per step (see `steps_table`)."""
    chain = LocalChain(Web3(Web3.HTTPProvider(localnet.rpc_url)))
    settle(daemon)
    steps: list[dict[str, float | str]] = []
    crash_steps = len(CRASH_BEFORE_GAP) + 1 + CRASH_AFTER_GAP

    def step(label: str, price: float, depeg: float) -> None:
        settle(daemon)
        row: dict[str, float | str] = {"step": f"{len(steps) + 1} {label}", "price": price, "depeg": depeg}
        for p in PORTFOLIOS:
            account = aave_account(chain, localnet.world.contracts["Pool"], localnet.demo_accounts[p])
            row[f"hf:{p}"] = account.health_factor_wad / 1e18
            row[f"delta:{p}"] = _sample("ballast_greek_usd", portfolio=p, greek="delta_usd")
            row[f"actions:{p}"] = _sample("ballast_actions_total", portfolio=p)
        steps.append(row)

    price = 2_000.0
    with progress(console) as bar:
        task = bar.add_task("crash, rally and depeg", total=crash_steps + RALLY_STEPS + len(DEPEG))
        while (next_price := _prices(chain, localnet, len(steps) + 1, price)) is not None:
            price = next_price
            bar.update(task, description=f"step {len(steps) + 1}: WETH ${price:,.2f}, waiting for the daemon")
            set_weth_price(chain, localnet, price)
            index = len(steps) + 1
            step("gap" if index == len(CRASH_BEFORE_GAP) + 1 else "crash" if index <= crash_steps else "rally", price,
                 0.0)
            bar.advance(task)
        for depeg in DEPEG:
            bar.update(task, description=f"step {len(steps) + 1}: WSTETH {depeg:.0%} below its peg, waiting for "
                                         "the daemon")
            set_lst_depeg(chain, localnet, depeg)
            step("depeg", price, depeg)
            bar.advance(task)
    console.print(steps_table(steps))
    console.print(_plans_table(chain, localnet, daemon))
    return steps


def steps_table(steps: list[dict[str, float | str]]) -> Table:
    """Return one row per step and portfolio: the WETH price, WSTETH's depeg, the portfolio's health factor, delta
    (USD) and actions so far, and whether it is liquidatable. Under 100 columns wide."""
    table = Table(title="The daemon through a crash, a rally and a depeg (live: real Aave v3, Uniswap v3, Safes)")
    for column in ("step", "WETH USD", "depeg", "portfolio", "HF", "delta USD", "actions", "liquidatable"):
        table.add_column(column, justify="left" if column in ("step", "portfolio") else "right", no_wrap=True)
    for row in steps:
        for n, p in enumerate(PORTFOLIOS):
            hf = float(row[f"hf:{p}"])
            first = n == 0
            table.add_row(str(row["step"]) if first else "", f"{float(row['price']):,.2f}" if first else "",
                          f"{float(row['depeg']):.0%}" if first else "", p,
                          _hf(hf), f"{float(row[f'delta:{p}']):,.0f}", f"{float(row[f'actions:{p}']):.0f}",
                          "yes" if hf < 1 else "no", end_section=n == len(PORTFOLIOS) - 1)
    return table


def _plans_table(chain: LocalChain, localnet: Localnet, daemon: Daemon) -> Table:
    """One row per transaction the daemon landed: its portfolio, what it carried, its block and gas, and the Safe's
    health factor at the plan's snapshot block and after the transaction's block (read from the pool)."""
    table = Table(title="Plans, one keeper transaction each (to the Safe's keeper module)")
    for column in ("portfolio", "recipe", "calls", "block", "gas", "HF before", "HF after", "state"):
        table.add_column(column, justify="left" if column in ("portfolio", "recipe", "state") else "right",
                         no_wrap=column != "recipe")
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


def _report(daemon: Daemon, steps: list[dict[str, float | str]]) -> Table:
    """Return the report table of the run: per portfolio, from the journal and the metrics (see `report_table`)."""
    rows = []
    for p in PORTFOLIOS:
        intents = [i for i in daemon.journal.intents(p) if i.mode == "live"]
        confirmed = [i for i in intents if i.state == "confirmed"]
        kinds = Counter(c["kind"] for i in confirmed for c in i.recipe_calls() or [{"kind": i.kind}])
        rows.append({
            "portfolio": p, "min_hf": min(float(s[f"hf:{p}"]) for s in steps), "final_hf": float(steps[-1][f"hf:{p}"]),
            "calls": ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none",
            "confirmed": len(confirmed), "failed": sum(i.state == "failed" for i in intents),
            "cost_usd": _sample("ballast_action_cost_usd_total", portfolio=p),
        })
    return report_table(rows)


def report_table(rows: list[dict[str, Any]]) -> Table:
    """Return one row per portfolio: min and final health factor, the calls its confirmed transactions carried,
    transactions confirmed and failed, estimated cost (USD). Under 100 columns wide (the calls wrap)."""
    table = Table(title="Report per portfolio")
    for column in ("portfolio", "min HF", "final HF", "calls", "confirmed", "failed", "cost USD"):
        table.add_column(column, justify="left" if column in ("portfolio", "calls") else "right",
                         no_wrap=column != "calls")
    for row in rows:
        table.add_row(row["portfolio"], _hf(row["min_hf"]), _hf(row["final_hf"]), row["calls"],
                      str(row["confirmed"]), str(row["failed"]), f"{row['cost_usd']:,.2f}")
    return table
