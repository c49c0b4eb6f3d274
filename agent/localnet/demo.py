"""`ballast demo` and `ballast localnet up`: the local world as a user first meets it."""

from __future__ import annotations

import json
import signal
import threading
from contextlib import nullcontext
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agent.chain.reader import PortfolioReader
from agent.localnet import Anvil, Localnet, build_localnet, write_state
from agent.localnet.scenario import run_scenario
from agent.model import AaveAccount, LpPosition
from agent.policy import load_policy
from agent.status import health_factor_text, lp_price_range


def status_table(localnet: Localnet, state_dir: Path) -> Table:
    """Return one row per demo portfolio: its Aave account and LP ranges, read by the agent's own snapshot reader
    through the policy `write_state` wrote for it (see `portfolios_table`)."""
    rows = []
    for name in localnet.demo_accounts:
        reader = PortfolioReader(load_policy(state_dir / "policies" / f"{name}.yaml"))
        snapshot = reader.read()
        reader.close()
        (aave,) = (p for p in snapshot.positions if isinstance(p, AaveAccount))
        collateral = sum(r.collateral_base_units * r.price_1e8 // 10**r.token.decimals for r in aave.reserves)
        debt = sum((r.variable_debt_base_units + r.stable_debt_base_units) * r.price_1e8 // 10**r.token.decimals
                   for r in aave.reserves)
        ranges = "\n".join(
            "{:,.0f}–{:,.0f}".format(*lp_price_range(p, snapshot.underlying))
            for p in snapshot.positions if isinstance(p, LpPosition)
        ) or "—"
        rows.append((name, snapshot.account, health_factor_text(aave.reported_health_factor_wad),
                     f"{collateral / 1e8:,.2f}", f"{debt / 1e8:,.2f}", ranges))
    return portfolios_table(f"Demo portfolios on {localnet.rpc_url} (chain {localnet.world.chain_id})", rows)


def portfolios_table(title: str, rows: list[tuple[str, str, str, str, str, str]]) -> Table:
    """Return the table of (portfolio, account, health factor, collateral USD, debt USD, LP ranges) rows; the
    account goes under the portfolio's name and the LP ranges one a line, so the table fits 100 columns."""
    table = Table(title=title)
    for column in ("portfolio / account", "HF", "collateral USD", "debt USD", "LP range (WETH USD)"):
        table.add_column(column, justify="right" if column in ("HF", "collateral USD", "debt USD") else "left",
                         no_wrap=not column.startswith("LP"), min_width=11 if column.startswith("LP") else None)
    for name, account, hf, collateral, debt, ranges in rows:
        table.add_row(f"{name}\n{account}", hf, collateral, debt, ranges, end_section=True)
    return table


def run_demo(console: Console, state_dir: Path) -> None:
    """The main job: the local world with the demo portfolios, the daemon in live mode, a scripted crash and rally
    of WETH and a depeg of WSTETH on the feeds and pools, the daemon's actions step by step, and a report per
    portfolio."""
    with console.status("starting anvil and deploying Aave v3, Uniswap v3 and the demo portfolios…"):
        node = Anvil().start()
    try:
        localnet = build_localnet(node.url, node.chain_id)
        write_state(localnet, state_dir)
        console.print(status_table(localnet, state_dir))
        run_scenario(console, localnet, state_dir / "demo")
    finally:
        node.stop()
    console.print(f"Daemon log and journal: {state_dir / 'demo'}/; policies for `ballast localnet up`: "
                  f"{state_dir / 'policies'}/")


def serve(console: Console, state_dir: Path, port: int, as_json: bool) -> None:
    """Run the local world until SIGINT or SIGTERM, then stop anvil cleanly."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with Anvil(port=port) as node:
        with nullcontext() if as_json else console.status("deploying the local world and the demo portfolios…"):
            localnet = build_localnet(node.url, node.chain_id)
        state_file = write_state(localnet, state_dir)
        if as_json:
            print(json.dumps(localnet.to_json()), flush=True)
        else:
            console.print(status_table(localnet, state_dir))
            console.print(f"local chain ready at {node.url}; state in {state_file}; Ctrl-C stops it")
        stop.wait()
    if not as_json:
        console.print("local chain stopped")
