"""Protocol adapters: the only code that knows protocol ABIs.

Every adapter follows one shape (a new protocol is one new module here and nothing else changes):
- `discover(w3)`: read once what does not change between cycles (addresses, reserve lists, decimals);
- `calls()`: the reads of one cycle, as Multicall3 calls;
- `decode(results, block)`: turn exactly those calls' results into a `Reading` of typed positions, prices and
  data problems;
- `encode_<action>(...)`: a `TxRequest` for each action the planner may choose (added with the executor).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

from web3 import Web3

from agent.chain.multicall import Block, Call, CallResult
from agent.model import DataProblem, Reading

if TYPE_CHECKING:
    from agent.adapters.erc20 import TokenRegistry
    from agent.model import Token


class Adapter(Protocol):
    """What every protocol adapter implements."""

    name: str

    def discover(self, w3: Web3) -> None: ...

    def calls(self) -> list[Call]: ...

    def decode(self, results: Sequence[CallResult], block: Block) -> Reading: ...


class VenueAdapter(Adapter, Protocol):
    """What a derivatives venue's adapter implements besides its trades: the adapter shape, read from one market
    contract on one chain."""

    chain: str
    market: str

    @property
    def wallet_tokens(self) -> tuple[Token, ...]:
        """The tokens the venue settles in (its margin or quote token, once discovered): the wallet balances a
        reader adds to the account's."""
        ...


def failed_calls(chain: str, results: Sequence[CallResult]) -> tuple[DataProblem, ...]:
    """Return a data problem for every call of `results` that failed."""
    return tuple(
        DataProblem(chain, r.call.source, "failed_call", r.error or "failed") for r in results if not r.ok
    )


class LocalVenue:
    """What the local reference derivatives venues (perps, options) share: one market contract on one chain, read
    for one account, on the underlying its feed prices, with the token registry that resolves its quote token."""

    name = "venue"
    venue = "local"

    def __init__(self, chain: str, account: str, market: str, underlying: str, tokens: TokenRegistry) -> None:
        self.chain = chain
        self.account = Web3.to_checksum_address(account)
        self.market: str = Web3.to_checksum_address(market)
        self.underlying = underlying
        self.token_registry = tokens


A = TypeVar("A")


def rebind(adapter: A, account: str) -> A:
    """Return a copy of a discovered adapter that reads `account` instead: what discovery found about the market
    (pool, reserves, feeds, listed series) is shared, only the account differs. An adapter without an account (price
    feeds) is returned as it is."""
    if not hasattr(adapter, "account"):
        return adapter
    bound = copy.copy(adapter)
    setattr(bound, "account", Web3.to_checksum_address(account))  # noqa: B010  # every account-bound adapter
    return bound
