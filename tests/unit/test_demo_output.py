"""The demo's tables off a terminal (a pipe, a file, CI) keep whole names; on a 100-column terminal they fit."""

from __future__ import annotations

import io

from rich.console import Console

from agent.console import make_console, progress
from agent.localnet.demo import portfolios_table
from agent.localnet.scenario import PORTFOLIOS, report_table, steps_table

STEPS = [
    {"step": f"{i} {'crash' if i < 6 else 'gap' if i == 6 else 'rally'}", "price": 2_000 * 0.95**i, "depeg": i / 100,
     **{f"hf:{p}": 1.2 + i / 100 for p in PORTFOLIOS}, **{f"delta:{p}": -12_345.6 * i for p in PORTFOLIOS},
     **{f"actions:{p}": float(i) for p in PORTFOLIOS}}
    for i in range(1, 26)
]
REPORT = [
    {"portfolio": p, "min_hf": 1.015, "final_hf": 2_000.0, "calls": "3 repay_variable, 3 swap_exact_in, 3 withdraw, "
     "1 flash_loan, 2 supply", "confirmed": 7, "failed": 0, "cost_usd": 1_234.56}
    for p in PORTFOLIOS
]
ACCOUNTS = [(p, "0x" + "ab" * 20, "1.600", "5,000,000.00", "2,500,000.00", "1,800–2,200\n1,900–2,100")
            for p in PORTFOLIOS]


def render(console: Console) -> str:
    console.print(portfolios_table("Demo portfolios on http://127.0.0.1:8545 (chain 31337)", ACCOUNTS))
    console.print(steps_table(STEPS))
    console.print(report_table(REPORT))
    assert console.file is not None
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_off_a_terminal_the_demo_s_tables_keep_whole_names() -> None:
    console = make_console(file=io.StringIO())
    assert not console.is_terminal
    text = render(console)
    assert "…" not in text
    for p in PORTFOLIOS:
        assert text.count(p) >= len(STEPS) + 2  # every step, the report, the portfolios table
    assert "0x" + "ab" * 20 in text and REPORT[0]["calls"] in text


def test_on_a_100_column_terminal_the_demo_s_tables_fit_without_ellipsis() -> None:
    console = Console(file=io.StringIO(), width=100, force_terminal=True, color_system=None)
    text = render(console)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "…" not in text
    for p in PORTFOLIOS:
        assert text.count(p) >= len(STEPS) + 2


def test_progress_draws_only_on_a_terminal_and_not_in_json_mode() -> None:
    pipe = make_console(file=io.StringIO())
    terminal = Console(file=io.StringIO(), width=100, force_terminal=True)
    assert progress(pipe).disable and progress(terminal, enabled=False).disable
    assert not progress(terminal).disable
