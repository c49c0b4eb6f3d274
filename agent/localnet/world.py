"""Deploy the local world on a fresh anvil: tokens, settable price feeds, real Aave v3 and Uniswap v3 from their npm
artifacts, and a Multicall3-compatible reader at the canonical address."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from math import isqrt

from web3.contract import Contract
from web3.types import RPCEndpoint

from agent.chain.multicall import MULTICALL3_ADDRESS
from agent.localnet.artifacts import artifact
from agent.localnet.chain import LocalChain

FEED_DECIMALS = 8
RAY = 10**27
MAX_UINT256 = 2**256 - 1
MIN_TICK, MAX_TICK = -887272, 887272
TICK_SPACING = {500: 10, 3000: 60}


@dataclass(frozen=True)
class ReserveParams:
    """A token of the local world with its Aave v3 risk parameters (bps; bonus stored as 1e4 + bonus)."""

    symbol: str
    decimals: int
    price_usd: Fraction
    ltv_bps: int
    liquidation_threshold_bps: int
    liquidation_bonus_bps: int
    reserve_factor_bps: int
    stable: bool  # chooses the interest-rate curve


RESERVES = (
    ReserveParams("WETH", 18, Fraction(2000), 8000, 8250, 10500, 1500, stable=False),
    ReserveParams("USDC", 6, Fraction(1), 7500, 7800, 10450, 1000, stable=True),
    ReserveParams("WBTC", 8, Fraction(60000), 7000, 7500, 10650, 2000, stable=False),
    # A wstETH-like liquid staking token: worth 1.15 WETH, with its own feed.
    ReserveParams("WSTETH", 18, Fraction(2300), 6900, 7900, 10700, 1500, stable=False),
)

FLASH_LOAN_PREMIUM_BPS = 5  # of the amount borrowed

# The ETH-correlated e-mode category (Aave's mainnet values): LTV 93%, liquidation threshold 95%, bonus 1%, no price
# source of its own (each asset keeps its oracle price).
@dataclass(frozen=True)
class EModeParams:
    """An Aave v3.0 e-mode category of the local world (bps; bonus stored as 1e4 + bonus) and its assets."""

    category_id: int
    ltv_bps: int
    liquidation_threshold_bps: int
    liquidation_bonus_bps: int
    label: str
    assets: tuple[str, ...]


EMODE_ETH = EModeParams(1, 9300, 9500, 10100, "ETH correlated", ("WETH", "WSTETH"))
# Full-range liquidity of the WSTETH/WETH 0.05% pool (WSTETH amount; WETH at the feeds' ratio).
LST_POOL_FEE = 500
LST_POOL_DEPTH_WSTETH = 20_000

# Interest-rate curves in ray: optimal usage, base, slope1, slope2 (variable) and the stable-rate fields of v3.0.
RATE_CURVES = {
    "stable": (Fraction(9, 10), 0, Fraction(4, 100), Fraction(60, 100)),
    "volatile": (Fraction(8, 10), 0, Fraction(38, 1000), Fraction(80, 100)),
}

# Full-range liquidity the deployer seeds into each WETH/USDC pool (WETH amount; USDC at the feed price): about
# $200M in the 0.05% pool, so that a $100k swap moves the price ~0.1%, as on mainnet's concentrated pools.
POOL_DEPTH_WETH = {500: 50_000, 3000: 10_000}

# The reference derivatives venues (deploy/localnet/contracts/PerpMarket.sol, OptionsMarket.sol), in 1e18 fixed
# point: a 100,000 WETH skew scale (a 10 WETH trade moves its fill 0.5 bp), a 5 bp fee, funding of 100%/day at a
# skew as large as the scale (0.1%/day at 100 WETH), 10% initial and 5% maintenance margin, 0.5% liquidation reward.
PERP_PARAMS = {"skew_scale": 100_000 * 10**18, "fee_bps": 5, "max_funding_rate_per_day": 10**18,
               "initial_margin_fraction": 10**17, "maintenance_margin_fraction": 5 * 10**16,
               "liquidation_reward_bps": 50}
OPTIONS_FEE_BPS = 50  # of the premium
OPTIONS_RATE = 0  # annual rate of the options' pricing (the risk engine's default rate is 0 too)
VENUE_FUNDING_USDC = 10_000_000  # what the deployer puts in each venue's pool
# Listed option series: days to expiry → {strike: implied vol}, a call and a put at each (a smile around $2,000).
OPTION_SERIES = {
    7: {1800: 0.74, 2000: 0.70, 2200: 0.72},
    30: {1600: 0.75, 1800: 0.69, 2000: 0.65, 2200: 0.66, 2400: 0.70},
}


@dataclass
class World:
    """Addresses of everything deployed; `contracts` maps a stable name to its checksummed address."""

    chain_id: int
    contracts: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    feeds: dict[str, str] = field(default_factory=dict)
    pools: dict[int, str] = field(default_factory=dict)  # fee (hundredths of a bip) -> WETH/USDC pool
    morpho_markets: dict[str, str] = field(default_factory=dict)  # "WETH/USDC" -> Morpho Blue market id (0x-hex)


def sqrt_price_x96(price_token1_per_token0: Fraction) -> int:
    """Return Uniswap's sqrtPriceX96 for a raw (base-unit) price of token1 in token0."""
    return isqrt(price_token1_per_token0.numerator * 2**192 // price_token1_per_token0.denominator)


def raw_pool_price(token0: ReserveParams, token1: ReserveParams) -> Fraction:
    """Return the pool price token1/token0 in base units, from both tokens' USD prices."""
    return token0.price_usd / token1.price_usd * Fraction(10**token1.decimals, 10**token0.decimals)


def deploy_world(chain: LocalChain, deployer: str, chain_id: int) -> World:
    """Deploy the whole local world from `deployer` (an unlocked account) and return its addresses."""
    world = World(chain_id)
    _deploy_tokens_and_feeds(chain, deployer, world)
    chain.w3.provider.make_request(
        RPCEndpoint("anvil_setCode"), [MULTICALL3_ADDRESS, artifact("BatchReader").deployed_bytecode]
    )
    world.contracts["Multicall3"] = MULTICALL3_ADDRESS
    _deploy_aave(chain, deployer, world)
    _deploy_uniswap(chain, deployer, world)
    _deploy_derivatives(chain, deployer, world)
    return world


def _deploy_tokens_and_feeds(chain: LocalChain, deployer: str, world: World) -> None:
    for reserve in RESERVES:
        token = chain.deploy("MintableERC20", reserve.symbol, reserve.symbol, reserve.decimals, sender=deployer)
        answer = int(reserve.price_usd * 10**FEED_DECIMALS)
        feed = chain.deploy("LocalPriceFeed", FEED_DECIMALS, f"{reserve.symbol} / USD", answer, sender=deployer)
        world.tokens[reserve.symbol] = token.address
        world.feeds[reserve.symbol] = feed.address
        world.contracts[reserve.symbol] = token.address
        world.contracts[f"feed:{reserve.symbol}"] = feed.address


def _deploy_aave(chain: LocalChain, deployer: str, world: World) -> None:
    provider = chain.deploy("PoolAddressesProvider", "Ballast Local Market", deployer, sender=deployer)
    # The ACL admin must be set before ACLManager is constructed (its constructor reads it).
    chain.send(provider.functions.setACLAdmin(deployer), deployer)
    acl = chain.deploy("ACLManager", provider.address, sender=deployer)
    chain.send(provider.functions.setACLManager(acl.address), deployer)
    chain.send(acl.functions.addPoolAdmin(deployer), deployer)
    pool, configurator = _deploy_aave_pool(chain, deployer, provider)
    symbols = [reserve.symbol for reserve in RESERVES]
    oracle = chain.deploy(
        "AaveOracle", provider.address, [world.tokens[s] for s in symbols], [world.feeds[s] for s in symbols],
        "0x0000000000000000000000000000000000000000", "0x0000000000000000000000000000000000000000",
        10**FEED_DECIMALS, sender=deployer,
    )
    chain.send(provider.functions.setPriceOracle(oracle.address), deployer)
    data_provider = chain.deploy("AaveProtocolDataProvider", provider.address, sender=deployer)
    chain.send(provider.functions.setPoolDataProvider(data_provider.address), deployer)
    _init_reserves(chain, deployer, provider, pool, configurator, world)
    _configure_reserves(chain, deployer, configurator, world)
    world.contracts.update({
        "PoolAddressesProvider": provider.address, "ACLManager": acl.address, "Pool": pool.address,
        "PoolConfigurator": configurator.address, "AaveOracle": oracle.address,
        "AaveProtocolDataProvider": data_provider.address,
    })


def _deploy_aave_pool(chain: LocalChain, deployer: str, provider: Contract) -> tuple[Contract, Contract]:
    """Deploy the Pool and PoolConfigurator implementations with their logic libraries; return their proxies."""
    libraries: dict[str, str] = {}
    for name in ("SupplyLogic", "BorrowLogic", "LiquidationLogic", "EModeLogic", "BridgeLogic", "PoolLogic",
                 "ConfiguratorLogic"):
        libraries[name] = chain.deploy(name, sender=deployer).address
    # FlashLoanLogic itself links BorrowLogic.
    libraries["FlashLoanLogic"] = chain.deploy("FlashLoanLogic", sender=deployer, libraries=libraries).address

    pool_impl = chain.deploy("Pool", provider.address, sender=deployer, libraries=libraries)
    chain.send(provider.functions.setPoolImpl(pool_impl.address), deployer)
    pool = chain.at("Pool", provider.functions.getPool().call())
    configurator_impl = chain.deploy("PoolConfigurator", sender=deployer, libraries=libraries)
    chain.send(provider.functions.setPoolConfiguratorImpl(configurator_impl.address), deployer)
    return pool, chain.at("PoolConfigurator", provider.functions.getPoolConfigurator().call())


def _init_reserves(chain: LocalChain, deployer: str, provider: Contract, pool: Contract, configurator: Contract,
                   world: World) -> None:
    """List every reserve with its aToken, debt tokens and interest-rate curve."""
    # Token implementations are bound to the Pool proxy, not to its implementation.
    a_token_impl = chain.deploy("AToken", pool.address, sender=deployer)
    stable_impl = chain.deploy("StableDebtToken", pool.address, sender=deployer)
    variable_impl = chain.deploy("VariableDebtToken", pool.address, sender=deployer)
    strategies = {
        kind: chain.deploy(
            "DefaultReserveInterestRateStrategy", provider.address,
            int(optimal * RAY), int(base * RAY), int(slope1 * RAY), int(slope2 * RAY),
            int(slope1 * RAY), int(slope2 * RAY), 0, 0, int(Fraction(2, 10) * RAY), sender=deployer,
        ).address
        for kind, (optimal, base, slope1, slope2) in RATE_CURVES.items()
    }
    inputs = [
        (
            a_token_impl.address, stable_impl.address, variable_impl.address, reserve.decimals,
            strategies["stable" if reserve.stable else "volatile"], world.tokens[reserve.symbol], deployer,
            "0x0000000000000000000000000000000000000000",
            f"Aave Local {reserve.symbol}", f"aLoc{reserve.symbol}",
            f"Aave Local Variable Debt {reserve.symbol}", f"variableDebtLoc{reserve.symbol}",
            f"Aave Local Stable Debt {reserve.symbol}", f"stableDebtLoc{reserve.symbol}", b"",
        )
        for reserve in RESERVES
    ]
    chain.send(configurator.functions.initReserves(inputs), deployer)


def _configure_reserves(chain: LocalChain, deployer: str, configurator: Contract, world: World) -> None:
    """Make every reserve collateral, borrowable and flash-loanable, charge the flash premium, add the e-mode."""
    for reserve in RESERVES:
        asset = world.tokens[reserve.symbol]
        # A new reserve has LTV 0 and borrowing off until configured.
        chain.send(configurator.functions.configureReserveAsCollateral(
            asset, reserve.ltv_bps, reserve.liquidation_threshold_bps, reserve.liquidation_bonus_bps), deployer)
        chain.send(configurator.functions.setReserveBorrowing(asset, True), deployer)
        chain.send(configurator.functions.setReserveFactor(asset, reserve.reserve_factor_bps), deployer)
        chain.send(configurator.functions.setReserveFlashLoaning(asset, True), deployer)
    # Pool.initialize leaves flash loans free; charge what Ethereum's Aave v3 market charges, all of it to the
    # suppliers.
    chain.send(configurator.functions.updateFlashloanPremiumTotal(FLASH_LOAN_PREMIUM_BPS), deployer)
    chain.send(configurator.functions.updateFlashloanPremiumToProtocol(0), deployer)
    emode = EMODE_ETH
    chain.send(configurator.functions.setEModeCategory(
        emode.category_id, emode.ltv_bps, emode.liquidation_threshold_bps, emode.liquidation_bonus_bps,
        "0x0000000000000000000000000000000000000000", emode.label), deployer)
    for symbol in emode.assets:
        chain.send(configurator.functions.setAssetEModeCategory(world.tokens[symbol], emode.category_id), deployer)


def _deploy_uniswap(chain: LocalChain, deployer: str, world: World) -> None:
    weth = world.tokens["WETH"]
    factory = chain.deploy("UniswapV3Factory", sender=deployer)
    # The descriptor only renders tokenURI, which nothing here reads.
    manager = chain.deploy("NonfungiblePositionManager", factory.address, weth, deployer, sender=deployer)
    router = chain.deploy("SwapRouter", factory.address, weth, sender=deployer)
    quoter = chain.deploy("QuoterV2", factory.address, weth, sender=deployer)
    world.contracts.update({
        "UniswapV3Factory": factory.address, "NonfungiblePositionManager": manager.address,
        "SwapRouter": router.address, "QuoterV2": quoter.address,
    })

    for fee, depth_weth in POOL_DEPTH_WETH.items():
        world.pools[fee] = _seed_pool(chain, deployer, world, ("WETH", "USDC"), fee, depth_weth)
    _seed_pool(chain, deployer, world, ("WSTETH", "WETH"), LST_POOL_FEE, LST_POOL_DEPTH_WSTETH)


def _seed_pool(chain: LocalChain, deployer: str, world: World, pair: tuple[str, str], fee: int, depth: int) -> str:
    """Create the pool of `pair` at the feeds' price with full-range liquidity of `depth` whole tokens of the pair's
    first token (and its value of the second); return its address."""
    manager = chain.at("NonfungiblePositionManager", world.contracts["NonfungiblePositionManager"])
    factory = chain.at("UniswapV3Factory", world.contracts["UniswapV3Factory"])
    params = {reserve.symbol: reserve for reserve in RESERVES}
    token0, token1 = sorted(pair, key=lambda s: int(world.tokens[s], 16))
    for symbol in (token0, token1):
        token = chain.at("MintableERC20", world.tokens[symbol])
        chain.send(token.functions.approve(manager.address, MAX_UINT256), deployer)
    sqrt_price = sqrt_price_x96(raw_pool_price(params[token0], params[token1]))
    chain.send(manager.functions.createAndInitializePoolIfNecessary(
        world.tokens[token0], world.tokens[token1], fee, sqrt_price), deployer)
    pool = factory.functions.getPool(world.tokens[token0], world.tokens[token1], fee).call()
    world.contracts[f"UniswapV3Pool:{pair[0]}/{pair[1]}:{fee}"] = pool
    first, second = params[pair[0]], params[pair[1]]
    amounts = {
        first.symbol: depth * 10**first.decimals,
        second.symbol: int(depth * first.price_usd / second.price_usd * 10**second.decimals),
    }
    for symbol, amount in amounts.items():
        chain.send(chain.at("MintableERC20", world.tokens[symbol]).functions.mint(deployer, amount), deployer)
    spacing = TICK_SPACING[fee]
    mint = (
        world.tokens[token0], world.tokens[token1], fee,
        MIN_TICK // spacing * spacing + spacing, MAX_TICK // spacing * spacing,
        amounts[token0], amounts[token1], 0, 0, deployer, 2**64,
    )
    chain.send(manager.functions.mint(mint), deployer)
    return str(pool)


def _deploy_derivatives(chain: LocalChain, deployer: str, world: World) -> None:
    """Deploy the reference perp and options venues on the WETH feed, settled in USDC, fund their pools and list
    the option series."""
    usdc, feed = world.tokens["USDC"], world.feeds["WETH"]
    perp = chain.deploy("PerpMarket", usdc, 6, feed, *PERP_PARAMS.values(), sender=deployer)
    options = chain.deploy("OptionsMarket", usdc, 6, feed, OPTIONS_RATE, OPTIONS_FEE_BPS, sender=deployer)
    token = chain.at("MintableERC20", usdc)
    for venue in (perp, options):
        chain.send(token.functions.mint(venue.address, VENUE_FUNDING_USDC * 10**6), deployer)
    now = chain.w3.eth.get_block("latest")["timestamp"]
    for days, smile in OPTION_SERIES.items():
        for strike, vol in smile.items():
            for is_call in (True, False):
                chain.send(options.functions.addSeries(is_call, strike * 10**18, now + days * 86_400,
                                                       round(vol * 10**18)), deployer)
    world.contracts.update({"PerpMarket": perp.address, "OptionsMarket": options.address})


def _weth_usdc_raw_scale(world: World) -> tuple[float, bool]:
    decimals = {reserve.symbol: reserve.decimals for reserve in RESERVES}
    weth_is_token0 = int(world.tokens["WETH"], 16) < int(world.tokens["USDC"], 16)
    return 10.0 ** (decimals["USDC"] - decimals["WETH"]), weth_is_token0


def tick_for_weth_price(price_usd: float, world: World, spacing: int) -> int:
    """Return the WETH/USDC pool tick (a multiple of `spacing`) nearest to a WETH price in USD."""
    scale, weth_is_token0 = _weth_usdc_raw_scale(world)
    raw = price_usd * scale  # USDC base units per WETH base unit
    tick = math.log(raw if weth_is_token0 else 1 / raw) / math.log(1.0001)
    return round(tick / spacing) * spacing


def weth_price_at_tick(tick: int, world: World) -> float:
    """Return the WETH price in USD at a WETH/USDC pool tick."""
    scale, weth_is_token0 = _weth_usdc_raw_scale(world)
    raw = 1.0001**tick if weth_is_token0 else 1.0001**-tick
    return raw / scale
