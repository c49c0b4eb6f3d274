"""Triggers: a breach acts, a drifted Greek acts once the hedge is old or the price moved, the cooldown holds back
all but a breach of more than twice the band's width; and the Whalley–Wilmott band width."""

from __future__ import annotations

import math

from policy_support import local_policy

from agent.model import AccountHealth, DeskGreeks, Plan, RiskReport
from agent.planner.bands import HedgeState, decide
from agent.policy import Policy

NOW = 1_800_000_000


def policy(boost: bool = False) -> Policy:
    return local_policy("bands", f"""\
bands:
  health_factor: {{min: 1.5, target: 1.8, max: 3.0, boost: {str(boost).lower()}}}
  delta_usd: {{min: -5000, target: 0, max: 5000}}
triggers: {{max_hedge_age_s: 86400, price_move_pct: 2.0, cooldown_s: 60}}
""")


def report(hf: float = 1.8, delta: float = 0.0, spot: float = 2000.0) -> RiskReport:
    health = AccountHealth("localnet", "0xabc", int(hf * 1e18) if math.isfinite(hf) else 2**256 - 1, hf, None,
                           math.inf, math.inf)
    return RiskReport("WETH", spot, (), DeskGreeks(delta_usd=delta), 0.0, (health,), math.inf, math.inf)


def test_inside_every_band_does_nothing_and_says_why() -> None:
    decision = decide(report(1.81, -120), policy(), HedgeState(), NOW)
    assert decision.triggers == ()
    assert decision.reason == "all bands inside: HF 1.81 in [1.5, 3], delta_usd -120 in [-5000, 5000]"


def test_breaches_trigger_with_their_size() -> None:
    decision = decide(report(1.4, 7000), policy(), HedgeState(), NOW)
    assert [(t.band, t.kind) for t in decision.triggers] == [("health_factor", "below_min"), ("delta_usd", "above_max")]
    assert "HF 1.4 below min 1.5 by 0.1" in decision.reason
    assert "delta_usd 7000 above max 5000 by 2000" in decision.reason


def test_health_factor_above_max_acts_only_with_boost() -> None:
    assert decide(report(3.5), policy(boost=False), HedgeState(), NOW).triggers == ()
    assert [t.kind for t in decide(report(3.5), policy(boost=True), HedgeState(), NOW).triggers] == ["above_max"]


def test_cooldown_holds_back_a_small_breach_but_not_one_beyond_twice_the_width() -> None:
    state = HedgeState(last_action_ts=NOW - 30, reference_ts=NOW - 30, reference_price_usd=2000.0)
    held = decide(report(1.8, 7000), policy(), state, NOW)
    assert held.triggers == () and held.reason.startswith("cooldown: 30 s of 60 s left")
    # 5,000 + 2 × 5,000 = 15,000: beyond it the cooldown gives way
    urgent = decide(report(1.8, 16_000), policy(), state, NOW)
    assert [t.band for t in urgent.triggers] == ["delta_usd"]
    assert decide(report(1.8, 7000), policy(), state, NOW + 31).triggers


def test_drift_acts_after_max_hedge_age_or_a_price_move_only() -> None:
    fresh = HedgeState(last_action_ts=NOW - 1000, reference_ts=NOW - 1000, reference_price_usd=2000.0)
    assert decide(report(1.8, 3000), policy(), fresh, NOW).triggers == ()
    old = HedgeState(last_action_ts=NOW - 90_000, reference_ts=NOW - 90_000, reference_price_usd=2000.0)
    assert [t.kind for t in decide(report(1.8, 3000), policy(), old, NOW).triggers] == ["stale_hedge"]
    moved = decide(report(1.8, 3000, spot=2050), policy(), fresh, NOW)
    assert [t.kind for t in moved.triggers] == ["price_move"]
    # a delta close to target is not drift
    assert decide(report(1.8, 500), policy(), old, NOW).triggers == ()


def test_hedge_state_advances_on_actions_and_first_observation() -> None:
    empty = Plan("p", (), (), "nothing")
    first = HedgeState().after(empty, NOW, 2000.0)
    assert first == HedgeState(None, NOW, 2000.0)
    assert first.after(empty, NOW + 12, 2100.0) == first
    acted = Plan("p", (), (object(),), "x")  # type: ignore[arg-type]
    assert first.after(acted, NOW + 24, 2100.0) == HedgeState(NOW + 24, NOW + 24, 2100.0)
