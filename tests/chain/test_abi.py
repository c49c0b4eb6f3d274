"""The agent's hand-picked ABIs encode and decode against the real contracts (in-process EVM: eth-tester)."""

from __future__ import annotations

from web3 import Web3

from agent.chain.abi import load_abi
from agent.localnet.artifacts import artifact


def deploy(w3: Web3, name: str, *args: object) -> str:
    art = artifact(name)
    tx = w3.eth.contract(abi=art.abi, bytecode=art.bytecode).constructor(*args).transact({"from": w3.eth.accounts[0]})
    return str(w3.eth.get_transaction_receipt(tx)["contractAddress"])


def call(w3: Web3, to: str, data: bytes) -> bytes:
    return bytes(w3.eth.call({"to": to, "data": Web3.to_hex(data)}))


def test_aggregator_v3_abi_reads_latest_round_data(tester_w3: Web3) -> None:
    feed = deploy(tester_w3, "LocalPriceFeed", 8, "WETH / USD", 2_000 * 10**8)
    aggregator = load_abi("chainlink", "AggregatorV3")
    setter = tester_w3.eth.contract(address=feed, abi=artifact("LocalPriceFeed").abi)
    setter.functions.setAnswerAt(1_234_5678_0000, 1_700_000_000).transact({"from": tester_w3.eth.accounts[0]})

    round_id, answer, started_at, updated_at, answered_in = aggregator.fn("latestRoundData").decode(
        call(tester_w3, feed, aggregator.fn("latestRoundData").encode()))

    assert (round_id, answer, updated_at, answered_in) == (2, 1_234_5678_0000, 1_700_000_000, 2)
    assert started_at == updated_at
    assert aggregator.fn("decimals").decode(call(tester_w3, feed, aggregator.fn("decimals").encode())) == (8,)


def test_erc20_abi_reads_symbol_decimals_and_balance(tester_w3: Web3) -> None:
    token = deploy(tester_w3, "MintableERC20", "USDC", "USDC", 6)
    holder = tester_w3.eth.accounts[1]
    minter = tester_w3.eth.contract(address=token, abi=artifact("MintableERC20").abi)
    minter.functions.mint(holder, 5 * 10**6).transact({"from": holder})
    erc20 = load_abi("erc20", "ERC20")

    def read(fn: str, *args: object) -> object:
        return erc20.fn(fn).decode(call(tester_w3, token, erc20.fn(fn).encode(*args)))[0]

    assert (read("symbol"), read("decimals"), read("balanceOf", holder)) == ("USDC", 6, 5 * 10**6)
    assert erc20.fn("approve").selector.hex() == "095ea7b3"  # approve(address,uint256)
