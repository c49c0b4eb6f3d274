"""The keeper module adapter without a chain: what it refuses to encode, and the reason codes it reads."""

from __future__ import annotations

import pytest
from eth_abi import decode

from agent.adapters.safe import MODULE, encode_execute, encode_execute_with_flash_loan, revert_code
from agent.model import TxRequest

MODULE_ADDRESS = "0x71C95911E9a5D330f4D621842EC243EE1343292e"
POOL = "0x2F438Ae3dd8442db8d91d942d0Da3bA048BC92A0"


def call(chain: str = "localnet", value_wei: int = 0) -> TxRequest:
    return TxRequest(chain, POOL, b"\x01\x02\x03\x04" + bytes(32), value_wei)


def test_execute_encodes_the_calls_in_order_for_the_module() -> None:
    first, second = call(), TxRequest("localnet", MODULE_ADDRESS.lower(), b"\xaa\xbb\xcc\xdd")
    tx = encode_execute(MODULE_ADDRESS, [first, second], deleverage=True)

    assert (tx.chain, tx.to, tx.value_wei) == ("localnet", MODULE_ADDRESS, 0)
    assert tx.data[:4] == MODULE.fn("execute").selector
    calls, deleverage = decode(["(address,bytes)[]", "bool"], tx.data[4:])
    assert deleverage is True
    assert [(target.lower(), data) for target, data in calls] == [(POOL.lower(), first.data),
                                                                  (MODULE_ADDRESS.lower(), second.data)]


def test_flash_loan_recipe_names_lender_asset_and_amount() -> None:
    tx = encode_execute_with_flash_loan(MODULE_ADDRESS, POOL, MODULE_ADDRESS, 30_000 * 10**6, [call()], True)
    lender, asset, amount, calls, deleverage = decode(
        ["address", "address", "uint256", "(address,bytes)[]", "bool"], tx.data[4:])
    assert tx.data[:4] == MODULE.fn("executeWithFlashLoan").selector
    assert (lender.lower(), asset.lower(), amount, len(calls), deleverage) == (
        POOL.lower(), MODULE_ADDRESS.lower(), 30_000 * 10**6, 1, True)


@pytest.mark.parametrize("calls, message", [
    ([call(value_wei=1)], "a recipe call carries no value"),
    ([call("localnet"), call("mainnet")], "a recipe runs on one chain, not ['localnet', 'mainnet']"),
    ([], "a recipe runs on one chain, not none"),
])
def test_recipe_that_the_module_cannot_run_is_refused_with_one_line(calls: list[TxRequest], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        encode_execute(MODULE_ADDRESS, calls, deleverage=False)


@pytest.mark.parametrize("text, code", [
    ("execution reverted: BK011", "BK011"),
    ("('execution reverted: GS104', '0x08c379a0…')", "GS104"),
    ("execution reverted: Too little received", None),
    ("execution reverted: BK0110", None),
])
def test_revert_code_reads_the_module_and_safe_reasons(text: str, code: str | None) -> None:
    assert revert_code(text) == code
    assert revert_code(RuntimeError(text)) == code
