"""ERC-20 tokens: symbols and decimals (read once and cached), and the account's balances each cycle."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from web3 import Web3

from agent.adapters import failed_calls
from agent.chain.abi import load_abi
from agent.chain.multicall import Block, Call, CallResult, read_batch
from agent.model import Reading, Token, TokenBalance

ERC20 = load_abi("erc20", "ERC20")


class TokenRegistry:
    """Symbols and decimals of every token met on one chain, read in one batch per new set of tokens."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}

    def resolve(self, w3: Web3, addresses: Iterable[str]) -> dict[str, Token]:
        """Return the tokens at `addresses` (checksummed keys), reading the ones not seen before."""
        wanted = [Web3.to_checksum_address(a) for a in addresses]
        new = sorted({a for a in wanted if a not in self._tokens})
        if new:
            calls = [Call(f"erc20:{a}:{fn}", a, ERC20.fn(fn), allow_failure=False)
                     for a in new for fn in ("symbol", "decimals")]
            _block, results = read_batch(w3, calls)
            for index, address in enumerate(new):
                symbol, decimals = results[2 * index].value, results[2 * index + 1].value
                self._tokens[address] = Token(str(symbol), address, int(decimals))
        return {a: self._tokens[a] for a in wanted}


class Erc20Balances:
    """The account's balance of each token (idle funds the planner can repay or hedge with)."""

    name = "erc20"

    def __init__(self, chain: str, account: str, tokens: Sequence[Token]) -> None:
        self.chain = chain
        self.account = Web3.to_checksum_address(account)
        self.tokens = tuple(tokens)

    def discover(self, w3: Web3) -> None:
        """Nothing to discover: the tokens come resolved."""

    def calls(self) -> list[Call]:
        return [Call(f"erc20:{t.symbol}:balanceOf", t.address, ERC20.fn("balanceOf"), (self.account,))
                for t in self.tokens]

    def decode(self, results: Sequence[CallResult], block: Block) -> Reading:
        balances = tuple(
            TokenBalance(self.chain, self.account, token, int(r.value))
            for token, r in zip(self.tokens, results, strict=True) if r.ok
        )
        return Reading(balances=balances, problems=failed_calls(self.chain, results))
