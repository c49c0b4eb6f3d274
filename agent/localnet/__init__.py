"""The local world: anvil started from the pinned npm package, the real Aave v3 and Uniswap v3 deployed from their
npm artifacts, and the two demo portfolios seeded on their own dev accounts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from web3 import Web3

from agent.localnet.anvil import Anvil, LocalnetError
from agent.localnet.chain import DevAccount, LocalChain, dev_accounts
from agent.localnet.policies import render_policy
from agent.localnet.seed import DEMO_PORTFOLIOS, seed_liquidity, seed_portfolio
from agent.localnet.world import World, deploy_world

__all__ = ["Anvil", "Localnet", "LocalnetError", "build_localnet", "write_state"]

# Roles of anvil's dev accounts in the local world.
DEPLOYER, LIQUIDATOR = 0, 3
DEMO_ACCOUNT_INDEX = {"leveraged-long": 1, "delta-neutral-lp": 2, "lst-loop": 4}


@dataclass
class Localnet:
    """A deployed and seeded local world, as `ballast localnet up --json` describes it."""

    rpc_url: str
    world: World
    accounts: list[DevAccount]
    demo_accounts: dict[str, str]
    lp_token_ids: dict[str, int] = field(default_factory=dict)

    @property
    def liquidator(self) -> DevAccount:
        return self.accounts[LIQUIDATOR]

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
            "lp_token_ids": self.lp_token_ids,
            "liquidator": self.liquidator.address,
        }


def build_localnet(rpc_url: str, chain_id: int, account_count: int = 10) -> Localnet:
    """Deploy the world on the node at `rpc_url` and seed both demo portfolios; return its description."""
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    chain = LocalChain(w3)
    accounts = dev_accounts(account_count)
    deployer = accounts[DEPLOYER].address
    world = deploy_world(chain, deployer, chain_id)
    seed_liquidity(chain, world, deployer, accounts[LIQUIDATOR].address)
    localnet = Localnet(rpc_url, world, accounts, {})
    for demo in DEMO_PORTFOLIOS:
        owner = accounts[DEMO_ACCOUNT_INDEX[demo.name]].address
        localnet.demo_accounts[demo.name] = owner
        token_id = seed_portfolio(chain, world, demo, owner)
        if token_id is not None:
            localnet.lp_token_ids[demo.name] = token_id
    return localnet


def write_state(localnet: Localnet, state_dir: Path) -> Path:
    """Write `localnet.json` and one ready-to-use policy per demo portfolio under `state_dir`; return the JSON path."""
    (state_dir / "policies").mkdir(parents=True, exist_ok=True)
    path = state_dir / "localnet.json"
    path.write_text(json.dumps(localnet.to_json(), indent=2) + "\n")
    for name, account in localnet.demo_accounts.items():
        (state_dir / "policies" / f"{name}.yaml").write_text(render_policy(name, account, localnet))
    return path
