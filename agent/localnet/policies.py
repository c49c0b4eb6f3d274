"""Ready-to-use policies for the demo portfolios on the local world, written by `ballast localnet up`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.localnet import Localnet

# Bands per demo portfolio: the leveraged long is long delta by design, so only its health factor is kept.
BANDS = {
    "leveraged-long": """\
  health_factor: {min: 1.5, target: 1.8, max: 3.0, boost: false}
""",
    "delta-neutral-lp": """\
  health_factor: {min: 1.5, target: 1.8, max: 3.0, boost: false}
  delta_usd: {min: -5000, target: 0, max: 5000}
""",
}


def render_policy(
    name: str, account: str, localnet: Localnet, mode: str = "dry-run", interval_s: float = 12, cooldown_s: float = 60
) -> str:
    """Return the YAML policy for demo portfolio `name` held by `account` on the local world (dry-run and a 12 s
    interval unless told; the demo and the end-to-end test run it live and faster). An account that is a demo
    portfolio's Safe gets its keeper module as executor; any other account is a direct one."""
    contracts = localnet.world.contracts
    safe = next((p for p in localnet.demo_portfolios.values() if p.address.lower() == account.lower()), None)
    executor = f"  executor: {{kind: safe_module, module: \"{safe.module}\"}}\n" if safe else ""
    feeds = "\n".join(f"            {symbol}: \"{address}\"" for symbol, address in localnet.world.feeds.items())
    return f"""\
# Written by `ballast localnet up` for the local world: addresses change with every deployment.
version: 1
portfolio:
  name: {name}
  account: "{account}"
{executor}  underlying: WETH
  chains:
    - name: localnet
      chain_id: {localnet.world.chain_id}
      rpc: ["{localnet.rpc_url}"]
      protocols:
        aave_v3:
          pool_addresses_provider: "{contracts["PoolAddressesProvider"]}"
        uniswap_v3:
          position_manager: "{contracts["NonfungiblePositionManager"]}"
          swap_router: "{contracts["SwapRouter"]}"
          quoter: "{contracts["QuoterV2"]}"
        chainlink:
          max_age_s: 3600
          feeds:
{feeds}
        perps:
          market: "{contracts["PerpMarket"]}"
        options:
          market: "{contracts["OptionsMarket"]}"
bands:
{BANDS[name]}\
triggers: {{interval_s: {interval_s:g}, max_hedge_age_s: 86400, price_move_pct: 2.0, cooldown_s: {cooldown_s:g}}}
hedging: {{instruments: [perp, aave_borrow, spot_swap, options], max_slippage_bps: 30, min_trade_usd: 500}}
limits: {{max_notional_per_tx_usd: 250000, max_daily_turnover_usd: 2000000, max_gas_price_gwei: 200}}
execution: {{mode: {mode}, confirmations: 1, replace_after_s: 30, deadline_s: 600}}
"""
