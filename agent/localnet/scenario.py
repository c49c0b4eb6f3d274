"""The demo's scenario: the daemon, live, keeps the demo portfolios alive through a scripted crash and rally of
WETH, then a depeg of WSTETH against WETH."""

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
from agent.localnet.market import set_lst_depeg, set_weth_price
from agent.localnet.policies import render_policy
from agent.localnet.readback import aave_account
from agent.settings import Settings

CRASH = [round(2_000 * 0.95**i, 2) for i in range(1, 9)]  # −5% a step, to about $1,330
RALLY = [round(CRASH[-1] * 1.06**i, 2) for i in range(1, 15)]  # +6% a step, to about $2,990
DEPEG = [0.02, 0.04, 0.06, 0.08]  # WSTETH below its WETH ratio, a step at a time
PORTFOLIOS = ("leveraged-long", "delta-neutral-lp", "lst-loop")


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


def settle(daemon: Daemon, cycles: int = 2, timeout_s: float = 240) -> None:
    """Wait until every portfolio ran `cycles` more cycles and no intent is open (a deleverage in rounds through a
    plain account is a dozen transactions one after the other: on a loaded machine that takes minutes)."""
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
    keys = {a.address: a.private_key for a in localnet.accounts}
    settings = Settings(
        db=str(workdir / "journal.sqlite"), metrics_addr="127.0.0.1:0", kill_switch=workdir / "KILL",
        private_key=SecretStr(",".join(keys[a] for a in localnet.demo_accounts.values())),
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


def _run_steps(console: Console, localnet: Localnet, daemon: Daemon) -> list[dict[str, float]]:
    chain = LocalChain(Web3(Web3.HTTPProvider(localnet.rpc_url)))
    table = Table(title="The daemon through a crash, a rally and a depeg (live, real Aave v3 and Uniswap v3)")
    for column in ("step", "WETH USD", "WSTETH depeg", *(f"HF {p}" for p in PORTFOLIOS),
                   "delta USD delta-neutral-lp", "actions so far", "liquidatable"):
        table.add_column(column, justify="right")
    settle(daemon)
    steps = []
    moves = [("crash", p) for p in CRASH] + [("rally", p) for p in RALLY] + [("depeg", d) for d in DEPEG]
    price, depeg = 2_000.0, 0.0
    with console.status("running the scenario…") as status:
        for index, (phase, value) in enumerate(moves, start=1):
            if phase == "depeg":
                depeg = value
                status.update(f"step {index}: WSTETH {depeg:.0%} below its peg, waiting for the daemon…")
                set_lst_depeg(chain, localnet, depeg)
            else:
                price = value
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
            table.add_row(
                f"{index} {phase}", f"{price:,.2f}", f"{depeg:.0%}", *(_hf(health[p]) for p in PORTFOLIOS),
                f"{row['delta']:,.0f}", f"{row['actions']:.0f}", "yes" if min(health.values()) < 1 else "no",
            )
    console.print(table)
    return steps


def _report(daemon: Daemon, steps: list[dict[str, float]]) -> Table:
    journal = daemon.journal
    table = Table(title="Report per portfolio")
    for column in ("portfolio", "min HF", "final HF", "actions", "transactions confirmed", "failed", "est. cost USD"):
        table.add_column(column, justify="right")
    for p in PORTFOLIOS:
        intents = [i for i in journal.intents(p) if i.mode == "live"]
        kinds = Counter(i.kind for i in intents if i.state == "confirmed")
        table.add_row(
            p, _hf(min(s[f"hf:{p}"] for s in steps)), _hf(steps[-1][f"hf:{p}"]),
            ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none", str(sum(kinds.values())),
            str(sum(i.state == "failed" for i in intents)),
            f"{_sample('ballast_action_cost_usd_total', portfolio=p):,.2f}",
        )
    return table
