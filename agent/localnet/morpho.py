"""Morpho Blue in the local world: the real Morpho (compiled from its npm sources), an oracle per market reading the
local USD feeds, the project's linear interest-rate model, a WETH/USDC and a WSTETH/WETH market, their lenders'
liquidity, and the cross-protocol demo portfolio's Morpho position."""

from __future__ import annotations

from agent.adapters.morpho_blue import MarketParams
from agent.localnet.chain import LocalChain
from agent.localnet.seed import LP_FEE, AccountRunner, direct_runner
from agent.localnet.world import MAX_UINT256, RESERVES, World

WAD = 10**18
# LLTVs the owner enables: those Morpho's governance enabled on Ethereum (a market can only use an enabled one).
ENABLED_LLTVS_WAD = (77 * 10**16, 86 * 10**16, 915 * 10**15, 945 * 10**15)
# The interest-rate model (deploy/localnet/contracts/MorphoLinearIrm.sol): 2%/year plus 10%/year × utilisation.
IRM_BASE_RATE_PER_YEAR_WAD = 2 * 10**16
IRM_SLOPE_PER_YEAR_WAD = 10 * 10**16
# Markets created at deployment: (collateral, loan, LLTV), and what lenders supply to each (whole loan tokens).
MARKETS = (("WETH", "USDC", 86 * 10**16), ("WSTETH", "WETH", 945 * 10**15))
LENDER_LIQUIDITY = {"WETH/USDC": 20_000_000, "WSTETH/WETH": 2_000}
# The cross-protocol demo's Morpho position, looped: 30 WETH of collateral, 69,730 USDC borrowed, swapped to WETH and
# supplied too: ≈ 64.9 WETH ($129.7k) against 69,730 USDC, health ≈ 129,730·0.86 / 69,730 ≈ 1.60 (its Aave account
# is the safer one, seed.py): a 15% crash breaches the 1.5 band on Morpho only, with no idle funds to repay from.
# It borrows in two rounds (40,000 then 29,730 USDC), each swapped and supplied before the next.
DEMO_POSITIONS = {"cross-protocol": ("WETH/USDC", 30, (40_000, 29_730))}


def _units(symbol: str, amount: float) -> int:
    decimals = next(reserve.decimals for reserve in RESERVES if reserve.symbol == symbol)
    return round(amount * 10**decimals)


def deploy_morpho(chain: LocalChain, deployer: str, world: World) -> None:
    """Deploy Morpho Blue owned by `deployer`, enable the IRM and the LLTVs, and create the world's markets."""
    morpho = chain.deploy("Morpho", deployer, sender=deployer)
    irm = chain.deploy("MorphoLinearIrm", IRM_BASE_RATE_PER_YEAR_WAD, IRM_SLOPE_PER_YEAR_WAD, sender=deployer)
    chain.send(morpho.functions.enableIrm(irm.address), deployer)
    for lltv in ENABLED_LLTVS_WAD:
        chain.send(morpho.functions.enableLltv(lltv), deployer)
    world.contracts.update({"MorphoBlue": morpho.address, "MorphoIrm": irm.address})
    for collateral, loan, lltv in MARKETS:
        world.morpho_markets[f"{collateral}/{loan}"] = create_market(chain, world, collateral, loan, lltv, deployer)


def create_market(
    chain: LocalChain, world: World, collateral: str, loan: str, lltv_wad: int, sender: str
) -> str:
    """Create the `collateral`/`loan` market at `lltv_wad` (an enabled LLTV) with a feed oracle of that pair and the
    world's IRM (unless that market exists), and return its id."""
    decimals = {reserve.symbol: reserve.decimals for reserve in RESERVES}
    oracle = world.contracts.get(f"MorphoOracle:{collateral}/{loan}")
    if oracle is None:
        oracle = chain.deploy("MorphoFeedOracle", world.feeds[collateral], world.feeds[loan], decimals[collateral],
                              decimals[loan], sender=sender).address
        world.contracts[f"MorphoOracle:{collateral}/{loan}"] = oracle
    params = MarketParams(world.tokens[loan], world.tokens[collateral], oracle, world.contracts["MorphoIrm"], lltv_wad)
    morpho = chain.at("Morpho", world.contracts["MorphoBlue"])
    if morpho.functions.market(bytes.fromhex(params.id[2:])).call()[4] == 0:  # lastUpdate: 0 until created
        chain.send(morpho.functions.createMarket(params.as_tuple()), sender)
    return params.id


