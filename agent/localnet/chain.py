"""A thin transaction helper for building the local world with anvil's unlocked dev accounts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError

from agent.localnet.anvil import LocalnetError
from agent.localnet.artifacts import artifact

# anvil's default dev mnemonic: its keys are public knowledge and fund nothing outside a local chain.
DEV_MNEMONIC = "test test test test test test test test test test test junk"


@dataclass(frozen=True)
class DevAccount:
    """A funded anvil dev account. Its key is public: local chain only."""

    address: str
    private_key: str


def dev_accounts(count: int) -> list[DevAccount]:
    """Return anvil's first `count` dev accounts, derived from its default mnemonic."""
    Account.enable_unaudited_hdwallet_features()
    accounts = []
    for index in range(count):
        acct = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
        accounts.append(DevAccount(acct.address, "0x" + acct.key.hex().removeprefix("0x")))
    return accounts


class LocalChain:
    """Deploys contracts and sends transactions from unlocked dev accounts, failing loudly on any revert.

    With `gas` and `gas_price_wei` set, transactions go out without a gas estimate or a fee lookup (how the world
    is built fast: a revert is then explained by replaying the call)."""

    def __init__(self, w3: Web3, gas: int | None = None, gas_price_wei: int | None = None) -> None:
        self.w3 = w3
        self._fixed = {"gas": gas, "gasPrice": gas_price_wei} if gas and gas_price_wei else {}
        self._contracts: dict[tuple[str, str], Contract] = {}  # web3 takes ~10 ms to build one from its ABI

    def deploy(self, name: str, *args: Any, sender: str, libraries: dict[str, str] | None = None) -> Contract:
        """Deploy the named artifact (linking `libraries`) and return it bound to its address."""
        art = artifact(name)
        factory = self.w3.eth.contract(abi=art.abi, bytecode=art.linked(libraries or {}))
        constructor = factory.constructor(*args)
        receipt = self._mined(constructor.transact({"from": sender, **self._fixed}), f"deploy {name}")
        return self.at(name, receipt["contractAddress"])

    def at(self, name: str, address: str) -> Contract:
        """Return the named artifact's contract at `address`."""
        key = (name, Web3.to_checksum_address(address))
        if key not in self._contracts:
            self._contracts[key] = self.w3.eth.contract(address=key[1], abi=artifact(name).abi)
        return self._contracts[key]

    def send(self, call: Any, sender: str, value: int = 0) -> dict[str, Any]:
        """Send a contract function call from `sender` and return its receipt."""
        label = f"{call.address[:10]}….{call.fn_name}"
        return self._mined(call.transact({"from": sender, "value": value, **self._fixed}), label)

    def _mined(self, tx_hash: HexBytes, label: str) -> dict[str, Any]:
        receipt = dict(self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.01))
        if receipt["status"] != 1:
            raise LocalnetError(f"{label} reverted{self._reason(receipt)} (tx {Web3.to_hex(tx_hash)})")
        return receipt

    def _reason(self, receipt: dict[str, Any]) -> str:
        """Return ": <revert reason>" from replaying a reverted transaction at its block's parent, if it says one."""
        tx = self.w3.eth.get_transaction(receipt["transactionHash"])
        replay = {"from": tx["from"], "to": tx.get("to"), "data": tx["input"], "value": tx["value"], "gas": tx["gas"]}
        try:
            self.w3.eth.call(replay, receipt["blockNumber"] - 1)  # type: ignore[arg-type]
        except ContractLogicError as error:
            return f": {error.message}"
        return ""
