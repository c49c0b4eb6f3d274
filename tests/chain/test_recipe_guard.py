"""The guard checks a Safe's recipe call by call with the rules its keeper module enforces, so that what the module
would refuse is refused before anything is signed: each rule has its refusal, with a reason an operator can act on,
and nothing is sent. The module's own configuration (read at the snapshot block) counts too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from web3 import Web3

from agent.adapters.aave_v3 import POOL
from agent.adapters.encode import ROUTER, encode_approve
from agent.errors import BallastError
from agent.execution.executor import Executor
from agent.execution.recipe import FlashLoan, Recipe, RecipeCall
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.safe import exec_as_owner
from agent.model import Action, TxRequest
from agent.policy import Policy
from tests.chain.execution_support import borrow_usdc, keeper_account, live, make_executor, plan, read

OUTSIDER = "0x000000000000000000000000000000000000dEaD"


def _recipe(*requests: TxRequest, loan: FlashLoan | None = None) -> Recipe:
    return Recipe("localnet", tuple(RecipeCall(0, "test", r) for r in requests), loan)


def _calls(executor: Executor, localnet: Localnet) -> dict[str, tuple[Recipe, str]]:
    """Each recipe the guard must refuse, with the words of its refusal."""
    safe, keeper = executor.account, executor.sender
    pool, router = localnet.world.contracts["Pool"], localnet.world.contracts["SwapRouter"]
    usdc, weth = (executor.chains["localnet"].venues.token(s) for s in ("USDC", "WETH"))
    module = executor.module
    assert module is not None
    deadline = 2**40

    def on(to: str, data: bytes) -> TxRequest:
        return TxRequest("localnet", to, data, description=f"call to {to}")

    return {
        "selector": (_recipe(on(pool, POOL.fn("setUserUseReserveAsCollateral").encode(weth.address, False))),
                     "is not a call the policy allows"),
        "withdraw_to_keeper": (_recipe(on(pool, POOL.fn("withdraw").encode(weth.address, 10**18, keeper))),
                               f"names a beneficiary other than {safe}"),
        "borrow_to_keeper": (_recipe(on(pool, POOL.fn("borrow").encode(usdc.address, 10**6, 2, 0, keeper))),
                             f"names a beneficiary other than {safe}"),
        "swap_to_keeper": (_recipe(on(router, ROUTER.fn("exactInputSingle").encode(
            (weth.address, usdc.address, 500, keeper, deadline, 10**18, 0, 0)))), "names a beneficiary other than"),
        "outside_spender": (_recipe(encode_approve("localnet", usdc, OUTSIDER, 10**6)),
                            f"approval spender {OUTSIDER} is not a contract of the policy's protocols"),
        "transfer": (_recipe(on(usdc.address, bytes.fromhex("a9059cbb") + bytes(12) + bytes.fromhex(keeper[2:])
                                + (10**6).to_bytes(32, "big"))), "is not a call the policy allows"),
        "safe_itself": (_recipe(on(safe, bytes.fromhex("6a761202") + bytes(32 * 10))),
                        "a call to the account or its module itself"),
        "module_itself": (_recipe(on(module, bytes.fromhex("deadbeef"))), "a call to the account or its module"),
        "outside_lender": (_recipe(on(pool, POOL.fn("repay").encode(usdc.address, 10**6, 2, safe)),
                                   loan=FlashLoan(OUTSIDER, usdc, 10**6, 0)),
                           f"flash lender {Web3.to_checksum_address(OUTSIDER)} is not a contract of the policy"),
    }


RULES = ("selector", "withdraw_to_keeper", "borrow_to_keeper", "swap_to_keeper", "outside_spender", "transfer",
         "safe_itself", "module_itself", "outside_lender")


@pytest.mark.parametrize("rule", RULES)
def test_guard_refuses_each_call_the_module_would_refuse(
    localnet: Localnet, demo_policy: Callable[[str], Policy], tmp_path: Path, rule: str
) -> None:
    executor = make_executor(localnet, live(demo_policy("leveraged-long")), tmp_path)
    recipe, words = _calls(executor, localnet)[rule]

    refusals = executor.guard.check_recipe(recipe, None, atomic=True)

    assert refusals and all(r.rule == "allowlist" for r in refusals)
    assert any(words in r.reason for r in refusals), [str(r) for r in refusals]


def test_a_call_the_owner_removed_from_the_module_is_refused_before_signing(
    localnet: Localnet, chain: LocalChain, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    # Given the Safe's owner removed Aave's borrow from the module's allowed calls (the policy still names Aave)
    policy = live(demo_policy("delta-neutral-lp"))
    safe = localnet.demo_portfolios["delta-neutral-lp"]
    module = chain.at("BallastKeeperModule", safe.module)
    pool = localnet.world.contracts["Pool"]
    exec_as_owner(chain, safe.address, safe.owner, safe.module,
                  module.encode_abi("removeCall", [pool, POOL.fn("borrow").selector]))
    w3 = Web3(Web3.HTTPProvider(localnet.rpc_url))
    keeper = keeper_account(localnet, "delta-neutral-lp").address
    nonce = w3.eth.get_transaction_count(keeper)
    executor = make_executor(localnet, policy, tmp_path)
    snapshot = read(policy)

    report = executor.execute_plan(plan(snapshot, borrow_usdc(1_000)), snapshot, wait_s=1)

    assert [r.rule for r in report.refusals] == ["module"]
    assert "the keeper module would refuse aave_v3 borrow" in report.refusals[0].reason
    assert report.refusals[0].reason.endswith("BK010 (call not allowed)")
    assert [i.state for i in report.intents] == ["failed"] and executor.journal.txs(report.intents[0].id) == []
    assert w3.eth.get_transaction_count(keeper) == nonce


def test_a_key_the_owner_removed_as_keeper_cannot_execute(
    localnet: Localnet, chain: LocalChain, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    safe = localnet.demo_portfolios["leveraged-long"]
    module = chain.at("BallastKeeperModule", safe.module)
    exec_as_owner(chain, safe.address, safe.owner, safe.module, module.encode_abi("setKeeper", [safe.keeper, False]))

    with pytest.raises(BallastError, match=f"{safe.keeper} is not a keeper of the module {safe.module}"):
        make_executor(localnet, live(demo_policy("leveraged-long")), tmp_path)


def test_the_safe_owner_key_is_not_a_signer_of_recipes(
    localnet: Localnet, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    from eth_account import Account
    from prometheus_client import CollectorRegistry

    from agent.chain.signer import LocalSigner
    from agent.execution.journal import Journal

    policy = live(demo_policy("leveraged-long"))
    owner = localnet.demo_portfolios["leveraged-long"].owner
    signer = LocalSigner(Account.from_key(localnet.key_of(owner)))
    with pytest.raises(BallastError, match="is not a keeper of the module"):
        Executor(policy, Journal(tmp_path / "j.sqlite"), signer, tmp_path / "KILL",
                 w3s={"localnet": Web3(Web3.HTTPProvider(localnet.rpc_url))}, registry=CollectorRegistry())


def test_a_flash_loan_on_a_plain_account_is_refused(
    localnet: Localnet, chain: LocalChain, tmp_path: Path
) -> None:
    from tests.chain.execution_support import plain_leveraged_long

    policy = plain_leveraged_long(localnet, chain)
    executor = make_executor(localnet, policy, tmp_path)
    snapshot = read(policy)
    loan = Action("flash_loan", "localnet", "aave_v3", "USDC", 10**9, 1_000.0, "test")
    repay = Action("repay", "localnet", "aave_v3", "USDC", 10**9, 1_000.0, "test")
    back = Action("flash_repay", "localnet", "aave_v3", "USDC", 10**9 + 500_000, 0.0, "test")

    report = executor.execute_plan(plan(snapshot, loan, repay, back), snapshot, wait_s=1)

    assert any(r.rule == "allowlist" and "a flash loan needs a Safe with the keeper module" in r.reason
               for r in report.refusals)
    assert all(i.state == "failed" for i in report.intents)
