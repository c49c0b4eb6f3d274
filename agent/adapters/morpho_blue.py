"""Morpho Blue: the account's position in each configured market, with the market's parameters, its totals (interest
accrued to the block) and its oracle's price, all in the cycle's one block-pinned batch; and the calls that change a
position (supply and withdraw collateral, borrow, repay by assets or by shares)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import encode
from web3 import Web3

from agent.adapters import failed_calls
from agent.adapters.erc20 import ERC20, TokenRegistry
from agent.chain.abi import load_abi
from agent.chain.multicall import MULTICALL3_ADDRESS, Block, Call, CallResult, read_batch
from agent.errors import UserInputError
from agent.model import Action, DataProblem, MorphoPosition, Reading, Token, TxRequest
from agent.risk.morpho import health_factor_wad

MORPHO = load_abi("morpho_blue", "Morpho")
ORACLE = load_abi("morpho_blue", "Oracle")
_AGGREGATE3 = load_abi("multicall3", "Multicall3").fn("aggregate3")
_CALLS = 5  # reads per market in `calls()`


def _accrued_market(values: tuple[Any, ...]) -> tuple[int, ...]:
    """The `market` totals from the nested aggregate3 of accrueInterest and market."""
    (results,) = values
    return MORPHO.fn("market").decode(results[1][1])


@dataclass(frozen=True)
class MarketParams:
    """A Morpho Blue market's immutable parameters; its id is the keccak-256 of their ABI encoding."""

    loan_token: str
    collateral_token: str
    oracle: str
    irm: str
    lltv_wad: int

    def as_tuple(self) -> tuple[str, str, str, str, int]:
        """The `MarketParams` struct as Morpho's functions take it."""
        return (self.loan_token, self.collateral_token, self.oracle, self.irm, self.lltv_wad)

    @classmethod
    def decoded(cls, value: tuple[str, str, str, str, int]) -> MarketParams:
        """The parameters from `idToMarketParams`' result."""
        loan, collateral, oracle, irm, lltv = value
        checksummed = Web3.to_checksum_address
        return cls(checksummed(loan), checksummed(collateral), checksummed(oracle), checksummed(irm), int(lltv))

    @property
    def id(self) -> str:
        """The market id, 0x-hex (Morpho's MarketParamsLib.id)."""
        return market_id(self)


def market_id(params: MarketParams) -> str:
    """Return the id Morpho gives the market with these parameters: keccak256(abi.encode(params)), 0x-hex."""
    encoded = encode(["address", "address", "address", "address", "uint256"], list(params.as_tuple()))
    return Web3.to_hex(Web3.keccak(encoded))


@dataclass(frozen=True)
class _Market:
    params: MarketParams
    loan: Token
    collateral: Token


