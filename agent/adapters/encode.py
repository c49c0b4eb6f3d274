"""Actions into transactions: the call data of every action kind the planner may choose, and the ERC-20 approval
an action needs first. Adapters own the ABIs, so this is where the executor's calls are encoded and decoded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from eth_abi import decode
from web3 import Web3

from agent.adapters.aave_v3 import POOL
from agent.adapters.erc20 import ERC20
from agent.adapters.options import OptionsVenue
from agent.adapters.perps import PerpVenue
from agent.adapters.uniswap_v3 import MANAGER
from agent.chain.abi import load_abi
from agent.model import Action, Token, TxRequest

ROUTER = load_abi("uniswap_v3", "SwapRouter")
VARIABLE_RATE = 2
MAX_UINT128 = 2**128 - 1
_APPROVE = ERC20.fn("approve")
_V = TypeVar("_V")


class EncodeError(ValueError):
    """An action that cannot be encoded: an unknown kind, asset or venue. The message says which."""


@dataclass(frozen=True)
class Venues:
    """One chain's contracts an account acts through, and the tokens it knows (by symbol and by address)."""

    chain: str
    account: str
    aave_pool: str | None = None
    swap_router: str | None = None
    position_manager: str | None = None
    tokens: tuple[Token, ...] = field(default_factory=tuple)
    perps: PerpVenue | None = None  # the perp venue's adapter (its market is a protocol contract)
    options: OptionsVenue | None = None  # the options venue's adapter

    def token(self, asset: str) -> Token:
        """Returns the token an action names by symbol or address. Raises EncodeError when unknown."""
        for token in self.tokens:
            if asset in (token.symbol, token.address) or asset.lower() == token.address.lower():
                return token
        raise EncodeError(f"unknown asset {asset!r} on chain {self.chain}")

    def contracts(self) -> frozenset[str]:
        """Returns the checksummed addresses of the protocol contracts (not the tokens)."""
        venues = (self.perps.market if self.perps else None, self.options.market if self.options else None)
        return frozenset(a for a in (self.aave_pool, self.swap_router, self.position_manager, *venues) if a)


def _required(address: str | None, what: str, chain: str) -> str:
    if not address:
        raise EncodeError(f"no {what} configured on chain {chain}")
    return address


def encode_supply(venues: Venues, asset: Token, amount: int) -> TxRequest:
    """Returns Aave `Pool.supply(asset, amount, account, 0)`; needs an approval of `amount` to the pool."""
    pool = _required(venues.aave_pool, "Aave v3 pool", venues.chain)
    data = POOL.fn("supply").encode(asset.address, amount, venues.account, 0)
    return TxRequest(venues.chain, pool, data, description=f"aave_v3 supply {amount} {asset.symbol}")


def encode_withdraw(venues: Venues, asset: Token, amount: int) -> TxRequest:
    """Returns Aave `Pool.withdraw(asset, amount, account)`."""
    pool = _required(venues.aave_pool, "Aave v3 pool", venues.chain)
    data = POOL.fn("withdraw").encode(asset.address, amount, venues.account)
    return TxRequest(venues.chain, pool, data, description=f"aave_v3 withdraw {amount} {asset.symbol}")


def encode_borrow(venues: Venues, asset: Token, amount: int) -> TxRequest:
    """Returns Aave `Pool.borrow(asset, amount, variable, 0, account)`."""
    pool = _required(venues.aave_pool, "Aave v3 pool", venues.chain)
    data = POOL.fn("borrow").encode(asset.address, amount, VARIABLE_RATE, 0, venues.account)
    return TxRequest(venues.chain, pool, data, description=f"aave_v3 borrow {amount} {asset.symbol}")


def encode_repay(venues: Venues, asset: Token, amount: int) -> TxRequest:
    """Returns Aave `Pool.repay(asset, amount, variable, account)`; needs an approval of `amount` to the pool."""
    pool = _required(venues.aave_pool, "Aave v3 pool", venues.chain)
    data = POOL.fn("repay").encode(asset.address, amount, VARIABLE_RATE, venues.account)
    return TxRequest(venues.chain, pool, data, description=f"aave_v3 repay {amount} {asset.symbol}")


