"""The fault matrix under pytest: each fault once, on the session's anvil (reverted around each run); every count
must be zero and the run must have acted (`make faults` runs each fault three times and prints the table)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.localnet import Localnet
from tests.faults.matrix import SCENARIOS, Scenario, run_once, table


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_the_daemon_never_goes_wrong_under(scenario: Scenario, localnet: Localnet, tmp_path: Path) -> None:
    outcome = run_once(scenario, localnet, tmp_path)
    assert (outcome.mined_twice, outcome.lost, outcome.crashes, outcome.out_of_band) == (0, 0, 0, 0), \
        table({scenario.name: [outcome]})
    assert outcome.mined > 0, "the crash made the daemon act"
