"""The demo's gap on the local chain: WETH falls 5% a step to $1,547, then gaps to $967 (feeds and pools), and the
cross-protocol portfolio (a Safe, looped on Aave and Morpho Blue) has both positions breached at once. Every plan
the cycle makes must go through the real executor (one keeper transaction, confirmed) and leave neither protocol's
position liquidatable: a plan's Morpho repay may not spend a swap's output above its on-chain minimum, and a recipe
carries one flash loan."""

from __future__ import annotations

from pathlib import Path

from agent.cycle import decide
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from agent.localnet.readback import aave_account
from agent.model import MorphoPosition
from agent.risk import morpho
from tests.chain.execution_support import read, started_demo_executor

NAME = "cross-protocol"
CRASH = [2_000 * 0.95**step for step in range(1, 6)]  # to ≈ $1,547
PRICES = CRASH + [CRASH[-1] * 0.625 * 0.95**step for step in range(4)]  # the gap to ≈ $967, then −5% a step


def test_a_gap_that_breaches_aave_and_morpho_at_once_is_deleveraged_in_plans_that_land(
    localnet: Localnet, chain: LocalChain, tmp_path: Path
) -> None:
    policy, owner, executor = started_demo_executor(localnet, NAME, tmp_path)
    pool = localnet.world.contracts["Pool"]
    after_plans: list[tuple[float, float, float]] = []

    for price in PRICES:
        # Given WETH moved (feeds and pools)
        set_weth_price(chain, localnet, price)
        snapshot = read(policy)
        # When the cycle plans and the executor carries the plan out
        result = decide(snapshot, policy, log_decision=False)
        if not result.plan.actions:
            continue
        report = executor.execute_plan(result.plan, snapshot, wait_s=60)
        # Then the plan lands as one keeper transaction
        assert report.refusals == () and set(report.states) == {"confirmed"}, (price, report.to_json())
        (position,) = [p for p in read(policy).positions if isinstance(p, MorphoPosition)]
        after_plans.append((price, morpho.health_factor_wad(position) / 1e18,
                            aave_account(chain, pool, owner).health_factor_wad / 1e18))
    print(f"{NAME}: (WETH USD, Morpho health, Aave HF) after each plan: {after_plans}")

    # And after every plan neither protocol's position is liquidatable
    assert any(price < 1_000 for price, _m, _a in after_plans), "the gap was never acted on"
    assert all(m >= 1.0 and a >= 1.0 for _p, m, a in after_plans), after_plans
