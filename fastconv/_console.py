"""Terminal output shared by every ``fastconv`` subcommand: lines, tables, warnings, a progress bar
and the number formats of the tables.

``rich`` (the ``cli`` extra) draws the tables and the progress bar when it is installed; without
it the same tables come out as aligned plain text, so nothing here is required to use the CLI.
"""

from __future__ import annotations

import math
import os
import sys


def _rich_console(stderr: bool = False, min_width: int = 0):
    try:
        from rich.console import Console
    except ImportError:
        return None
    stream = sys.stderr if stderr else sys.stdout
    # Piped output (a file, CI logs, the README) is not a terminal; rich would squeeze it to 80
    # columns, and cut a wide table's cells: there, the table sets the width it needs.
    width = None if stream.isatty() else max(int(os.environ.get("COLUMNS", "150")), min_width)
    return Console(highlight=False, width=width, stderr=stderr)


def say(text: str = "") -> None:
    """One line (or paragraph) on stdout."""
    console = _rich_console()
    if console is None:
        print(text)
    else:
        console.print(text, markup=False, soft_wrap=True)


def warn(text: str) -> None:
    """A warning on stderr, so that it never mixes into a table that is piped to a file."""
    print(f"warning: {text}", file=sys.stderr)


def print_table(title: str, columns: list[str], rows: list[list[str] | None], right_from: int = 1) -> None:
    """A table with a title; a ``None`` row draws a separator. Columns from ``right_from`` on are
    right-aligned (numbers)."""
    body = [r for r in rows if r is not None]
    widths = [max(len(str(c)) for c in col) for col in zip(columns, *body)]
    console = _rich_console(min_width=sum(widths) + 3 * len(widths) + 1)  # cells, padding and borders
    if console is not None:
        from rich.markup import escape
        from rich.table import Table

        # Cells are plain text: "[1.0-1.2]" must print as written, not be read as rich markup.
        table = Table(title=escape(title), title_justify="left", title_style="bold")
        for i, col in enumerate(columns):
            table.add_column(escape(col), justify="right" if i >= right_from else "left", no_wrap=True)
        for row in rows:
            if row is None:
                table.add_section()
            else:
                table.add_row(*(escape(str(cell)) for cell in row))
        console.print(table)
        return

    def line(cells):
        return "  ".join(str(c).rjust(wd) if i >= right_from else str(c).ljust(wd)
                         for i, (c, wd) in enumerate(zip(cells, widths)))
    print(title)
    print(line(columns))
    print("  ".join("-" * wd for wd in widths))
    for row in rows:
        print("  ".join("-" * wd for wd in widths) if row is None else line(row))
    print()


class Progress:
    """A progress bar on stderr (rich), or nothing when rich is absent or it is disabled."""

    def __init__(self, total: int, enabled: bool = True):
        self.bar = None
        if enabled:
            try:
                from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
            except ImportError:
                return
            self.bar = Progress(TextColumn("{task.description:<40}"), BarColumn(),
                                TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                                console=_rich_console(stderr=True), transient=True)
            self.task = self.bar.add_task("warming up", total=total)

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.__exit__(*exc)

    def step(self, description: str) -> None:
        if self.bar:
            self.bar.update(self.task, advance=1, description=description)


def num(value, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, or ``-`` for None, NaN and infinities."""
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def ms(seconds: float) -> str:
    """Seconds as milliseconds, with three decimals below 10 ms."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    return f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.1f}"


def spread(median: float, low: float, high: float, digits: int = 2) -> str:
    """``median [low-high]``: a figure with how far its samples ranged."""
    if median is None or not math.isfinite(median):
        return "-"
    return f"{median:.{digits}f} [{num(low, digits)}-{num(high, digits)}]"
