"""`ballast demo` and `ballast localnet up`: the local world as a user first meets it."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

from rich.console import Console
from rich.table import Table
from web3 import Web3

from agent.localnet import Anvil, Localnet, build_localnet, write_state
from agent.localnet.chain import LocalChain
from agent.localnet.readback import BASE_CURRENCY_UNIT, aave_account, lp_ranges
from agent.localnet.world import weth_price_at_tick

MAX_HEALTH_FACTOR = 2**256 - 1  # Aave's health factor of an account without debt


def status_table(localnet: Localnet) -> Table:
    """Return a table of each demo portfolio's Aave account and LP ranges, read from the chain now."""
    chain = LocalChain(Web3(Web3.HTTPProvider(localnet.rpc_url)))
    table = Table(title=f"Demo portfolios on {localnet.rpc_url} (chain {localnet.world.chain_id})")
    for column in ("portfolio", "account", "health factor", "collateral USD", "debt USD", "LP range (WETH USD)"):
        table.add_column(column, justify="left" if column in ("portfolio", "account") else "right")
    for name, owner in localnet.demo_accounts.items():
        data = aave_account(chain, localnet.world.contracts["Pool"], owner)
        health = "∞" if data.health_factor_wad == MAX_HEALTH_FACTOR else f"{data.health_factor_wad / 1e18:.4f}"
        ranges = lp_ranges(chain, localnet.world.contracts["NonfungiblePositionManager"], owner)
        lp = ", ".join(
            "{:,.0f}–{:,.0f}".format(*sorted((weth_price_at_tick(r.tick_lower, localnet.world),
                                             weth_price_at_tick(r.tick_upper, localnet.world))))
            for r in ranges
        ) or "—"
        table.add_row(
            name, owner, health, f"{data.total_collateral_base / BASE_CURRENCY_UNIT:,.2f}",
            f"{data.total_debt_base / BASE_CURRENCY_UNIT:,.2f}", lp,
        )
    return table


def run_demo(console: Console, state_dir: Path) -> None:
    """Start the local chain, deploy and seed it, print the demo portfolios' status, and shut down."""
    with console.status("starting anvil and deploying Aave v3, Uniswap v3 and the demo portfolios…"), Anvil() as node:
        localnet = build_localnet(node.url, node.chain_id)
        write_state(localnet, state_dir)
        table = status_table(localnet)
    console.print(table)
    console.print(f"Policies for these portfolios: {state_dir / 'policies'}/ (the chain is gone now; "
                  "`ballast localnet up` keeps one running)")


def serve(console: Console, state_dir: Path, port: int, as_json: bool) -> None:
    """Run the local world until SIGINT or SIGTERM, then stop anvil cleanly."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with Anvil(port=port) as node:
        localnet = build_localnet(node.url, node.chain_id)
        state_file = write_state(localnet, state_dir)
        if as_json:
            print(json.dumps(localnet.to_json()), flush=True)
        else:
            console.print(status_table(localnet))
            console.print(f"local chain ready at {node.url}; state in {state_file}; Ctrl-C stops it")
        stop.wait()
    if not as_json:
        console.print("local chain stopped")
