"""Seed the local world: protocol liquidity from the deployer, and the demo portfolios of DESIGN.md, each built by
its account's own calls (from a dev account directly, or through the portfolio's Safe)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from web3.contract import Contract

from agent.localnet.chain import LocalChain
from agent.localnet.safe import exec_batch_as_owner
from agent.localnet.world import MAX_UINT256, RESERVES, TICK_SPACING, World, tick_for_weth_price

VARIABLE_RATE = 2
LP_FEE = 500
SPENT = "0x000000000000000000000000000000000000dEaD"  # where a loop's borrowed funds go: they bought its collateral

# What the deployer supplies to Aave so that the demo accounts can borrow (whole tokens).
AAVE_LIQUIDITY = {"WETH": 5_000, "USDC": 20_000_000, "WBTC": 200}
# What the liquidator account holds to repay others' debt (whole tokens).
LIQUIDATOR_FUNDS = {"WETH": 1_000, "USDC": 5_000_000}


@dataclass(frozen=True)
class DemoPortfolio:
    """How a demo portfolio is built: Aave supply and borrow (optionally looped), an optional LP range around the
    price, a perp hedge and a protective put."""

    name: str
    supply: tuple[str, int]  # symbol, whole tokens the account starts with
    borrow: tuple[str, float]  # symbol, whole tokens borrowed in all
    loop_rounds: tuple[float, ...] = ()  # the borrow in rounds, each swapped to the supply token and supplied
    lp_range_usd: tuple[float, float] | None = None  # WETH price range of the LP position
    extra_mint: tuple[str, int] | None = None  # tokens the LP needs besides the borrowed ones
    lp_extra_weth: float = 0.0  # WETH the LP holds besides the borrowed (hedged by the perp short)
    perp_margin_usdc: int = 0  # margin deposited in the perp market (minted, whole USDC)
    perp_size_weth: float = 0.0  # the perp position opened (signed, + long)
    protective_put: tuple[int, int, float] | None = None  # (strike USD, days to expiry, WETH) paid from the borrow
    emode_category: int = 0  # the Aave e-mode category the account enters before borrowing
    borrowed_spent: bool = False  # the borrow paid for the supply (a loop built with a flash loan): it is sent away


# leveraged-long: a looped long with no idle funds. 52 WETH supplied; 70,000 USDC borrowed, of which ~$1.5k buy a
# protective 30-day $1,800 put on 20 WETH and the rest is swapped to WETH and supplied; 27,000 more USDC borrowed,
# swapped and supplied. About 100 WETH ($200k) against 97,000 USDC: HF ≈ 200,000·0.825 / 97,000 ≈ 1.70, and a
# deleverage has to flash-borrow the USDC it repays.
# delta-neutral-lp: 200,000 USDC against 43 WETH ($86k) → HF = 200,000·0.78 / 86,000 ≈ 1.81; the 43 WETH and
# USDC go into a 1,600–2,500 range whose geometric middle is the price, so the LP's WETH offsets the debt; 5 more
# WETH in the range are hedged by a 5 WETH perp short (10,000 USDC margin: liquidated only above ~$3,800).
# lst-loop: 100 WSTETH ($230k) in the ETH e-mode (LT 95%) against 101.16 WETH → HF = 218,500 / 202,320 ≈ 1.080: an
# ETH crash moves both sides alike, a WSTETH depeg of 8% leaves HF ≈ 0.994, liquidatable. At 93% LTV a loop this
# deep takes a flash loan to build (or some twenty rounds): the borrowed WETH is what bought the WSTETH, and leaves.
# cross-protocol: looped on both protocols, no idle funds. On Aave 40 WETH supplied, 48,000 USDC borrowed, swapped
# to WETH and supplied: ≈ 64 WETH against 48,000 USDC, HF ≈ 2.2; its Morpho position (localnet/morpho.py) is the
# riskier one, health ≈ 1.6, so a 15% fall breaches the band on Morpho only.
DEMO_PORTFOLIOS = (
    DemoPortfolio("leveraged-long", supply=("WETH", 52), borrow=("USDC", 97_000), loop_rounds=(70_000, 27_000),
                  protective_put=(1_800, 30, 20.0)),
    DemoPortfolio(
        "delta-neutral-lp", supply=("USDC", 200_000), borrow=("WETH", 43),
        lp_range_usd=(1_600.0, 2_500.0), extra_mint=("USDC", 112_000), lp_extra_weth=5.0,
        perp_margin_usdc=10_000, perp_size_weth=-5.0,
    ),
    DemoPortfolio("lst-loop", supply=("WSTETH", 100), borrow=("WETH", 101.16), emode_category=1,
                  borrowed_spent=True),
    DemoPortfolio("cross-protocol", supply=("WETH", 40), borrow=("USDC", 48_000), loop_rounds=(48_000,)),
)

# A contract function the account calls: (contract, function name, arguments).
AccountCall = tuple[Contract, str, list[Any]]
# Makes the account run calls in order (directly, or in one transaction through its Safe); returns the receipts.
AccountRunner = Callable[[list[AccountCall]], list[dict[str, Any]]]


def token_units(symbol: str, amount: float) -> int:
    """Return `amount` tokens of the local world's reserve `symbol` in base units."""
    decimals = next(reserve.decimals for reserve in RESERVES if reserve.symbol == symbol)
    return round(amount * 10**decimals)


