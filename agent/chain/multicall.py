"""Read many contract values in one `aggregate3` call, pinned to one block whose number, hash and time are known.

A snapshot of one chain costs two RPC requests however many values it reads: the latest block header, then one
`eth_call` of Multicall3 at that block. The block number read inside the batch proves the pinning held."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from agent.chain.abi import Function, load_abi

MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"
_MULTICALL = load_abi("multicall3", "Multicall3")
_AGGREGATE3 = _MULTICALL.fn("aggregate3")
_GET_BLOCK_NUMBER = _MULTICALL.fn("getBlockNumber")


@dataclass(frozen=True)
class Call:
    """One read in a batch: `source` names the adapter and value that asked, for error reports."""

    source: str
    target: str
    function: Function
    args: tuple[Any, ...] = ()
    allow_failure: bool = True
    # Turns the decoded results into the adapter's value; the default keeps a single result bare.
    convert: Callable[[tuple[Any, ...]], Any] | None = None

    def decode(self, data: bytes) -> Any:
        values = self.function.decode(data)
        if self.convert is not None:
            return self.convert(values)
        return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class CallResult:
    """The outcome of one call: its value, or the reason it has none."""

    call: Call
    ok: bool
    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class Block:
    """The block a batch was read at."""

    number: int
    hash: str
    timestamp: int
    base_fee_wei: int


class PinningLost(RuntimeError):
    """The node answered the batch from another block than the one asked for."""


def read_batch(w3: Web3, calls: Sequence[Call], block: Block | None = None) -> tuple[Block, list[CallResult]]:
    """Return the block and every call's result, all read in one `aggregate3` at that block.

    A call that reverts or does not decode gives a failed `CallResult` naming its source; the others still count.
    """
    if block is None:
        header = w3.eth.get_block("latest")
        block = Block(
            int(header["number"]), Web3.to_hex(header["hash"]), int(header["timestamp"]),
            int(header.get("baseFeePerGas", 0)),
        )
    requests = [(MULTICALL3_ADDRESS, False, _GET_BLOCK_NUMBER.encode())]
    requests += [(Web3.to_checksum_address(c.target), c.allow_failure, c.function.encode(*c.args)) for c in calls]
    raw = w3.eth.call(
        {"to": MULTICALL3_ADDRESS, "data": Web3.to_hex(_AGGREGATE3.encode(requests))}, block_identifier=block.number
    )
    (outcomes,) = _AGGREGATE3.decode(raw)
    read_at = _GET_BLOCK_NUMBER.decode(outcomes[0][1])[0]
    if read_at != block.number:
        raise PinningLost(f"asked for block {block.number}, the batch was read at {read_at}")
    return block, [_result(call, ok, data) for call, (ok, data) in zip(calls, outcomes[1:], strict=True)]


def _result(call: Call, ok: bool, data: bytes) -> CallResult:
    if not ok:
        return CallResult(call, False, error=f"{call.source}: call reverted")
    try:
        return CallResult(call, True, call.decode(data))
    except Exception as exc:  # any decode failure is reported against the adapter that asked
        return CallResult(call, False, error=f"{call.source}: cannot decode {call.function.name}: {exc}")