class MorphoBlue:
    """One account's positions in the policy's Morpho Blue markets."""

    name = "morpho_blue"

    def __init__(self, chain: str, account: str, morpho: str, market_ids: Sequence[str], tokens: TokenRegistry) -> None:
        self.chain = chain
        self.account = Web3.to_checksum_address(account)
        self.morpho = Web3.to_checksum_address(morpho)
        self.market_ids = tuple(m.lower() for m in market_ids)
        self.token_registry = tokens
        self.markets: tuple[_Market, ...] = ()

    @property
    def tokens(self) -> tuple[Token, ...]:
        return tuple(t for m in self.markets for t in (m.loan, m.collateral))

    def discover(self, w3: Web3) -> None:
        """Read each market's parameters (fixed at creation) and its tokens. Raises UserInputError (one line) for an
        id Morpho does not know or a contract that is not Morpho."""
        _b, results = read_batch(w3, [
            Call(f"morpho_blue:{m}:idToMarketParams", self.morpho, MORPHO.fn("idToMarketParams"),
                 (bytes.fromhex(m[2:]),), allow_failure=False) for m in self.market_ids
        ])
        if not all(r.ok for r in results):
            raise UserInputError(f"{self.chain}: {self.morpho} does not answer as Morpho Blue (idToMarketParams)")
        params = [MarketParams.decoded(r.value) for r in results]
        for wanted, p in zip(self.market_ids, params, strict=True):
            if p.lltv_wad == 0 or p.id != wanted:
                raise UserInputError(f"{self.chain}: Morpho Blue at {self.morpho} has no market {wanted}")
        tokens = self.token_registry.resolve(w3, [a for p in params for a in (p.loan_token, p.collateral_token)])
        self.markets = tuple(_Market(p, tokens[p.loan_token], tokens[p.collateral_token]) for p in params)

    def calls(self) -> list[Call]:
        calls = []
        for m in self.markets:
            market, params = bytes.fromhex(m.params.id[2:]), m.params.as_tuple()
            source = f"morpho_blue:{m.collateral.symbol}/{m.loan.symbol}"
            # `accrueInterest` then `market` in one nested aggregate3 (inside the read-only eth_call): the totals then
            # include interest to the block, the debt Morpho itself checks a liquidation against, and no batch split
            # can separate the two.
            accrued = ((self.morpho, False, MORPHO.fn("accrueInterest").encode(params)),
                       (self.morpho, False, MORPHO.fn("market").encode(market)))
            calls += [
                Call(f"{source}:idToMarketParams", self.morpho, MORPHO.fn("idToMarketParams"), (market,)),
                Call(f"{source}:accruedMarket", MULTICALL3_ADDRESS, _AGGREGATE3, (accrued,), convert=_accrued_market),
                Call(f"{source}:position", self.morpho, MORPHO.fn("position"), (market, self.account)),
                Call(f"{source}:price", m.params.oracle, ORACLE.fn("price")),
                Call(f"{source}:flashLiquidity", m.loan.address, ERC20.fn("balanceOf"), (self.morpho,)),
            ]
        return calls

    def decode(self, results: Sequence[CallResult], block: Block) -> Reading:
        positions, problems = [], list(failed_calls(self.chain, results))
        for index, m in enumerate(self.markets):
            part = results[_CALLS * index:_CALLS * index + _CALLS]
            if not all(r.ok for r in part):
                continue  # an unaccrued or partial market would misstate the debt: reported above, not guessed
            params, market, position, price, liquidity = (r.value for r in part)
            if MarketParams.decoded(params) != m.params:
                problems.append(DataProblem(self.chain, part[0].call.source, "mismatch",
                                            f"market {m.params.id} parameters changed since discovery"))
                continue
            _supply_shares, borrow_shares, collateral = position
            if borrow_shares == collateral == 0:
                continue
            read = MorphoPosition(
                chain=self.chain, account=self.account, morpho=self.morpho, market_id=m.params.id,
                loan_token=m.loan, collateral_token=m.collateral, oracle=m.params.oracle, irm=m.params.irm,
                lltv_wad=m.params.lltv_wad, collateral_base_units=int(collateral), borrow_shares=int(borrow_shares),
                total_borrow_assets=int(market[2]), total_borrow_shares=int(market[3]), oracle_price_1e36=int(price),
                flash_liquidity_base_units=int(liquidity),
            )
            positions.append(dataclasses.replace(read, reported_health_factor_wad=health_factor_wad(read)))
        return Reading(positions=tuple(positions), problems=tuple(problems))


    def market_params(self, market_id: str) -> MarketParams:
        """Return a configured market's parameters by its id (0x-hex). KeyError when it is not configured."""
        for m in self.markets:
            if m.params.id == market_id.lower():
                return m.params
        raise KeyError(f"Morpho Blue market {market_id} is not in the policy")

    def encode_action(self, action: Action, account: str) -> TxRequest:
        """Return the call for a Morpho action of `account` (on behalf of and to itself) in market
        `action.position_id` (the market id as an integer): "supply" and "withdraw" move collateral, "borrow" and
        "repay" move `amount_base_units` of the loan token, "repay_shares" repays that many borrow shares."""
        params = self.market_params(f"0x{action.position_id:064x}")
        amount = action.amount_base_units
        if action.kind == "supply":
            return encode_supply_collateral(self.chain, self.morpho, params, amount, account)
        if action.kind == "withdraw":
            return encode_withdraw_collateral(self.chain, self.morpho, params, amount, account, account)
        if action.kind == "borrow":
            return encode_borrow(self.chain, self.morpho, params, amount, account, account)
        if action.kind == "repay":
            return encode_repay(self.chain, self.morpho, params, account, assets=amount)
        if action.kind == "repay_shares":
            return encode_repay(self.chain, self.morpho, params, account, shares=amount)
        raise ValueError(f"no Morpho Blue call for action kind {action.kind!r}")

    def call_rules(self) -> dict[tuple[str, bytes], tuple[int, int]]:
        """Return the keeper module's rule of each Morpho call a recipe may make, (Morpho, selector) → (safe_args,
        spender_args): the market's parameters are a static tuple (ABI words 0–4), so `onBehalf` of
        supplyCollateral is word 6, of withdrawCollateral 6 (and `receiver` 7), of borrow 7 (`receiver` 8), of
        repay 7 — each must be the account."""
        words = {"supplyCollateral": (6,), "withdrawCollateral": (6, 7), "borrow": (7, 8), "repay": (7,)}
        return {(self.morpho, MORPHO.fn(name).selector): (sum(1 << w for w in bits), 0)
                for name, bits in words.items()}

    def approval(self, action: Action) -> tuple[Token, str, int] | None:
        """Return (token, spender, amount) of the allowance a Morpho action spends, or None: collateral for a
        supply, the loan token for a repay (for shares: the action's `max_amount_in_base_units`)."""
        market = next(m for m in self.markets if m.params.id == f"0x{action.position_id:064x}")
        if action.kind == "supply":
            return market.collateral, self.morpho, action.amount_base_units
        if action.kind == "repay":
            return market.loan, self.morpho, action.amount_base_units
        if action.kind == "repay_shares":
            return market.loan, self.morpho, action.max_amount_in_base_units
        return None


