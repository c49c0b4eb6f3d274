"""One portfolio on two anvil chains, each with its own deployed world and the same account: a health factor breached
on the second chain is planned and deleveraged on the second chain, through the real executor, while the risk
report (and its metrics) is one view across both."""

from __future__ import annotations

from pathlib import Path

from eth_account import Account
from prometheus_client import CollectorRegistry
from web3 import Web3

from agent.chain.signer import LocalSigner
from agent.cycle import decide
from agent.execution.executor import Executor
from agent.execution.journal import Journal
from agent.localnet import Anvil, Localnet, build_localnet
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from agent.localnet.policies import render_policy
from agent.localnet.readback import aave_account
from agent.policy import Policy, parse_policy
from agent.telemetry import REGISTRY, record_risk
from tests.chain.execution_support import Clock, live, read, signer_of

NAME = "leveraged-long"
SECOND = "second"


def _two_chain_policy(first: Localnet, second: Localnet) -> Policy:
    """The demo policy of `NAME` with the second world as a second chain named `SECOND`."""
    account = first.demo_accounts[NAME]
    one = parse_policy(render_policy(NAME, account, first), "one.yaml")
    two = parse_policy(render_policy(NAME, account, second), "two.yaml")
    chains = (one.portfolio.chains[0], two.portfolio.chains[0].model_copy(update={"name": SECOND}))
    return live(one.model_copy(update={"portfolio": one.portfolio.model_copy(update={"chains": chains})}))


def test_a_breach_on_the_second_chain_deleverages_the_second_chains_account(
    localnet: Localnet, chain: LocalChain, tmp_path: Path
) -> None:
    with Anvil(chain_id=31338) as node:
        second = build_localnet(node.url, node.chain_id)
        policy = _two_chain_policy(localnet, second)
        owner = policy.portfolio.account
        chain_two = LocalChain(Web3(Web3.HTTPProvider(second.rpc_url)))
        # Given: WETH falls 15% on the second chain only: HF there 1.70 → 1.45, below the band's 1.5
        set_weth_price(chain_two, second, 1_700.0)
        before = read(policy)
        result = decide(before, policy, log_decision=False)

        # Then: one report across both chains, and a plan that acts on the second chain only
        health = {a.chain: a.health_factor for a in result.report.accounts}
        assert set(health) == {"localnet", SECOND} and health[SECOND] < 1.5 < health["localnet"], health
        assert result.plan.actions and {a.chain for a in result.plan.actions} == {SECOND}, result.plan.reason
        assert "HF[second]" in result.plan.reason

        # When: the real executor sends it (each chain with its own node)
        w3s = {"localnet": Web3(Web3.HTTPProvider(localnet.rpc_url)), SECOND: chain_two.w3}
        signer = LocalSigner(Account.from_key(signer_of(localnet, policy).private_key))
        executor = Executor(policy, Journal(tmp_path / "journal.sqlite", Clock()), signer, tmp_path / "KILL",
                            w3s=w3s, clock=Clock(), registry=CollectorRegistry(), poll_s=0.05)
        report = executor.execute_plan(result.plan, before, wait_s=60)
        assert report.refusals == () and set(report.states) == {"confirmed"}, report.to_json()

        # Then: the second chain's account is back at the target, the first untouched
        first_hf = aave_account(chain, localnet.world.contracts["Pool"], owner).health_factor_wad / 1e18
        second_hf = aave_account(chain_two, second.world.contracts["Pool"], owner).health_factor_wad / 1e18
        assert first_hf == health["localnet"] or abs(first_hf - health["localnet"]) < 1e-6
        assert second_hf >= 1.75, second_hf
        record_risk(NAME, result.report, before.problems)
        value = REGISTRY.get_sample_value("ballast_portfolio_value_usd", {"portfolio": NAME})
        assert value == result.report.value_usd and value > 0
