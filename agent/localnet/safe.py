"""Safe 1.4.1 on the local chain: the singleton, proxy factory, MultiSendCallOnly and fallback handler from the npm
artifacts; one Safe per demo portfolio, owned by a dev key that is not the keeper's; and the owner's transactions
through it (pre-validated signature, batched with MultiSendCallOnly)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.packed import encode_packed
from hexbytes import HexBytes
from web3 import Web3

from agent.localnet.chain import LocalChain
from agent.localnet.world import World

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
CALL, DELEGATE_CALL = 0, 1


@dataclass(frozen=True)
class SafeAccount:
    """A Safe with one owner (threshold 1) and the Ballast keeper module it enabled."""

    address: str
    owner: str
    keeper: str
    module: str


def deploy_safe_contracts(chain: LocalChain, deployer: str, world: World) -> None:
    """Deploy the Safe 1.4.1 singleton, proxy factory, MultiSendCallOnly and fallback handler into `world`."""
    for name in ("Safe", "SafeProxyFactory", "MultiSendCallOnly", "CompatibilityFallbackHandler"):
        world.contracts[name] = chain.deploy(name, sender=deployer).address


def create_safe(chain: LocalChain, world: World, owner: str, salt: int) -> str:
    """Create a 1-of-1 Safe of `owner` through the proxy factory and return its address."""
    singleton = chain.at("Safe", world.contracts["Safe"])
    initializer = singleton.encode_abi("setup", [
        [owner], 1, ZERO_ADDRESS, b"", world.contracts["CompatibilityFallbackHandler"], ZERO_ADDRESS, 0, ZERO_ADDRESS,
    ])
    create = chain.at("SafeProxyFactory", world.contracts["SafeProxyFactory"]).functions.createProxyWithNonce(
        singleton.address, initializer, salt)
    address = Web3.to_checksum_address(create.call({"from": owner}))
    chain.send(create, owner)
    return address


def owner_signature(owner: str) -> bytes:
    """Return Safe's pre-validated signature of `owner`: r = the owner's address, s = 0, v = 1 (valid when the
    owner itself sends the transaction)."""
    return bytes.fromhex(owner[2:].rjust(64, "0")) + bytes(32) + b"\x01"


def exec_as_owner(chain: LocalChain, safe: str, owner: str, to: str, data: bytes | str,
                  operation: int = CALL) -> dict[str, Any]:
    """Make the Safe call `to` with `data` in a transaction its owner sends; return the receipt."""
    proxy = chain.at("Safe", safe)
    return chain.send(proxy.functions.execTransaction(
        to, 0, data, operation, 0, 0, 0, ZERO_ADDRESS, ZERO_ADDRESS, owner_signature(owner)), owner)


def exec_batch_as_owner(chain: LocalChain, world: World, safe: str, owner: str,
                        calls: Sequence[tuple[str, bytes | str]]) -> dict[str, Any]:
    """Make the Safe run `calls` ((target, data), in order, all or nothing) in one transaction of its owner,
    through MultiSendCallOnly; return the receipt."""
    packed = b"".join(
        encode_packed(["uint8", "address", "uint256", "uint256", "bytes"], [CALL, to, 0, len(raw), raw])
        for to, raw in ((to, bytes(HexBytes(data))) for to, data in calls)
    )
    multisend = chain.at("MultiSendCallOnly", world.contracts["MultiSendCallOnly"])
    return exec_as_owner(chain, safe, owner, multisend.address, multisend.encode_abi("multiSend", [packed]),
                         operation=DELEGATE_CALL)