def encode_swap(
    venues: Venues, token_in: Token, token_out: Token, fee_pips: int, amount_in: int, min_amount_out: int,
    deadline_ts: int,
) -> TxRequest:
    """Returns Uniswap v3 `SwapRouter.exactInputSingle` paying `amount_in` of `token_in` for at least
    `min_amount_out` of `token_out`, to the account; needs an approval of `amount_in` to the router."""
    router = _required(venues.swap_router, "Uniswap v3 swap router", venues.chain)
    data = ROUTER.fn("exactInputSingle").encode(
        (token_in.address, token_out.address, fee_pips, venues.account, deadline_ts, amount_in, min_amount_out, 0)
    )
    what = f"uniswap_v3 swap {amount_in} {token_in.symbol} for ≥{min_amount_out} {token_out.symbol}"
    return TxRequest(venues.chain, router, data, description=what)


def encode_remove_liquidity(
    venues: Venues, token_id: int, liquidity: int, min_amounts: tuple[int, int], deadline_ts: int
) -> tuple[TxRequest, TxRequest]:
    """Returns `NonfungiblePositionManager.decreaseLiquidity` (paying at least `min_amounts` of token0 and token1,
    base units) and `collect` of everything owed to the account: two calls, so that a keeper module can check each
    (a `multicall` hides its calls from the module's rules)."""
    manager = _required(venues.position_manager, "Uniswap v3 position manager", venues.chain)
    decrease = MANAGER.fn("decreaseLiquidity").encode((token_id, liquidity, *min_amounts, deadline_ts))
    collect = MANAGER.fn("collect").encode((token_id, venues.account, MAX_UINT128, MAX_UINT128))
    return (
        TxRequest(venues.chain, manager, decrease, description=f"uniswap_v3 decrease position {token_id} by "
                  f"{liquidity} liquidity for ≥{min_amounts[0]}/≥{min_amounts[1]}"),
        TxRequest(venues.chain, manager, collect, description=f"uniswap_v3 collect position {token_id}"),
    )


def encode_approve(chain: str, token: Token, spender: str, amount: int) -> TxRequest:
    """Returns ERC-20 `approve(spender, amount)` on `token`."""
    return TxRequest(chain, token.address, _APPROVE.encode(spender, amount),
                     description=f"approve {amount} {token.symbol} to {spender}")


def decode_approve(data: bytes) -> tuple[str, int] | None:
    """Returns (spender, amount) when `data` is an ERC-20 `approve` call, else None."""
    if data[:4] != _APPROVE.selector:
        return None
    spender, amount = decode(["address", "uint256"], data[4:])
    return Web3.to_checksum_address(spender), int(amount)


def encode_action(
    action: Action, venues: Venues, deadline_ts: int, removal_minimums: tuple[int, int] | None = None
) -> tuple[TxRequest, ...]:
    """Returns the calls that carry out `action`, in order (one, or two for a liquidity removal, whose minimum
    token amounts are `removal_minimums`). A flash loan's bracket has none: the account's executor wraps the
    recipe in the loan. Raises EncodeError for an unknown kind or asset."""
    kind = action.kind
    if kind in ("supply", "withdraw", "borrow", "repay"):
        asset = venues.token(action.asset)
        encoder = {"supply": encode_supply, "withdraw": encode_withdraw, "borrow": encode_borrow,
                   "repay": encode_repay}[kind]
        return (encoder(venues, asset, action.amount_base_units),)
    if kind == "swap":
        return (encode_swap(venues, venues.token(action.asset), venues.token(action.asset_out), action.fee_pips,
                            action.amount_base_units, action.min_amount_out_base_units, deadline_ts),)
    if kind == "remove_liquidity":
        if removal_minimums is None:
            raise EncodeError("a liquidity removal needs its minimum token amounts")
        return encode_remove_liquidity(venues, action.position_id, action.amount_base_units, removal_minimums,
                                       deadline_ts)
    if kind in ("flash_loan", "flash_repay"):
        return ()
    return (_encode_venue_trade(action, venues),)


def _encode_venue_trade(action: Action, venues: Venues) -> TxRequest:
    """The call of a perp or options venue trade or margin move."""
    kind = action.kind
    if kind in ("perp", "perp_deposit", "perp_withdraw"):
        perps = _venue(venues.perps, "perp venue", venues.chain)
        if kind == "perp":
            if action.amount_base_units == 0 or action.acceptable_price_1e18 <= 0:
                raise EncodeError("a perp trade needs a non-zero size and an acceptable price")
            return perps.encode_modify_position(action.amount_base_units, action.acceptable_price_1e18)
        if kind == "perp_deposit":
            return perps.encode_deposit_margin(action.amount_base_units)
        return perps.encode_withdraw_margin(action.amount_base_units)
    if kind in ("option_buy", "option_sell"):
        options = _venue(venues.options, "options venue", venues.chain)
        if kind == "option_buy":
            if action.max_amount_in_base_units <= 0:
                raise EncodeError("an option purchase needs a maximum cost")
            return options.encode_buy(action.position_id, action.amount_base_units, action.max_amount_in_base_units)
        return options.encode_sell(action.position_id, action.amount_base_units, action.min_amount_out_base_units)
    raise EncodeError(f"no encoder for action kind {kind!r}")


