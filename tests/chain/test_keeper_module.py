"""The Ballast keeper module on the demo Safes (real Safe 1.4.1, Aave v3, Uniswap v3): a keeper can run recipes of
the allowed calls and nothing else, every refusal has its reason code, a failed recipe changes nothing, and a
flash-loan deleverage is one transaction that raises the health factor."""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from agent.adapters.safe import (
    encode_execute,
    encode_execute_with_flash_loan,
    read_module_config,
    refusal,
    revert_code,
)
from agent.chain.abi import ABI_DIR
from agent.localnet import Localnet
from agent.localnet.artifacts import artifact
from agent.localnet.chain import LocalChain
from agent.localnet.keeper import HEALTH_FACTOR_FLOOR_WAD
from agent.localnet.readback import aave_account
from agent.localnet.safe import exec_as_owner
from agent.model import TxRequest

USDC, WAD = 10**6, 10**18
VARIABLE = 2
SENTINEL_MODULES = "0x0000000000000000000000000000000000000001"


class Book:
    """A demo portfolio's Safe, its module and keeper, and the world's contracts, for building recipes by hand."""

    def __init__(self, localnet: Localnet, chain: LocalChain, name: str) -> None:
        self.localnet, self.chain, self.w3 = localnet, chain, chain.w3
        self.account = localnet.demo_portfolios[name]
        self.safe, self.module, self.keeper = self.account.address, self.account.module, self.account.keeper
        self.keeper_key = localnet.keeper_key(name)
        contracts = localnet.world.contracts
        self.pool = chain.at("Pool", contracts["Pool"])
        self.router = chain.at("SwapRouter", contracts["SwapRouter"])
        self.tokens = {s: chain.at("MintableERC20", a) for s, a in localnet.world.tokens.items()}
        self.module_contract = chain.at("BallastKeeperModule", self.module)

    def call(self, contract: Contract, fn: str, *args: Any) -> TxRequest:
        return TxRequest("localnet", contract.address, bytes.fromhex(contract.encode_abi(fn, list(args))[2:]))

    def deadline(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"]) + 600

    def swap(self, token_in: str, token_out: str, amount_in: int, min_out: int, recipient: str) -> TxRequest:
        return self.call(self.router, "exactInputSingle", (
            self.tokens[token_in].address, self.tokens[token_out].address, 500, recipient, self.deadline(),
            amount_in, min_out, 0))

    def refused(self, tx: TxRequest, sender: str | None = None) -> str | None:
        """Return the revert reason of `tx` sent by the keeper (or `sender`), as a code where it is one."""
        try:
            self.w3.eth.call({"from": sender or self.keeper, "to": tx.to, "data": Web3.to_hex(tx.data)})
        except ContractLogicError as error:
            return revert_code(error) or str(error.message)
        return None

    def send(self, tx: TxRequest, gas: int | None = None, key: str | None = None) -> dict[str, Any]:
        """Sign `tx` with the keeper's key (or `key`) and send it with `gas`, or the estimate plus a quarter (a
        block later the Safe's interest and funding have moved); return the receipt, reverted or not."""
        signer = Account.from_key(key or self.keeper_key)
        request = {"from": signer.address, "to": tx.to, "data": Web3.to_hex(tx.data)}
        base_fee = int(self.w3.eth.get_block("latest")["baseFeePerGas"])
        fields = {**request, "nonce": self.w3.eth.get_transaction_count(signer.address),
                  "chainId": self.w3.eth.chain_id, "gas": gas or self.w3.eth.estimate_gas(request) * 5 // 4,  # type: ignore[arg-type]
                  "maxFeePerGas": 2 * base_fee + 10**9, "maxPriorityFeePerGas": 10**9}
        signed = signer.sign_transaction(fields)
        return dict(self.w3.eth.wait_for_transaction_receipt(self.w3.eth.send_raw_transaction(signed.raw_transaction)))

    def health_factor(self) -> int:
        return aave_account(self.chain, self.pool.address, self.safe).health_factor_wad

    def as_owner(self, contract: Contract, fn: str, *args: Any) -> None:
        exec_as_owner(self.chain, self.safe, self.account.owner, contract.address, contract.encode_abi(fn, list(args)))


@pytest.fixture
def long_book(localnet: Localnet, chain: LocalChain) -> Book:
    return Book(localnet, chain, "leveraged-long")


@pytest.fixture
def lp_book(localnet: Localnet, chain: LocalChain) -> Book:
    return Book(localnet, chain, "delta-neutral-lp")


def assert_refused(book: Book, calls: list[TxRequest], code: str) -> None:
    """The module refuses the recipe with `code`, signed with the keeper's key it reverts on chain, and the
    adapter's own check of the calls says the same."""
    recipe = encode_execute(book.module, calls, deleverage=False)
    assert book.refused(recipe) == code
    assert book.send(recipe, gas=3_000_000)["status"] == 0
    config = read_module_config(book.w3, book.safe, book.module, book.keeper, calls)
    assert next((r for r in (refusal(config, c) for c in calls) if r), None) == code


def test_committed_abis_match_the_compiled_module_and_the_safe_artifact() -> None:
    compiled = artifact("BallastKeeperModule").abi
    committed = json.loads((ABI_DIR / "ballast" / "BallastKeeperModule.json").read_text())
    assert committed and all(entry in compiled for entry in committed)
    assert {e["name"] for e in committed} >= {"execute", "executeWithFlashLoan", "keepers", "callRule", "spenders",
                                              "flashLenders", "aavePool", "healthFactorFloor", "safe"}
    safe = json.loads((ABI_DIR / "safe" / "Safe.json").read_text())
    assert safe and all(entry in artifact("Safe").abi for entry in safe)


def test_keeper_cannot_move_usdc_out_of_the_safe(lp_book: Book) -> None:
    usdc = lp_book.tokens["USDC"]
    assert usdc.functions.balanceOf(lp_book.safe).call() > 1_000 * USDC  # the LP's idle USDC is there to steal
    assert_refused(lp_book, [lp_book.call(usdc, "transfer", lp_book.keeper, 1_000 * USDC)], "BK010")
    assert_refused(lp_book, [lp_book.call(usdc, "transferFrom", lp_book.safe, lp_book.keeper, 1_000 * USDC)],
                   "BK010")


def test_keeper_cannot_approve_an_outside_spender(lp_book: Book) -> None:
    usdc = lp_book.tokens["USDC"]
    assert_refused(lp_book, [lp_book.call(usdc, "approve", lp_book.keeper, 1_000 * USDC)], "BK012")
    # an allowed spender passes the same rule
    assert lp_book.refused(encode_execute(lp_book.module, [lp_book.call(usdc, "approve", lp_book.pool.address, 1)],
                                          False)) is None


def test_keeper_cannot_withdraw_collateral_or_borrow_to_itself(long_book: Book) -> None:
    weth, usdc = long_book.tokens["WETH"].address, long_book.tokens["USDC"].address
    assert_refused(long_book, [long_book.call(long_book.pool, "withdraw", weth, WAD, long_book.keeper)], "BK011")
    assert_refused(long_book, [long_book.call(long_book.pool, "borrow", usdc, 100 * USDC, VARIABLE, 0,
                                              long_book.keeper)], "BK011")
    # supply and repay on behalf of someone else are bound to the Safe as well
    assert_refused(long_book, [long_book.call(long_book.pool, "repay", usdc, 1, VARIABLE, long_book.keeper)],
                   "BK011")


def test_keeper_cannot_swap_or_collect_to_itself(lp_book: Book, localnet: Localnet) -> None:
    usdc = lp_book.tokens["USDC"]
    calls = [lp_book.call(usdc, "approve", lp_book.router.address, 1_000 * USDC),
             lp_book.swap("USDC", "WETH", 1_000 * USDC, 0, lp_book.keeper)]
    assert_refused(lp_book, calls, "BK011")
    to_safe = [calls[0], lp_book.swap("USDC", "WETH", 1_000 * USDC, 0, lp_book.safe)]
    assert lp_book.refused(encode_execute(lp_book.module, to_safe, False)) is None
    # the LP's fees and withdrawn liquidity go to the Safe only
    manager = lp_book.chain.at("NonfungiblePositionManager", localnet.world.contracts["NonfungiblePositionManager"])
    token_id, most = localnet.lp_token_ids["delta-neutral-lp"], 2**128 - 1
    assert_refused(lp_book, [lp_book.call(manager, "collect", (token_id, lp_book.keeper, most, most))], "BK011")
    assert lp_book.refused(encode_execute(lp_book.module, [
        lp_book.call(manager, "collect", (token_id, lp_book.safe, most, most))], False)) is None


def test_recipe_that_leaves_the_health_factor_under_the_floor_reverts(long_book: Book) -> None:
    usdc = long_book.tokens["USDC"].address
    # 61,000 USDC more: Aave still lends it (HF ≈ 1.04 > 1), the module's floor of 1.05 does not
    borrow = long_book.call(long_book.pool, "borrow", usdc, 61_000 * USDC, VARIABLE, 0, long_book.safe)
    assert long_book.refused(encode_execute(long_book.module, [borrow], False)) == "BK030"
    small = long_book.call(long_book.pool, "borrow", usdc, 1_000 * USDC, VARIABLE, 0, long_book.safe)
    assert long_book.refused(encode_execute(long_book.module, [small], False)) is None
    # a borrow flagged as a deleverage lowers the health factor: refused too
    assert long_book.refused(encode_execute(long_book.module, [small], True)) == "BK031"
    assert long_book.module_contract.functions.healthFactorFloor().call() == HEALTH_FACTOR_FLOOR_WAD


def test_keeper_cannot_use_the_safe_itself(long_book: Book, localnet: Localnet) -> None:
    safe = long_book.chain.at("Safe", long_book.safe)
    # Safe.execTransaction with the keeper's own pre-validated signature: the keeper is no owner
    signature = bytes.fromhex(long_book.keeper[2:].rjust(64, "0")) + bytes(32) + b"\x01"
    add_owner = safe.encode_abi("addOwnerWithThreshold", [long_book.keeper, 1])
    direct = long_book.call(safe, "execTransaction", safe.address, 0, bytes.fromhex(add_owner[2:]), 0, 0, 0, 0,
                            "0x" + "00" * 20, "0x" + "00" * 20, signature)
    assert long_book.refused(direct) == "GS026"
    # a recipe whose call targets the Safe (or the module)
    assert_refused(long_book, [TxRequest("localnet", safe.address, bytes.fromhex(add_owner[2:]))], "BK013")
    assert_refused(long_book, [long_book.call(long_book.module_contract, "setKeeper", localnet.accounts[5].address,
                                              True)], "BK013")


@pytest.mark.parametrize("fn, args", [
    ("setKeeper", ("0x" + "11" * 20, True)),
    ("setCall", ("0x" + "11" * 20, b"\xa9\x05\x9c\xbb", 0, 0)),
    ("removeCall", ("0x" + "11" * 20, b"\x09\x5e\xa7\xb3")),
    ("setSpender", ("0x" + "11" * 20, True)),
    ("setFlashLender", ("0x" + "11" * 20, 1)),
    ("setHealthCheck", ("0x" + "00" * 20, 0)),
])
def test_keeper_cannot_configure_the_module(long_book: Book, fn: str, args: tuple[Any, ...]) -> None:
    call = long_book.call(long_book.module_contract, fn, *(Web3.to_checksum_address(a) if isinstance(a, str) else a
                                                           for a in args))
    assert long_book.refused(call) == "BK002"
    assert long_book.refused(call, sender=long_book.account.owner) == "BK002"  # the owner's key is no Safe either


def test_flash_loan_callbacks_refuse_any_caller_but_the_loan_in_flight(long_book: Book, localnet: Localnet) -> None:
    usdc = long_book.tokens["USDC"].address
    params = b"\x00" * 64
    callback = long_book.call(long_book.module_contract, "executeOperation", usdc, 1_000 * USDC, 0, long_book.module,
                              params)
    assert long_book.refused(callback) == "BK040"
    assert long_book.refused(long_book.call(long_book.module_contract, "onMorphoFlashLoan", 1_000 * USDC, params)) \
        == "BK040"
    # a loan someone else takes from Aave with the module as receiver: the initiator is not the module
    outside = long_book.call(long_book.pool, "flashLoanSimple", long_book.module, usdc, 1_000 * USDC, params, 0)
    assert long_book.refused(outside, sender=localnet.accounts[5].address) == "BK040"
    # and a lender the owner did not allow
    assert long_book.refused(encode_execute_with_flash_loan(
        long_book.module, localnet.accounts[5].address, usdc, 1, [long_book.call(long_book.tokens["USDC"], "approve",
                                                                                 long_book.pool.address, 0)],
        True)) == "BK041"


def small_recipe(book: Book) -> TxRequest:
    usdc = book.tokens["USDC"].address
    return encode_execute(book.module, [book.call(book.pool, "borrow", usdc, 100 * USDC, VARIABLE, 0, book.safe)],
                          False)


def test_owner_removing_the_keeper_stops_its_recipes(long_book: Book) -> None:
    assert long_book.send(small_recipe(long_book))["status"] == 1
    long_book.as_owner(long_book.module_contract, "setKeeper", long_book.keeper, False)
    assert long_book.refused(small_recipe(long_book)) == "BK001"


def test_owner_removing_an_allowed_call_stops_recipes_using_it(long_book: Book) -> None:
    pool = long_book.pool.address
    borrow = function_signature_to_4byte_selector("borrow(address,uint256,uint256,uint16,address)")
    assert long_book.module_contract.functions.callRule(pool, borrow).call() == [True, 1 << 4, 0]
    long_book.as_owner(long_book.module_contract, "removeCall", pool, borrow)
    assert long_book.refused(small_recipe(long_book)) == "BK010"
    long_book.as_owner(long_book.module_contract, "setCall", pool, borrow, 1 << 4, 0)
    assert long_book.refused(small_recipe(long_book)) is None


def test_owner_disabling_the_module_stops_every_recipe(long_book: Book) -> None:
    safe = long_book.chain.at("Safe", long_book.safe)
    long_book.as_owner(safe, "disableModule", SENTINEL_MODULES, long_book.module)
    assert not safe.functions.isModuleEnabled(long_book.module).call()
    assert long_book.refused(small_recipe(long_book)) == "GS104"


def safe_state(book: Book) -> dict[str, Any]:
    """Everything a recipe could change about the Safe, in amounts that do not move with time: balances, Aave
    supplies and debts as scaled balances (interest accrues between blocks, scaled balances only change by a
    transaction), allowances to every spender and to the keeper, the LP positions, the perp position's size and
    margin, and what the module holds."""
    contracts = book.localnet.world.contracts
    spenders = [contracts[n] for n in ("Pool", "SwapRouter", "PerpMarket", "OptionsMarket",
                                        "NonfungiblePositionManager")] + [book.keeper, book.module]
    manager = book.chain.at("NonfungiblePositionManager", contracts["NonfungiblePositionManager"])
    positions = [manager.functions.positions(manager.functions.tokenOfOwnerByIndex(book.safe, i).call()).call()
                 for i in range(manager.functions.balanceOf(book.safe).call())]
    reserves = {s: book.pool.functions.getReserveData(t.address).call() for s, t in book.tokens.items()}
    return {
        "balances": {s: t.functions.balanceOf(book.safe).call() for s, t in book.tokens.items()},
        "supplied": {s: book.chain.at("AToken", r[8]).functions.scaledBalanceOf(book.safe).call()
                     for s, r in reserves.items()},
        "debts": {s: book.chain.at("VariableDebtToken", r[10]).functions.scaledBalanceOf(book.safe).call()
                  for s, r in reserves.items()},
        "allowances": {(s, a): t.functions.allowance(book.safe, a).call()
                       for s, t in book.tokens.items() for a in spenders},
        "positions": positions,
        "perp": book.chain.at("PerpMarket", contracts["PerpMarket"]).functions.position(book.safe).call()[:3],
        "module_balances": {s: t.functions.balanceOf(book.module).call() for s, t in book.tokens.items()},
    }


def test_recipe_that_fails_on_chain_leaves_the_safe_exactly_as_it_was(lp_book: Book) -> None:
    # given a recipe that borrows, approves and swaps, whose swap asks more than the pool pays
    usdc, amount = lp_book.tokens["USDC"], 5_000 * USDC
    calls = [lp_book.call(lp_book.pool, "borrow", usdc.address, amount, VARIABLE, 0, lp_book.safe),
             lp_book.call(usdc, "approve", lp_book.router.address, amount),
             lp_book.swap("USDC", "WETH", amount, 5 * WAD, lp_book.safe)]  # $5,000 buys ~2.5 WETH, not 5
    recipe = encode_execute(lp_book.module, calls, False)
    assert lp_book.refused(recipe) == "execution reverted: Too little received"
    before = safe_state(lp_book)

    # when the keeper sends it anyway (gas given: no estimate to stop it)
    receipt = lp_book.send(recipe, gas=2_000_000)

    # then it reverted on chain, and nothing of the Safe changed: not the borrow, not the approval
    assert receipt["status"] == 0
    assert safe_state(lp_book) == before


def test_flash_loan_deleverage_raises_the_health_factor_in_one_transaction(long_book: Book, localnet: Localnet) -> None:
    # given the looped long, with no USDC to repay from
    book, weth, usdc = long_book, long_book.tokens["WETH"], long_book.tokens["USDC"]
    assert usdc.functions.balanceOf(book.safe).call() == 0
    hf_before, before = book.health_factor(), safe_state(book)
    premium_bps = book.pool.functions.FLASHLOAN_PREMIUM_TOTAL().call()
    assert premium_bps == 5

    # when the keeper flash-borrows 30,000 USDC, repays, withdraws WETH, swaps it to USDC with an on-chain minimum
    # that covers the loan and its premium, and the module repays the loan
    loan = 30_000 * USDC
    owed = loan + loan * premium_bps // 10_000
    sold = owed * 10**12 // 2_000 * 101 // 100  # WETH at $2,000, plus 1% for the pool's fee and price impact
    calls = [book.call(usdc, "approve", book.pool.address, loan),
             book.call(book.pool, "repay", usdc.address, loan, VARIABLE, book.safe),
             book.call(book.pool, "withdraw", weth.address, sold, book.safe),
             book.call(weth, "approve", book.router.address, sold),
             book.swap("WETH", "USDC", sold, owed, book.safe)]
    recipe = encode_execute_with_flash_loan(book.module, book.pool.address, usdc.address, loan, calls, True)
    receipt = book.send(recipe)

    # then one keeper transaction, to the module, raised the health factor and repaid the debt
    assert receipt["status"] == 1 and receipt["to"] == book.module and receipt["from"] == book.keeper
    after = safe_state(book)
    assert book.health_factor() > hf_before
    index = book.pool.functions.getReserveNormalizedVariableDebt(usdc.address).call()
    assert after["debts"]["USDC"] == pytest.approx(before["debts"]["USDC"] - loan * 10**27 // index, abs=2)
    assert after["supplied"]["WETH"] < before["supplied"]["WETH"]
    # the swap's surplus stays in the Safe; no allowance is left, the module holds nothing
    assert 0 <= after["balances"]["USDC"] < 1_000 * USDC
    assert set(after["allowances"].values()) == {0}
    assert set(after["module_balances"].values()) == {0}
    assert usdc.functions.allowance(book.module, book.pool.address).call() == 0
    event = book.module_contract.events.RecipeExecuted().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (event["keeper"], event["calls"]) == (book.keeper, len(calls))
    # (the health factor before, a block later, has accrued a little interest)
    assert event["healthFactorBefore"] == pytest.approx(hf_before, rel=1e-6)
    assert event["healthFactorAfter"] == book.health_factor() > event["healthFactorBefore"]
    print(f"\nflash-loan deleverage recipe: gas {receipt['gasUsed']:,}, HF {hf_before / WAD:.4f} → "
          f"{book.health_factor() / WAD:.4f}")
