"""The local world: anvil started from the pinned npm package, the real Aave v3, Uniswap v3 and Safe 1.4.1 deployed
from their npm artifacts, and the two demo portfolios, each held by its own Safe with the Ballast keeper module."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.types import RPCEndpoint

from agent.localnet.anvil import Anvil, LocalnetError
from agent.localnet.chain import DevAccount, LocalChain, dev_accounts
from agent.localnet.keeper import install_keeper_module
from agent.localnet.market import set_weth_price
from agent.localnet.policies import render_policy
from agent.localnet.safe import SafeAccount, create_safe, deploy_safe_contracts
from agent.localnet.seed import DEMO_PORTFOLIOS, safe_runner, seed_liquidity, seed_portfolio
from agent.localnet.world import RESERVES, World, deploy_world

__all__ = ["Anvil", "Localnet", "LocalnetError", "build_localnet", "write_state"]

# Roles of the dev accounts in the local world: the owner of each demo portfolio's Safe, and its keeper (keys past
# anvil's ten funded accounts, funded at deployment).
DEPLOYER, LIQUIDATOR = 0, 3
DEMO_ACCOUNT_INDEX = {"leveraged-long": 1, "delta-neutral-lp": 2}
KEEPER_ACCOUNT_INDEX = {"leveraged-long": 10, "delta-neutral-lp": 11}
KEEPER_FUNDING_WEI = 1_000 * 10**18
# The world's deployment sends ~120 transactions: each with this much gas and this fee, without an estimate or a fee
# lookup (anvil's base fee starts at 1 gwei and only falls while blocks are light).
BUILD_GAS, BUILD_GAS_PRICE_WEI = 15_000_000, 10 * 10**9


@dataclass
class Localnet:
    """A deployed and seeded local world, as `ballast localnet up --json` describes it."""

    rpc_url: str
    world: World
    accounts: list[DevAccount]
    demo_accounts: dict[str, str]  # portfolio name -> its account (the Safe)
    lp_token_ids: dict[str, int] = field(default_factory=dict)
    demo_portfolios: dict[str, SafeAccount] = field(default_factory=dict)

    @property
    def liquidator(self) -> DevAccount:
        return self.accounts[LIQUIDATOR]

    def key_of(self, address: str) -> str:
        """Return the private key of the dev account at `address` (an owner or a keeper)."""
        return next(a.private_key for a in self.accounts if a.address.lower() == address.lower())

    def keeper_key(self, portfolio: str) -> str:
        """Return the private key the daemon signs with for a demo portfolio: its keeper's."""
        return self.key_of(self.demo_portfolios[portfolio].keeper)

    def to_json(self) -> dict[str, Any]:
        """Return the description written to `<state-dir>/localnet.json`."""
        return {
            "rpc_url": self.rpc_url,
            "chain_id": self.world.chain_id,
            "contracts": self.world.contracts,
            "accounts": [
                {"address": a.address, "private_key": a.private_key, "local_only": True} for a in self.accounts
            ],
            "demo_accounts": self.demo_accounts,
            "demo_portfolios": {
                name: {"account": p.address, "owner": p.owner, "keeper": p.keeper, "module": p.module}
                for name, p in self.demo_portfolios.items()
            },
            "lp_token_ids": self.lp_token_ids,
            "liquidator": self.liquidator.address,
        }


def build_localnet(rpc_url: str, chain_id: int, account_count: int = 12) -> Localnet:
    """Deploy the world on the node at `rpc_url`, create a Safe per demo portfolio with the keeper module enabled,
    and seed the portfolios inside them; return the world's description."""
    # web3 asks the chain id again for every transaction it fills in: once is enough.
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}, cache_allowed_requests=True,
                                cacheable_requests={RPCEndpoint("eth_chainId")}))
    for fills_in_what_is_given in ("gas_price_strategy", "ens_name_to_address"):
        w3.middleware_onion.remove(fills_in_what_is_given)
    chain = LocalChain(w3, gas=BUILD_GAS, gas_price_wei=BUILD_GAS_PRICE_WEI)
    accounts = dev_accounts(max(account_count, 1 + max(KEEPER_ACCOUNT_INDEX.values())))
    deployer = accounts[DEPLOYER].address
    world = deploy_world(chain, deployer, chain_id)
    deploy_safe_contracts(chain, deployer, world)
    seed_liquidity(chain, world, deployer, accounts[LIQUIDATOR].address)
    localnet = Localnet(rpc_url, world, accounts, {})
    for salt, demo in enumerate(DEMO_PORTFOLIOS):
        owner = accounts[DEMO_ACCOUNT_INDEX[demo.name]].address
        keeper = accounts[KEEPER_ACCOUNT_INDEX[demo.name]].address
        w3.provider.make_request(RPCEndpoint("anvil_setBalance"), [keeper, hex(KEEPER_FUNDING_WEI)])
        safe = create_safe(chain, world, owner, salt)
        localnet.demo_portfolios[demo.name] = install_keeper_module(chain, world, safe, owner, keeper)
        localnet.demo_accounts[demo.name] = safe
        token_id = seed_portfolio(chain, world, demo, safe, safe_runner(chain, world, safe, owner), owner)
        if token_id is not None:
            localnet.lp_token_ids[demo.name] = token_id
    # The looped long bought its WETH in the pool: trade the pools back to the feed's price.
    set_weth_price(chain, localnet, float(next(r.price_usd for r in RESERVES if r.symbol == "WETH")))
    return localnet


def write_state(localnet: Localnet, state_dir: Path) -> Path:
    """Write `localnet.json` and one ready-to-use policy per demo portfolio under `state_dir`; return the JSON path."""
    (state_dir / "policies").mkdir(parents=True, exist_ok=True)
    path = state_dir / "localnet.json"
    path.write_text(json.dumps(localnet.to_json(), indent=2) + "\n")
    for name, account in localnet.demo_accounts.items():
        (state_dir / "policies" / f"{name}.yaml").write_text(render_policy(name, account, localnet))
    return path