def market_params(chain: LocalChain, world: World, market_id: str) -> MarketParams:
    """Return the parameters of a market of the local Morpho."""
    morpho = chain.at("Morpho", world.contracts["MorphoBlue"])
    loan, collateral, oracle, irm, lltv = morpho.functions.idToMarketParams(bytes.fromhex(market_id[2:])).call()
    return MarketParams(loan, collateral, oracle, irm, lltv)


def seed_morpho_liquidity(chain: LocalChain, world: World, deployer: str, liquidator: str) -> None:
    """Supply each market's lender liquidity from the deployer, and let the liquidator repay on Morpho."""
    morpho = chain.at("Morpho", world.contracts["MorphoBlue"])
    for label, amount in LENDER_LIQUIDITY.items():
        params = market_params(chain, world, world.morpho_markets[label])
        loan = label.split("/")[1]
        token = chain.at("MintableERC20", params.loan_token)
        chain.send(token.functions.mint(deployer, _units(loan, amount)), deployer)
        chain.send(token.functions.approve(morpho.address, _units(loan, amount)), deployer)
        chain.send(morpho.functions.supply(params.as_tuple(), _units(loan, amount), 0, deployer, b""), deployer)
    for symbol in ("USDC", "WETH"):
        token = chain.at("MintableERC20", world.tokens[symbol])
        chain.send(token.functions.approve(morpho.address, MAX_UINT256), liquidator)


def open_position(
    chain: LocalChain, world: World, market_id: str, owner: str, collateral_base_units: int, borrow_base_units: int
) -> None:
    """Mint `collateral_base_units` to `owner` (a dev account), supply them as collateral and borrow
    `borrow_base_units`."""
    seed_position(chain, world, market_id, owner, collateral_base_units, (borrow_base_units,),
                  direct_runner(chain, owner), owner)


def seed_position(
    chain: LocalChain, world: World, market_id: str, account: str, collateral_base_units: int,
    borrow_rounds: tuple[int, ...], run: AccountRunner, minter: str, loop: bool = False,
) -> None:
    """Mint the collateral to `account`, supply it and borrow each of `borrow_rounds` through `run` (every approval
    exact); with `loop`, each round's loan is swapped for collateral (at most 1% under the feeds) and supplied
    before the next."""
    params = market_params(chain, world, market_id)
    morpho = chain.at("Morpho", world.contracts["MorphoBlue"])
    collateral = chain.at("MintableERC20", params.collateral_token)
    loan, router = chain.at("MintableERC20", params.loan_token), chain.at("SwapRouter", world.contracts["SwapRouter"])
    chain.send(collateral.functions.mint(account, collateral_base_units), minter)
    supply = collateral_base_units
    for borrow in borrow_rounds:
        run([(collateral, "approve", [morpho.address, supply]),
             (morpho, "supplyCollateral", [params.as_tuple(), supply, account, b""]),
             (morpho, "borrow", [params.as_tuple(), borrow, 0, account, account])])
        if not loop:
            return
        fair = borrow * 10**36 // chain.at("MorphoFeedOracle", params.oracle).functions.price().call()
        deadline = chain.w3.eth.get_block("latest")["timestamp"] + 600
        before = collateral.functions.balanceOf(account).call()
        run([(loan, "approve", [router.address, borrow]),
             (router, "exactInputSingle", [(loan.address, collateral.address, LP_FEE, account, deadline, borrow,
                                            fair * 99 // 100, 0)])])
        supply = collateral.functions.balanceOf(account).call() - before
    run([(collateral, "approve", [morpho.address, supply]),
         (morpho, "supplyCollateral", [params.as_tuple(), supply, account, b""])])


def seed_morpho_portfolio(
    chain: LocalChain, world: World, name: str, account: str, run: AccountRunner, minter: str
) -> None:
    """Open demo portfolio `name`'s Morpho position (if it has one) on `account`, looped: what it borrows is
    swapped to collateral and supplied, so it holds no idle funds."""
    if name not in DEMO_POSITIONS:
        return
    label, collateral, rounds = DEMO_POSITIONS[name]
    collateral_symbol, loan_symbol = label.split("/")
    seed_position(chain, world, world.morpho_markets[label], account, _units(collateral_symbol, collateral),
                  tuple(_units(loan_symbol, r) for r in rounds), run, minter, loop=True)
