"""Direct mode, the fallback for a plain account (a personal wallet): each call of the plan's recipe is its own
transaction, in order, and each approval covers exactly the calls that spend it."""

from __future__ import annotations

from pathlib import Path

from eth_abi import decode
from web3 import Web3

from agent.cycle import decide
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from tests.chain.execution_support import make_executor, plain_leveraged_long, read, signer_of


def test_a_repay_split_by_the_notional_cap_approves_each_part_and_both_confirm(
    localnet: Localnet, chain: LocalChain, tmp_path: Path
) -> None:
    # Given a plain account's looped long under its health-factor band with idle USDC, and a notional cap that
    # splits the repayment in two
    policy = plain_leveraged_long(localnet, chain, idle_usdc=30_000)
    policy = policy.model_copy(update={"limits": policy.limits.model_copy(update={"max_notional_per_tx_usd": 12_000})})
    set_weth_price(chain, localnet, 1_700.0)
    account = policy.portfolio.account
    w3 = Web3(Web3.HTTPProvider(localnet.rpc_url))
    nonce = w3.eth.get_transaction_count(account)
    snapshot = read(policy)
    cycle = decide(snapshot, policy, log_decision=False)
    repays = [a for a in cycle.plan.actions if a.kind == "repay"]
    assert len(repays) == 2 and [a.kind for a in cycle.plan.actions] == ["repay", "repay"], cycle.plan.reason

    # When the executor runs the plan from the account itself
    report = make_executor(localnet, policy, tmp_path).execute_plan(cycle.plan, snapshot, wait_s=30)

    # Then each repay has its own approval of exactly its amount, and every transaction confirmed
    assert [(i.kind, i.state) for i in report.intents] == [("approve", "confirmed"), ("repay", "confirmed")] * 2
    approved = [decode(["address", "uint256"], i.data_bytes[4:])[1] for i in report.intents if i.kind == "approve"]
    assert approved == [a.amount_base_units for a in repays]
    assert w3.eth.get_transaction_count(account) == nonce + 4
    assert signer_of(localnet, policy).address == account
    usdc = chain.at("MintableERC20", localnet.world.tokens["USDC"])
    assert usdc.functions.allowance(account, localnet.world.contracts["Pool"]).call() == 0
    after = read(policy).lowest_health_factor
    assert after is not None and after >= 1.8 * 0.99