def _request(chain: str, morpho: str, data: bytes, description: str) -> TxRequest:
    return TxRequest(chain, Web3.to_checksum_address(morpho), data, description=f"morpho_blue {description}")


def encode_supply_collateral(chain: str, morpho: str, params: MarketParams, assets: int, on_behalf: str) -> TxRequest:
    """Returns `supplyCollateral(params, assets, onBehalf, "")`; needs an approval of `assets` of the collateral
    token to Morpho."""
    data = MORPHO.fn("supplyCollateral").encode(params.as_tuple(), assets, on_behalf, b"")
    return _request(chain, morpho, data, f"supply collateral {assets}")


def encode_withdraw_collateral(
    chain: str, morpho: str, params: MarketParams, assets: int, on_behalf: str, receiver: str
) -> TxRequest:
    """Returns `withdrawCollateral(params, assets, onBehalf, receiver)` (the sender must be `on_behalf` or
    authorised by it)."""
    data = MORPHO.fn("withdrawCollateral").encode(params.as_tuple(), assets, on_behalf, receiver)
    return _request(chain, morpho, data, f"withdraw collateral {assets}")


def encode_borrow(
    chain: str, morpho: str, params: MarketParams, assets: int, on_behalf: str, receiver: str
) -> TxRequest:
    """Returns `borrow(params, assets, 0, onBehalf, receiver)`: `assets` of the loan token, shares rounded up."""
    data = MORPHO.fn("borrow").encode(params.as_tuple(), assets, 0, on_behalf, receiver)
    return _request(chain, morpho, data, f"borrow {assets}")


def encode_repay(
    chain: str, morpho: str, params: MarketParams, on_behalf: str, *, assets: int = 0, shares: int = 0
) -> TxRequest:
    """Returns `repay(params, assets, shares, onBehalf, "")` with exactly one of `assets` and `shares` non-zero: a
    full repay names the position's shares, so that interest accrued meanwhile cannot leave dust. Needs an approval
    of the loan token to Morpho covering the assets (for shares: their value rounded up, plus a margin for accrual).
    """
    if (assets == 0) == (shares == 0):
        raise ValueError("repay needs exactly one of assets and shares")
    data = MORPHO.fn("repay").encode(params.as_tuple(), assets, shares, on_behalf, b"")
    return _request(chain, morpho, data, f"repay {assets} assets" if assets else f"repay {shares} shares")
