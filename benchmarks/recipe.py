"""Recipe against per-step execution: the same health-factor breach of the same looped long, deleveraged by its
Safe in one keeper transaction through the module, and by a plain account (the direct executor) one transaction
per call. Counts transactions and total gas on a local chain (real Aave v3, Uniswap v3, Safe 1.4.1, the module).

Two breaches: HF 1.3 (the planner's withdraw → swap → repay rounds, one recipe for the Safe) and HF 1.02 (the
Safe's flash-loan recipe; the plain account's rounds stop at their withdraw floor). Both accounts hold the demo's
looped long and act from the same chain state (a snapshot reverted between them). Prints transactions, gas, the
health factor reached and the ratios. No assertions: the numbers are for the reader.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from eth_account import Account
from prometheus_client import CollectorRegistry
from web3 import Web3

from agent.chain.reader import PortfolioReader
from agent.chain.signer import LocalSigner
from agent.cycle import decide
from agent.execution.executor import Executor
from agent.execution.journal import Journal
from agent.localnet import Anvil, Localnet, build_localnet
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from agent.localnet.policies import render_policy
from agent.localnet.seed import DEMO_PORTFOLIOS, seed_portfolio
from agent.policy import Policy, parse_policy
from agent.telemetry import configure_logging

PLAIN_ACCOUNT = 5
BREACHES = (1.3, 1.02)


def live_policy(localnet: Localnet, account: str) -> Policy:
    text = render_policy("leveraged-long", account, localnet).replace("mode: dry-run", "mode: live")
    return parse_policy(text, "leveraged-long.yaml")


def run(localnet: Localnet, policy: Policy, key: str, workdir: Path) -> dict[str, Any]:
    """Plans and executes the portfolio's deleverage; returns transactions, gas and health factors."""
    w3 = Web3(Web3.HTTPProvider(localnet.rpc_url))
    workdir.mkdir(parents=True)
    reader = PortfolioReader(policy)
    snapshot = reader.read()
    cycle = decide(snapshot, policy, log_decision=False)
    executor = Executor(policy, Journal(workdir / f"{policy.portfolio.executor.kind}.sqlite"),
                        LocalSigner(Account.from_key(key)), workdir / "KILL", w3s={"localnet": w3},
                        registry=CollectorRegistry(), poll_s=0.05)
    report = executor.execute_plan(cycle.plan, snapshot, wait_s=120)
    hashes = [tx.record.tx_hash for i in report.intents for tx in executor.journal.txs(i.id)]
    gas = sum(int(w3.eth.get_transaction_receipt(h)["gasUsed"]) for h in hashes)  # type: ignore[arg-type]
    after = reader.read().lowest_health_factor
    reader.close()
    return {"kinds": [a.kind for a in cycle.plan.actions], "transactions": len(hashes), "gas": gas,
            "states": sorted(set(report.states)), "before": snapshot.lowest_health_factor, "after": after}


def main() -> None:
    configure_logging("console", "warning")  # the executor's per-transaction lines would bury the figures
    with Anvil() as node, tempfile.TemporaryDirectory() as scratch:
        localnet = build_localnet(node.url, node.chain_id)
        chain = LocalChain(Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60})))
        plain = localnet.accounts[PLAIN_ACCOUNT]
        seed_portfolio(chain, localnet.world, next(d for d in DEMO_PORTFOLIOS if d.name == "leveraged-long"),
                       plain.address)
        set_weth_price(chain, localnet, 2_000.0)
        safe = live_policy(localnet, localnet.demo_accounts["leveraged-long"])
        direct = live_policy(localnet, plain.address)
        reader = PortfolioReader(safe)
        start = reader.read()
        reader.close()
        assert start.lowest_health_factor is not None
        for breach in BREACHES:
            base = chain.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
            set_weth_price(chain, localnet, 2_000.0 * breach / start.lowest_health_factor)
            crashed = chain.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
            recipe = run(localnet, safe, localnet.keeper_key("leveraged-long"), Path(scratch) / f"s{breach}")
            chain.w3.provider.make_request("evm_revert", [crashed])  # type: ignore[arg-type]
            steps = run(localnet, direct, plain.private_key, Path(scratch) / f"d{breach}")
            chain.w3.provider.make_request("evm_revert", [base])  # type: ignore[arg-type]
            print(f"breach at HF {breach:g}:")
            for label, result in (("safe recipe", recipe), ("direct per step", steps)):
                print(f"  {label:16} {result['transactions']:3d} transactions {result['gas']:>10,d} gas  "
                      f"HF {result['before']:.3f} → {result['after']:.3f}  {result['states']}  "
                      f"{' '.join(result['kinds'])}")
            print(f"  ratio (direct / recipe): {steps['transactions'] / recipe['transactions']:.1f}× transactions, "
                  f"{steps['gas'] / recipe['gas']:.2f}× gas")


if __name__ == "__main__":
    main()
