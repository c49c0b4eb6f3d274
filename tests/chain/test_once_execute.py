"""`ballast once --execute` on a Safe: it plans, signs as the module's keeper (the key in BALLAST_PRIVATE_KEY is
the keeper's, not the owner's) and lands the plan as one recipe transaction."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import structlog
from typer.testing import CliRunner

from agent.cli import app
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from agent.localnet.policies import render_policy
from agent.localnet.readback import aave_account


def test_once_execute_deleverages_a_safe_in_one_flash_loan_recipe(
    localnet: Localnet, chain: LocalChain, tmp_path: Path
) -> None:
    safe = localnet.demo_portfolios["leveraged-long"]
    pool = localnet.world.contracts["Pool"]
    before = aave_account(chain, pool, safe.address).health_factor_wad / 1e18
    set_weth_price(chain, localnet, 2_000.0 * 1.02 / before)  # a gap to HF 1.02
    policy_file = tmp_path / "leveraged-long.yaml"
    policy_file.write_text(render_policy("leveraged-long", safe.address, localnet, mode="live"))
    env = {"BALLAST_PRIVATE_KEY": localnet.keeper_key("leveraged-long"), "BALLAST_DB": str(tmp_path / "j.sqlite"),
           "BALLAST_KILL_SWITCH": str(tmp_path / "KILL")}
    handlers = list(logging.getLogger().handlers)
    try:
        result = CliRunner().invoke(app, ["once", "--policy", str(policy_file), "--execute", "--json"], env=env)
    finally:
        for handler in logging.getLogger().handlers:
            if handler not in handlers:
                logging.getLogger().removeHandler(handler)
        structlog.reset_defaults()

    assert result.exit_code == 0, result.output
    output = json.loads(result.stdout)
    assert output["plan"]["actions"][0]["kind"] == "flash_loan"
    (intent,) = output["execution"]["intents"]
    assert (intent["kind"], intent["state"]) == ("recipe", "confirmed")
    tx = chain.w3.eth.get_transaction(intent["tx_hash"])
    assert (tx["from"], tx["to"]) == (safe.keeper, safe.module)
    assert [c["kind"] for c in intent["calls"]] == ["approve", "repay", "withdraw", "approve", "swap"]
    assert aave_account(chain, pool, safe.address).health_factor_wad / 1e18 >= 1.78