def seed_liquidity(chain: LocalChain, world: World, deployer: str, liquidator: str) -> None:
    """Supply lending liquidity to Aave from the deployer, and fund the liquidator account."""
    pool = chain.at("Pool", world.contracts["Pool"])
    for symbol, amount in AAVE_LIQUIDITY.items():
        token = chain.at("MintableERC20", world.tokens[symbol])
        chain.send(token.functions.mint(deployer, token_units(symbol, amount)), deployer)
        chain.send(token.functions.approve(pool.address, MAX_UINT256), deployer)
        chain.send(pool.functions.supply(token.address, token_units(symbol, amount), deployer, 0), deployer)
    for symbol, amount in LIQUIDATOR_FUNDS.items():
        token = chain.at("MintableERC20", world.tokens[symbol])
        chain.send(token.functions.mint(liquidator, token_units(symbol, amount)), liquidator)
        chain.send(token.functions.approve(pool.address, MAX_UINT256), liquidator)


def direct_runner(chain: LocalChain, account: str) -> AccountRunner:
    """Return a runner that sends each call from `account` (an unlocked dev account), one transaction each."""
    return lambda calls: [chain.send(getattr(c.functions, fn)(*args), account) for c, fn, args in calls]


def safe_runner(chain: LocalChain, world: World, safe: str, owner: str) -> AccountRunner:
    """Return a runner that makes `safe` run the calls in one transaction of its owner (MultiSendCallOnly)."""
    return lambda calls: [exec_batch_as_owner(
        chain, world, safe, owner, [(c.address, c.encode_abi(fn, args)) for c, fn, args in calls])]


def seed_portfolio(chain: LocalChain, world: World, demo: DemoPortfolio, account: str,
                   run: AccountRunner | None = None, minter: str | None = None) -> int | None:
    """Build one demo portfolio on `account` (its calls made by `run`, by default sent from `account` itself; the
    tokens it starts with minted in transactions of `minter`, by default `account`); return the LP position's token
    id, if it has one. Every approval is exact: none is left standing."""
    run, minter = run or direct_runner(chain, account), minter or account
    pool = chain.at("Pool", world.contracts["Pool"])
    (supply_symbol, supply_amount), (borrow_symbol, borrow_amount) = demo.supply, demo.borrow
    supply_token = chain.at("MintableERC20", world.tokens[supply_symbol])
    chain.send(supply_token.functions.mint(account, token_units(supply_symbol, supply_amount)), minter)
    rounds = demo.loop_rounds or (borrow_amount,)
    first: list[AccountCall] = [
        (supply_token, "approve", [pool.address, token_units(supply_symbol, supply_amount)]),
        (pool, "supply", [supply_token.address, token_units(supply_symbol, supply_amount), account, 0]),
        *([(pool, "setUserEMode", [demo.emode_category])] if demo.emode_category else []),
        (pool, "borrow",
         [world.tokens[borrow_symbol], token_units(borrow_symbol, rounds[0]), VARIABLE_RATE, 0, account]),
    ]
    if demo.borrowed_spent:
        borrowed = chain.at("MintableERC20", world.tokens[borrow_symbol])
        first.append((borrowed, "transfer", [SPENT, token_units(borrow_symbol, rounds[0])]))
    run(first + _derivative_calls(chain, world, demo, account, minter))
    for next_round in [*rounds[1:], None] if demo.loop_rounds else []:
        _loop_round(chain, world, demo, account, run, next_round)
    return _mint_lp(chain, world, demo, account, run, minter) if demo.lp_range_usd else None