def _venue(venue: _V | None, what: str, chain: str) -> _V:
    if venue is None:
        raise EncodeError(f"no {what} configured on chain {chain}")
    return venue


def approval_needed(action: Action, venues: Venues) -> tuple[Token, str, int] | None:
    """Returns (token, spender, amount) of the allowance `action` spends, or None when it spends none."""
    if action.kind in ("supply", "repay"):
        return venues.token(action.asset), _required(venues.aave_pool, "Aave v3 pool", venues.chain), \
            action.amount_base_units
    if action.kind == "swap":
        return venues.token(action.asset), _required(venues.swap_router, "Uniswap v3 swap router", venues.chain), \
            action.amount_base_units
    if action.kind == "perp_deposit":
        perps = _venue(venues.perps, "perp venue", venues.chain)
        return venues.token(action.asset), perps.market, action.amount_base_units
    if action.kind == "option_buy":
        options = _venue(venues.options, "options venue", venues.chain)
        if options.quote_token is None:
            raise EncodeError(f"the options venue on chain {venues.chain} has no quote token")
        return options.quote_token, options.market, action.max_amount_in_base_units
    return None


CallRules = dict[tuple[str, bytes], tuple[int, int]]
"""(checksummed target, 4-byte selector) → (safe_args, spender_args): bit i of the first says ABI word i of the
arguments must be the account, bit i of the second that it must be a spender (the keeper module's encoding)."""


def _bits(*words: int) -> int:
    return sum(1 << word for word in set(words))


def call_rules(venues: Venues) -> CallRules:
    """Returns every call a recipe may make on one chain, with the arguments that must name the account or a
    spender: Aave's supply/repay/withdraw/borrow (beneficiary the account), the router's swap (recipient), the
    position manager's decrease and collect (recipient), the venues' trades (the caller is the account), and each
    token's `approve` (spender)."""
    rules: CallRules = {}
    if venues.aave_pool:
        pool = Web3.to_checksum_address(venues.aave_pool)
        for name, word in (("supply", 2), ("repay", 3), ("withdraw", 2), ("borrow", 4)):
            rules[(pool, POOL.fn(name).selector)] = (_bits(word), 0)
    if venues.swap_router:
        rules[(Web3.to_checksum_address(venues.swap_router), ROUTER.fn("exactInputSingle").selector)] = (_bits(3), 0)
    if venues.position_manager:
        manager = Web3.to_checksum_address(venues.position_manager)
        rules[(manager, MANAGER.fn("decreaseLiquidity").selector)] = (0, 0)
        rules[(manager, MANAGER.fn("collect").selector)] = (_bits(1), 0)
    trades: list[TxRequest] = []
    if venues.perps is not None:
        trades += [venues.perps.encode_modify_position(0, 0), venues.perps.encode_deposit_margin(0),
                   venues.perps.encode_withdraw_margin(0)]
    if venues.options is not None:
        trades += [venues.options.encode_buy(0, 0, 0), venues.options.encode_sell(0, 0, 0)]
    for trade in trades:
        rules[(Web3.to_checksum_address(trade.to), trade.data[:4])] = (0, 0)
    for token in venues.tokens:
        rules[(Web3.to_checksum_address(token.address), _APPROVE.selector)] = (0, _bits(0))
    return rules


def spenders(venues: Venues) -> frozenset[str]:
    """Returns who an approval may name: the Aave pool, the swap router and the venues' markets (checksummed)."""
    named = (venues.aave_pool, venues.swap_router, venues.perps.market if venues.perps else None,
             venues.options.market if venues.options else None)
    return frozenset(Web3.to_checksum_address(a) for a in named if a)


def read_allowance(w3: Web3, token: Token, owner: str, spender: str, block: int | str = "latest") -> int:
    """Returns `token.allowance(owner, spender)` at `block`, in the token's base units."""
    fn = ERC20.fn("allowance")
    at: Any = block
    raw = w3.eth.call({"to": token.address, "data": Web3.to_hex(fn.encode(owner, spender))}, block_identifier=at)
    return int(fn.decode(raw)[0])
