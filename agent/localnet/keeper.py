"""The Ballast keeper module on a local Safe: deployed for the Safe, enabled and configured by its owner with the
calls a keeper's recipes may make, the ones its policy implies (see contracts/BallastKeeperModule.sol and the
README's "Accounts")."""

from __future__ import annotations

from agent.adapters.encode import Venues, call_rules, spenders
from agent.adapters.erc20 import TokenRegistry
from agent.adapters.options import LocalOptionsMarket
from agent.adapters.perps import LocalPerpMarket
from agent.localnet.chain import LocalChain
from agent.localnet.safe import SafeAccount, exec_batch_as_owner
from agent.localnet.world import RESERVES, World
from agent.model import Token

AAVE_FLASH_LENDER = 1  # BallastKeeperModule.LENDER_AAVE_V3
HEALTH_FACTOR_FLOOR_WAD = 105 * 10**16  # 1.05: no recipe may leave the Safe closer to liquidation than this


def keeper_venues(world: World, safe: str) -> Venues:
    """Return the local world's venues as a policy for `safe` names them: the calls and spenders the module allows
    are the ones the policy implies (`agent.adapters.encode.call_rules`), so the guard and the module agree."""
    registry = TokenRegistry()
    contracts = world.contracts
    return Venues(
        "localnet", safe, aave_pool=contracts["Pool"], swap_router=contracts["SwapRouter"],
        position_manager=contracts["NonfungiblePositionManager"],
        tokens=tuple(Token(r.symbol, world.tokens[r.symbol], r.decimals) for r in RESERVES),
        perps=LocalPerpMarket("localnet", safe, contracts["PerpMarket"], "WETH", registry),
        options=LocalOptionsMarket("localnet", safe, contracts["OptionsMarket"], "WETH", registry),
    )


def install_keeper_module(chain: LocalChain, world: World, safe: str, owner: str, keeper: str) -> SafeAccount:
    """Deploy a keeper module for `safe`, and have its owner enable and configure it in one Safe transaction: the
    keeper, the calls and spenders of `keeper_venues`, Aave as flash lender and the health-factor floor."""
    module = chain.deploy("BallastKeeperModule", safe, sender=owner)
    safe_contract = chain.at("Safe", safe)
    calls: list[tuple[str, bytes | str]] = [
        (safe, safe_contract.encode_abi("enableModule", [module.address])),
        (module.address, module.encode_abi("setKeeper", [keeper, True])),
    ]
    venues = keeper_venues(world, safe)
    for (target, call_selector), (safe_args, spender_args) in sorted(call_rules(venues).items()):
        calls.append((module.address, module.encode_abi("setCall", [target, call_selector, safe_args, spender_args])))
    calls += [(module.address, module.encode_abi("setSpender", [spender, True]))
              for spender in sorted(spenders(venues))]
    calls += [
        (module.address, module.encode_abi("setFlashLender", [world.contracts["Pool"], AAVE_FLASH_LENDER])),
        (module.address, module.encode_abi("setHealthCheck", [world.contracts["Pool"], HEALTH_FACTOR_FLOOR_WAD])),
    ]
    exec_batch_as_owner(chain, world, safe, owner, calls)
    return SafeAccount(safe, owner, keeper, module.address)
