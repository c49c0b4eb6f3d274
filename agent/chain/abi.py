"""The one ABI loader: `contracts_abi/<protocol>/<Contract>.json` holds exactly the functions the agent uses."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

# An installed wheel carries the ABIs as agent/contracts_abi/; a source checkout has them at the repository's top.
_PACKAGED_ABI_DIR = Path(__file__).resolve().parents[1] / "contracts_abi"
_REPO_ABI_DIR = Path(__file__).resolve().parents[2] / "contracts_abi"
ABI_DIR = Path(
    os.environ.get("BALLAST_ABI_DIR") or (_PACKAGED_ABI_DIR if _PACKAGED_ABI_DIR.is_dir() else _REPO_ABI_DIR)
)


def _type_of(param: dict[str, Any]) -> str:
    """Return the canonical ABI type of a parameter, spelling tuples out from their components."""
    kind: str = param["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(_type_of(c) for c in param["components"]) + ")" + kind[len("tuple"):]
    return kind


@dataclass(frozen=True)
class Function:
    """One contract function: its selector and argument/result types."""

    name: str
    input_types: tuple[str, ...]
    output_types: tuple[str, ...]

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(self.input_types)})"

    @property
    def selector(self) -> bytes:
        return function_signature_to_4byte_selector(self.signature)

    def encode(self, *args: Any) -> bytes:
        """Return the call data for these arguments."""
        return self.selector + encode(list(self.input_types), list(args))

    def decode(self, data: bytes) -> tuple[Any, ...]:
        """Return the decoded results of a successful call."""
        return tuple(decode(list(self.output_types), data))

    def decode_fast(self, data: bytes) -> tuple[Any, ...]:
        """Return what `decode` returns, reading static results (integers, bools, addresses and tuples of them)
        word by word; anything else, or data eth-abi would refuse, goes through `decode` for its exact answer."""
        readers = _static_readers(self.output_types)
        if readers is None or len(data) < 32 * len(readers):
            return self.decode(data)
        try:
            return _read_words(readers, data, 0)[0]
        except _NotStatic:
            return self.decode(data)


class _NotStatic(ValueError):
    """A word that eth-abi's strict decoder would refuse: let it say why."""


# A reader turns one 32-byte word into a value; a tuple of readers is a static tuple.
_Reader = Any


def _split_tuple(kind: str) -> list[str]:
    parts, depth, start = [], 0, 1
    for i, char in enumerate(kind[1:-1], start=1):
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            parts.append(kind[start:i])
            start = i + 1
    parts.append(kind[start:-1])
    return [p for p in parts if p]


def _word_reader(kind: str) -> _Reader | None:
    if kind.startswith("(") and kind.endswith(")"):
        inner = [_word_reader(k) for k in _split_tuple(kind)]
        return None if any(r is None for r in inner) else tuple(inner)
    if kind == "bool":
        return _bool
    if kind == "address":
        return _address
    for prefix, signed in (("uint", False), ("int", True)):
        bits = kind.removeprefix(prefix)
        if bits != kind and (bits == "" or bits.isdigit()):
            return _integer(int(bits or 256), signed)
    return None


@cache
def _static_readers(types: tuple[str, ...]) -> tuple[_Reader, ...] | None:
    readers = tuple(_word_reader(k) for k in types)
    return None if any(r is None for r in readers) else readers


def _read_words(readers: tuple[_Reader, ...], data: bytes, at: int) -> tuple[tuple[Any, ...], int]:
    values = []
    for reader in readers:
        if isinstance(reader, tuple):
            value, at = _read_words(reader, data, at)
        else:
            value = reader(data[at:at + 32])
            at += 32
        values.append(value)
    return tuple(values), at


@cache
def _integer(bits: int, signed: bool) -> _Reader:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1)) if signed else (0, 2**bits)

    def read(word: bytes) -> int:
        value = int.from_bytes(word, "big", signed=signed)
        if not low <= value < high:  # dirty padding: eth-abi refuses it
            raise _NotStatic(word)
        return value

    return read


def _bool(word: bytes) -> bool:
    value = int.from_bytes(word, "big")
    if value > 1:
        raise _NotStatic(word)
    return value == 1


def _address(word: bytes) -> str:
    if any(word[:12]):
        raise _NotStatic(word)
    return "0x" + word[12:].hex()  # lower case, as eth-abi returns it


@dataclass(frozen=True)
class ContractAbi:
    """A contract's ABI: its functions by name (the first overload; the agent's ABIs have none)."""

    name: str
    entries: tuple[dict[str, Any], ...]

    def fn(self, name: str) -> Function:
        for entry in self.entries:
            if entry.get("type") == "function" and entry["name"] == name:
                return Function(
                    name,
                    tuple(_type_of(p) for p in entry["inputs"]),
                    tuple(_type_of(p) for p in entry.get("outputs", [])),
                )
        raise KeyError(f"{self.name} has no function {name!r} in {ABI_DIR}")

    @property
    def abi(self) -> list[dict[str, Any]]:
        return list(self.entries)


@cache
def load_abi(protocol: str, contract: str) -> ContractAbi:
    """Return the ABI of `contract` from `contracts_abi/<protocol>/<contract>.json`."""
    path = ABI_DIR / protocol / f"{contract}.json"
    return ContractAbi(contract, tuple(json.loads(path.read_text())))
