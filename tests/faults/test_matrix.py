"""The fault matrix under pytest: each fault once on each of its paths (the Safe's keeper module, a direct account),
on the session's anvil (reverted around each run); every count must be zero, the fault must have been applied and
the run must have acted (`make faults` runs each fault three times and prints the table)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.localnet import Localnet
from tests.faults.matrix import COUNTS, cells, label, run_once, table
from tests.faults.run import Scenario


@pytest.mark.parametrize(("scenario", "path"), cells(None, None), ids=[label(s, p) for s, p in cells(None, None)])
def test_the_daemon_never_goes_wrong_under(scenario: Scenario, path: str, localnet: Localnet, tmp_path: Path) -> None:
    outcome = run_once(scenario, localnet, tmp_path, path)
    assert tuple(getattr(outcome, count) for count in COUNTS) == (0,) * len(COUNTS), \
        table({label(scenario, path): [outcome]})
    assert outcome.mined > 0, "the crash made the daemon act"
