"""Seed the local world: protocol liquidity from the deployer, and the demo portfolios of DESIGN.md, each on its
own dev account."""

from __future__ import annotations

from dataclasses import dataclass

from agent.localnet.chain import LocalChain
from agent.localnet.world import MAX_UINT256, RESERVES, TICK_SPACING, World, tick_for_weth_price

VARIABLE_RATE = 2
SPENT = "0x000000000000000000000000000000000000dEaD"  # where a loop's borrowed funds go: they bought its collateral
LP_FEE = 500

# What the deployer supplies to Aave so that the demo accounts can borrow (whole tokens).
AAVE_LIQUIDITY = {"WETH": 5_000, "USDC": 20_000_000, "WBTC": 200}
# What the liquidator account holds to repay others' debt (whole tokens).
LIQUIDATOR_FUNDS = {"WETH": 1_000, "USDC": 5_000_000}


@dataclass(frozen=True)
class DemoPortfolio:
    """How a demo portfolio is built: Aave supply and borrow, and an optional LP range around the price."""

    name: str
    supply: tuple[str, int]  # symbol, whole tokens
    borrow: tuple[str, float]  # symbol, whole tokens
    lp_range_usd: tuple[float, float] | None = None  # WETH price range of the LP position
    extra_mint: tuple[str, int] | None = None  # tokens the LP needs besides the borrowed ones
    lp_extra_weth: float = 0.0  # WETH the LP holds besides the borrowed (hedged by the perp short)
    perp_margin_usdc: int = 0  # margin deposited in the perp market (minted, whole USDC)
    perp_size_weth: float = 0.0  # the perp position opened (signed, + long)
    protective_put: tuple[int, int, float] | None = None  # (strike USD, days to expiry, WETH) bought with idle USDC
    emode_category: int = 0  # the Aave e-mode category the account enters before borrowing
    borrowed_spent: bool = False  # the borrow paid for the supply (a loop): it is sent away, nothing stays idle


# leveraged-long: 100 WETH ($200k) against 97,000 USDC → HF = 200,000·0.825 / 97,000 ≈ 1.70.
# delta-neutral-lp: 200,000 USDC against 43 WETH ($86k) → HF = 200,000·0.78 / 86,000 ≈ 1.81; the 43 WETH and
# USDC go into a 1,600–2,500 range whose geometric middle is the price, so the LP's WETH offsets the debt; 5 more
# WETH in the range are hedged by a 5 WETH perp short (10,000 USDC margin: liquidated only above ~$3,800).
# leveraged-long spends some of its borrowed USDC on a protective 30-day $1,800 put on 20 WETH.
# lst-loop: 100 WSTETH ($230k) in the ETH e-mode (LT 95%) against 101.16 WETH → HF = 218,500 / 202,320 ≈ 1.080: an
# ETH crash moves both sides alike, a WSTETH depeg of 8% leaves HF ≈ 0.994, liquidatable.
DEMO_PORTFOLIOS = (
    DemoPortfolio("leveraged-long", supply=("WETH", 100), borrow=("USDC", 97_000), protective_put=(1_800, 30, 20.0)),
    DemoPortfolio(
        "delta-neutral-lp", supply=("USDC", 200_000), borrow=("WETH", 43),
        lp_range_usd=(1_600.0, 2_500.0), extra_mint=("USDC", 112_000), lp_extra_weth=5.0,
        perp_margin_usdc=10_000, perp_size_weth=-5.0,
    ),
    DemoPortfolio("lst-loop", supply=("WSTETH", 100), borrow=("WETH", 101.16), emode_category=1,
                  borrowed_spent=True),
)


def _units(symbol: str, amount: float) -> int:
    decimals = next(reserve.decimals for reserve in RESERVES if reserve.symbol == symbol)
    return round(amount * 10**decimals)


def seed_liquidity(chain: LocalChain, world: World, deployer: str, liquidator: str) -> None:
    """Supply lending liquidity to Aave from the deployer, and fund the liquidator account."""
    pool = chain.at("Pool", world.contracts["Pool"])
    for symbol, amount in AAVE_LIQUIDITY.items():
        token = chain.at("MintableERC20", world.tokens[symbol])
        chain.send(token.functions.mint(deployer, _units(symbol, amount)), deployer)
        chain.send(token.functions.approve(pool.address, MAX_UINT256), deployer)
        chain.send(pool.functions.supply(token.address, _units(symbol, amount), deployer, 0), deployer)
    for symbol, amount in LIQUIDATOR_FUNDS.items():
        token = chain.at("MintableERC20", world.tokens[symbol])
        chain.send(token.functions.mint(liquidator, _units(symbol, amount)), liquidator)
        chain.send(token.functions.approve(pool.address, MAX_UINT256), liquidator)


