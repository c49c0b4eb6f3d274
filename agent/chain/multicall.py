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

    def decode(self, data: bytes, fast: bool = False) -> Any:
        """Return the call's value; `fast` reads static results word by word (`Function.decode_fast`)."""
        values = self.function.decode_fast(data) if fast else self.function.decode(data)
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


LATEST_ATTEMPTS = 3


class PinningLost(RuntimeError):
    """The node answered the batch from another block than the one asked for."""


def read_batch(w3: Web3, calls: Sequence[Call], block: Block | None = None) -> tuple[Block, list[CallResult]]:
    """Return the block and every call's result, all read in one `aggregate3` at that block (by default the
    latest: when the node answers from a newer one, the batch is read again at the new latest, up to
    `LATEST_ATTEMPTS` times — venue discovery meeting a new block is no error).

    A call that reverts or does not decode gives a failed `CallResult` naming its source; the others still count.
    Raises PinningLost when the node answered from another block than the one asked for.
    """
    if block is None:
        for _attempt in range(LATEST_ATTEMPTS - 1):
            try:
                return read_batch(w3, calls, latest_block(w3))
            except PinningLost:
                continue
        block = latest_block(w3)
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


def _result(call: Call, ok: bool, data: bytes, fast: bool = False) -> CallResult:
    if not ok:
        return CallResult(call, False, error=f"{call.source}: call reverted")
    try:
        return CallResult(call, True, call.decode(data, fast))
    except Exception as exc:  # any decode failure is reported against the adapter that asked
        return CallResult(call, False, error=f"{call.source}: cannot decode {call.function.name}: {exc}")


# --- Hand-written aggregate3 codec for fleet-sized batches --------------------------------------------------------
# eth-abi spends ~10 µs per element on a `(address,bool,bytes)[]`; a thousand portfolios put tens of thousands of
# elements in one batch every block, so the two fixed shapes of aggregate3 are encoded and decoded directly.

_WORD = 32
_AGGREGATE3_SELECTOR = _AGGREGATE3.selector
_TRUE_WORD = (1).to_bytes(_WORD, "big")
_FALSE_WORD = bytes(_WORD)
_BYTES_OFFSET_WORD = (3 * _WORD).to_bytes(_WORD, "big")


def encode_aggregate3(requests: Sequence[tuple[str, bool, bytes]]) -> bytes:
    """Return the call data of `aggregate3(requests)` (target, allowFailure, callData), byte for byte what eth-abi
    encodes."""
    heads, tails, offset = [], [], len(requests) * _WORD
    for target, allow_failure, data in requests:
        heads.append(offset.to_bytes(_WORD, "big"))
        padded = data + bytes(-len(data) % _WORD)
        tails += [bytes(12) + bytes.fromhex(target[2:]), _TRUE_WORD if allow_failure else _FALSE_WORD,
                  _BYTES_OFFSET_WORD, len(data).to_bytes(_WORD, "big"), padded]
        offset += 4 * _WORD + len(padded)
    return b"".join([_AGGREGATE3_SELECTOR, _WORD.to_bytes(_WORD, "big"), len(requests).to_bytes(_WORD, "big"),
                     *heads, *tails])


def decode_aggregate3(raw: bytes) -> list[tuple[bool, bytes]]:
    """Return the (success, returnData) pairs of an `aggregate3` answer; raises ValueError on malformed data."""
    view = memoryview(raw)

    def word(at: int) -> int:
        if at + _WORD > len(raw):
            raise ValueError("aggregate3 answer is truncated")
        return int.from_bytes(view[at:at + _WORD], "big")

    start = word(0)
    count = word(start)
    base = start + _WORD
    outcomes = []
    for i in range(count):
        element = base + word(base + i * _WORD)
        data_at = element + word(element + _WORD)
        length = word(data_at)
        if data_at + _WORD + length > len(raw):
            raise ValueError("aggregate3 answer is truncated")
        outcomes.append((word(element) == 1, bytes(view[data_at + _WORD:data_at + _WORD + length])))
    return outcomes


@dataclass(frozen=True)
class BatchLimits:
    """What one `eth_call` of a batch may hold: a node refuses larger requests (anvil's body limit is 2 MB of JSON,
    i.e. ~1 MB of call data; geth's 5 MB) or caps their gas (the block gas limit on anvil, `rpc.gascap` on geth,
    which `max_calls` stands in for). `gas` is the gas each batch asks for (None: the node's default)."""

    max_bytes: int = 900_000
    max_calls: int = 2_500
    gas: int | None = None


Request = tuple[str, bool, bytes]  # target, allowFailure, callData: one element of aggregate3


def split_requests(requests: Sequence[Request], limits: BatchLimits) -> list[list[Request]]:
    """Return `requests` in order, cut into the fewest batches within `limits` (one more call each: the pin)."""
    batches: list[list[Request]] = [[]]
    size = 0
    for request in requests:
        cost = 5 * _WORD + len(request[2]) + -len(request[2]) % _WORD  # head offset + element
        if batches[-1] and (size + cost > limits.max_bytes or len(batches[-1]) + 1 >= limits.max_calls):
            batches.append([])
            size = 0
        batches[-1].append(request)
        size += cost
    return batches


def pinned_batches(
    w3: Web3, requests: Sequence[tuple[str, bool, bytes]], block: Block, limits: BatchLimits,
    encoded: list[bytes] | None = None,
) -> list[tuple[bool, bytes]]:
    """Return every request's (success, returnData), read at `block` in as few `aggregate3` batches as `limits`
    allow (one `eth_call` each; the block number read inside each batch proves the pinning held).

    `encoded` holds the batches' call data from a previous call with the same requests (filled when empty), so an
    unchanged fleet is not re-encoded every block. Raises `PinningLost` when the node answered from another block.
    """
    if not encoded:
        pin = (MULTICALL3_ADDRESS, False, _GET_BLOCK_NUMBER.encode())
        encoded = encoded if encoded is not None else []
        encoded += [encode_aggregate3([pin, *batch]) for batch in split_requests(requests, limits)]
    outcomes: list[tuple[bool, bytes]] = []
    for data in encoded:
        call: dict[str, Any] = {"to": MULTICALL3_ADDRESS, "data": Web3.to_hex(data)}
        if limits.gas is not None:
            call["gas"] = limits.gas
        raw = w3.eth.call(call, block_identifier=block.number)  # type: ignore[arg-type]
        (pin_ok, pin_data), *rest = decode_aggregate3(bytes(raw))
        read_at = int.from_bytes(pin_data, "big") if pin_ok else None
        if read_at != block.number:
            raise PinningLost(f"asked for block {block.number}, the batch was read at {read_at}")
        outcomes += rest
    return outcomes


def latest_block(w3: Web3) -> Block:
    """Return the newest block's number, hash, time and base fee (one `eth_getBlockByNumber`)."""
    header = w3.eth.get_block("latest")
    return Block(int(header["number"]), Web3.to_hex(header["hash"]), int(header["timestamp"]),
                 int(header.get("baseFeePerGas", 0)))
