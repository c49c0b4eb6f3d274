"""The daemon's block-time estimate, which times its head polls."""

from __future__ import annotations

from agent.chain.fleet import seconds_per_block
from agent.chain.multicall import Block


def block(number: int, timestamp: int) -> Block:
    return Block(number, f"0x{number:064x}", timestamp, 0)


def test_blocks_skipped_while_a_slow_block_was_processed_do_not_stretch_the_block_time() -> None:
    # Four blocks of a chain mining one a second passed between two polls: still one second per block.
    assert seconds_per_block(block(100, 1_000), block(104, 1_004)) == 1.0
    assert seconds_per_block(block(100, 1_000), block(101, 1_012)) == 12.0


def test_a_clock_going_backwards_gives_zero_not_a_negative_block_time() -> None:
    assert seconds_per_block(block(100, 1_000), block(101, 999)) == 0.0