def seed_portfolio(chain: LocalChain, world: World, demo: DemoPortfolio, owner: str) -> int | None:
    """Build one demo portfolio on `owner`'s account; return the LP position's token id, if it has one."""
    pool = chain.at("Pool", world.contracts["Pool"])
    supply_symbol, supply_amount = demo.supply
    borrow_symbol, borrow_amount = demo.borrow
    supply_token = chain.at("MintableERC20", world.tokens[supply_symbol])
    chain.send(supply_token.functions.mint(owner, _units(supply_symbol, supply_amount)), owner)
    chain.send(supply_token.functions.approve(pool.address, MAX_UINT256), owner)
    chain.send(pool.functions.supply(supply_token.address, _units(supply_symbol, supply_amount), owner, 0), owner)
    if demo.emode_category:
        chain.send(pool.functions.setUserEMode(demo.emode_category), owner)
    chain.send(pool.functions.borrow(
        world.tokens[borrow_symbol], _units(borrow_symbol, borrow_amount), VARIABLE_RATE, 0, owner), owner)
    if demo.borrowed_spent:
        borrowed = chain.at("MintableERC20", world.tokens[borrow_symbol])
        chain.send(borrowed.functions.transfer(SPENT, _units(borrow_symbol, borrow_amount)), owner)
    seed_derivatives(chain, world, demo, owner)
    if demo.lp_range_usd is None:
        return None
    if demo.lp_extra_weth:
        chain.send(chain.at("MintableERC20", world.tokens["WETH"]).functions.mint(
            owner, _units("WETH", demo.lp_extra_weth)), owner)
    if demo.extra_mint:
        symbol, amount = demo.extra_mint
        chain.send(chain.at("MintableERC20", world.tokens[symbol]).functions.mint(owner, _units(symbol, amount)),
                   owner)
    manager = chain.at("NonfungiblePositionManager", world.contracts["NonfungiblePositionManager"])
    token0, token1 = sorted((world.tokens["WETH"], world.tokens["USDC"]), key=lambda a: int(a, 16))
    for address in (token0, token1):
        chain.send(chain.at("MintableERC20", address).functions.approve(manager.address, MAX_UINT256), owner)
    spacing = TICK_SPACING[LP_FEE]
    ticks = sorted(tick_for_weth_price(price, world, spacing) for price in demo.lp_range_usd)
    desired = {
        world.tokens["WETH"]: _units("WETH", borrow_amount + demo.lp_extra_weth),
        world.tokens["USDC"]: chain.at("MintableERC20", world.tokens["USDC"]).functions.balanceOf(owner).call(),
    }
    receipt = chain.send(manager.functions.mint((
        token0, token1, LP_FEE, ticks[0], ticks[1], desired[token0], desired[token1], 0, 0, owner, 2**64,
    )), owner)
    transfer_topic = chain.w3.keccak(text="Transfer(address,address,uint256)")
    for log in receipt["logs"]:
        if log["address"] == manager.address and log["topics"][0] == transfer_topic:
            return int.from_bytes(log["topics"][3], "big")
    raise AssertionError("NonfungiblePositionManager.mint emitted no Transfer")


def seed_derivatives(chain: LocalChain, world: World, demo: DemoPortfolio, owner: str) -> None:
    """Open the demo portfolio's perp hedge (minted margin, filled within 1% of the feed) and buy its protective
    put (paid from the idle USDC, at most 1% above the venue's quote)."""
    usdc = chain.at("MintableERC20", world.tokens["USDC"])
    if demo.perp_margin_usdc:
        perp = chain.at("PerpMarket", world.contracts["PerpMarket"])
        chain.send(usdc.functions.mint(owner, _units("USDC", demo.perp_margin_usdc)), owner)
        chain.send(usdc.functions.approve(perp.address, MAX_UINT256), owner)
        chain.send(perp.functions.depositMargin(_units("USDC", demo.perp_margin_usdc)), owner)
        if demo.perp_size_weth:
            size = _units("WETH", demo.perp_size_weth)
            bound = perp.functions.oraclePrice().call() * (100 + (1 if size > 0 else -1)) // 100
            chain.send(perp.functions.modifyPosition(size, bound), owner)
    if demo.protective_put:
        strike, days, amount = demo.protective_put
        options = chain.at("OptionsMarket", world.contracts["OptionsMarket"])
        series_id = option_series_id(chain, world, False, strike, days)
        units = _units("WETH", amount)
        cost = options.functions.quoteBuy(series_id, units).call()
        chain.send(usdc.functions.approve(options.address, MAX_UINT256), owner)
        chain.send(options.functions.buy(series_id, units, cost * 101 // 100), owner)


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
