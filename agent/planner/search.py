"""Searches over integer amounts (base units, liquidity) for monotone conditions: the planner sizes every step by
the least amount that reaches a target or the most that keeps a limit."""

from __future__ import annotations

from collections.abc import Callable


def least(ok: Callable[[int], bool], high: int) -> int:
    """Return the least x in [0, high] with ok(x) for a monotone ok (high when none)."""
    if not ok(high):
        return high
    lo, hi = _bisect(ok, high)
    return lo if ok(lo) else hi


def most(ok: Callable[[int], bool], high: int) -> int:
    """Return the greatest x in [0, high] with ok(x) for a monotone decreasing ok (0 when none)."""
    if ok(high):
        return high
    return _bisect(lambda x: not ok(x), high)[0]


def _bisect(past: Callable[[int], bool], high: int) -> tuple[int, int]:
    """Return (lo, hi), hi − lo ≤ 1, bracketing where a false-then-true `past` turns true over [0, high]: past(hi)
    if past(high), and not past(lo) unless lo = 0 (neither end is asked)."""
    lo, hi = 0, high
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if past(mid):
            hi = mid
        else:
            lo = mid
    return lo, hi