def _loop_round(chain: LocalChain, world: World, demo: DemoPortfolio, account: str, run: AccountRunner,
                next_borrow: float | None) -> None:
    """Swap all the borrowed token the account holds to the supply token (at most 1% under the feed), supply
    it, and borrow `next_borrow` more (if any)."""
    pool, router = chain.at("Pool", world.contracts["Pool"]), chain.at("SwapRouter", world.contracts["SwapRouter"])
    (supply_symbol, _), (borrow_symbol, _) = demo.supply, demo.borrow
    supply_token, borrow_token = (chain.at("MintableERC20", world.tokens[s]) for s in (supply_symbol, borrow_symbol))
    amount_in = borrow_token.functions.balanceOf(account).call()
    price = {r.symbol: r.price_usd for r in RESERVES}
    fair_out = token_units(supply_symbol, float(price[borrow_symbol] / price[supply_symbol]) * amount_in
                      / 10 ** next(r.decimals for r in RESERVES if r.symbol == borrow_symbol))
    deadline = chain.w3.eth.get_block("latest")["timestamp"] + 600
    run([(borrow_token, "approve", [router.address, amount_in]),
         (router, "exactInputSingle", [(borrow_token.address, supply_token.address, LP_FEE, account, deadline,
                                        amount_in, fair_out * 99 // 100, 0)])])
    bought = supply_token.functions.balanceOf(account).call()
    calls: list[AccountCall] = [(supply_token, "approve", [pool.address, bought]),
                                (pool, "supply", [supply_token.address, bought, account, 0])]
    if next_borrow:
        calls.append((pool, "borrow", [borrow_token.address, token_units(borrow_symbol, next_borrow), VARIABLE_RATE, 0,
                                       account]))
    run(calls)


def _mint_lp(chain: LocalChain, world: World, demo: DemoPortfolio, account: str, run: AccountRunner,
             minter: str) -> int:
    """Mint the LP range from what the account holds (borrowed WETH plus the extras); return its token id."""
    for symbol, amount in [("WETH", demo.lp_extra_weth), demo.extra_mint or ("USDC", 0)]:
        if amount:
            chain.send(chain.at("MintableERC20", world.tokens[symbol]).functions.mint(
                account, token_units(symbol, amount)), minter)
    manager = chain.at("NonfungiblePositionManager", world.contracts["NonfungiblePositionManager"])
    tokens = sorted((chain.at("MintableERC20", world.tokens[s]) for s in ("WETH", "USDC")),
                    key=lambda t: int(t.address, 16))
    desired = [t.functions.balanceOf(account).call() for t in tokens]
    spacing = TICK_SPACING[LP_FEE]
    ticks = sorted(tick_for_weth_price(price, world, spacing) for price in demo.lp_range_usd or ())
    receipts = run([
        *((t, "approve", [manager.address, amount]) for t, amount in zip(tokens, desired, strict=True)),
        (manager, "mint", [(tokens[0].address, tokens[1].address, LP_FEE, ticks[0], ticks[1], *desired, 0, 0,
                            account, 2**64)]),
        *((t, "approve", [manager.address, 0]) for t in tokens),  # what the mint left unspent
    ])
    transfer_topic = chain.w3.keccak(text="Transfer(address,address,uint256)")
    for log in (log for receipt in receipts for log in receipt["logs"]):
        if log["address"] == manager.address and log["topics"][0] == transfer_topic:
            return int.from_bytes(log["topics"][3], "big")
    raise AssertionError("NonfungiblePositionManager.mint emitted no Transfer")


def _derivative_calls(chain: LocalChain, world: World, demo: DemoPortfolio, account: str,
                      minter: str) -> list[AccountCall]:
    """Return the calls that open the demo portfolio's perp hedge (minted margin, filled within 1% of the feed)
    and buy its protective put (paid from the borrowed USDC, at the venue's quote)."""
    usdc = chain.at("MintableERC20", world.tokens["USDC"])
    calls: list[AccountCall] = []
    if demo.perp_margin_usdc:
        perp = chain.at("PerpMarket", world.contracts["PerpMarket"])
        margin = token_units("USDC", demo.perp_margin_usdc)
        chain.send(usdc.functions.mint(account, margin), minter)
        calls += [(usdc, "approve", [perp.address, margin]), (perp, "depositMargin", [margin])]
        if demo.perp_size_weth:
            size = token_units("WETH", demo.perp_size_weth)
            bound = perp.functions.oraclePrice().call() * (100 + (1 if size > 0 else -1)) // 100
            calls.append((perp, "modifyPosition", [size, bound]))
    if demo.protective_put:
        strike, days, amount = demo.protective_put
        options = chain.at("OptionsMarket", world.contracts["OptionsMarket"])
        series_id = option_series_id(chain, world, False, strike, days)
        units = token_units("WETH", amount)
        # The quote at this block bounds the cost; the fill a block later, nearer expiry, costs a little less.
        cost = options.functions.quoteBuy(series_id, units).call()
        calls += [(usdc, "approve", [options.address, cost]), (options, "buy", [series_id, units, cost]),
                  (usdc, "approve", [options.address, 0])]
    return calls


def option_series_id(chain: LocalChain, world: World, is_call: bool, strike_usd: int, days: int) -> int:
    """Return the id of the listed series with this kind and strike whose expiry is nearest `days` from now."""
    options = chain.at("OptionsMarket", world.contracts["OptionsMarket"])
    now = chain.w3.eth.get_block("latest")["timestamp"]
    listed = [(i, options.functions.series(i).call()) for i in range(options.functions.seriesCount().call())]
    matching = [(abs(s[2] - now - days * 86_400), i) for i, s in listed
                if s[0] == is_call and s[1] == strike_usd * 10**18]
    if not matching:
        raise ValueError(f"no {'call' if is_call else 'put'} listed at strike {strike_usd}")
    return min(matching)[1]
