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
