"""Protocol adapters: the only code that knows protocol ABIs.

Every adapter follows one shape (a new protocol is one new module here and nothing else changes):
- `discover(w3)`: read once what does not change between cycles (addresses, reserve lists, decimals);
- `calls()`: the reads of one cycle, as Multicall3 calls;
- `decode(results, block)`: turn exactly those calls' results into a `Reading` of typed positions, prices and
  data problems;
- `encode_<action>(...)`: a `TxRequest` for each action the planner may choose (added with the executor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from web3 import Web3

from agent.chain.multicall import Block, Call, CallResult
from agent.model import DataProblem, Reading


class Adapter(Protocol):
    """What every protocol adapter implements."""

    name: str

    def discover(self, w3: Web3) -> None: ...

    def calls(self) -> list[Call]: ...

    def decode(self, results: Sequence[CallResult], block: Block) -> Reading: ...


def failed_calls(chain: str, results: Sequence[CallResult]) -> tuple[DataProblem, ...]:
    """Return a data problem for every call of `results` that failed."""
    return tuple(
        DataProblem(chain, r.call.source, "failed_call", r.error or "failed") for r in results if not r.ok
    )
