"""The one Rich console every command prints through, and the progress bar of the long commands.

On a terminal the console takes the terminal's width. Off a terminal (a pipe, a file, CI, a container's log) Rich
would assume 80 columns and cut names with an ellipsis; there it is wide instead, so tables keep whole names and
nothing animates (a pipe gets the final tables only)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

PIPE_WIDTH = 1_000  # columns off a terminal: wider than any table, so none is squeezed


def make_console(stderr: bool = False, file: IO[str] | None = None) -> Console:
    """Return the console for stdout (stderr with `stderr`, or `file`): the terminal's width on a terminal, else
    PIPE_WIDTH."""
    console = Console(stderr=stderr, file=file)
    return console if console.is_terminal else Console(stderr=stderr, file=file, width=PIPE_WIDTH)


def progress(console: Console, enabled: bool = True) -> Progress:
    """Return a Rich progress bar on `console`, shown only on a terminal and when `enabled` (off with `--json`);
    otherwise it draws nothing. Use it as a context manager."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True, disable=not (enabled and console.is_terminal),
    )


@contextmanager
def native_stdout_to_stderr() -> Iterator[None]:
    """Send what native code writes to file descriptor 1 to stderr for the block: the MILP solver (HiGHS) may print
    a line there, which would break the one JSON object `--json` prints."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
