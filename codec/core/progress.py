"""Progress bars for long steps (several inputs, the tiles of one large image, effort iterations).

Drawn only where someone watches: stderr is a terminal with room for a bar. On a terminal of 0 columns
(a detached pty, some CI runners) tqdm would print empty lines; in a log file it would leave ``\\r`` lines.
``aecodec --quiet`` silences ``log``, which hides the bars of the library's steps (tiles, effort).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from tqdm import tqdm

T = TypeVar("T")

#: Raised above WARNING by ``--quiet``: no bars for the library's steps (named as before the layout: the CLI sets it).
log = logging.getLogger("codec.progress")
#: The encoder's iterations report here (``codec.coding.effort``'s gains, a fitted kind's fits): ``-v`` shows its
#: lines, ``--quiet`` raises its level above WARNING, which also hides their bars (``effort_bar``).
effort_log = logging.getLogger("codec.effort")
#: Narrower terminals get no bar: tqdm cannot fit one and prints empty or broken lines.
MIN_COLUMNS = 20


def terminal_columns(fd: int) -> int | None:
    """Columns of the terminal on ``fd``; None when it is not a terminal (a file, a pipe, closed)."""
    try:
        return os.get_terminal_size(fd).columns if os.isatty(fd) else None
    except (OSError, ValueError):
        return None


def wanted(columns: int | None) -> bool:
    """Whether a terminal of ``columns`` columns (None: not a terminal) gets a progress bar."""
    return columns is not None and columns >= MIN_COLUMNS


def shown() -> bool:
    """Whether a bar would be drawn on stderr now."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor (tests, IDEs)
        return False
    return wanted(terminal_columns(fd))


def bar(total: int, desc: str, unit: str, hidden: bool = False) -> tqdm:
    """A transient bar over ``total`` steps on stderr; disabled (a no-op) when nobody would see it, when it
    has one step only, or when ``hidden``."""
    from tqdm import tqdm

    off = hidden or total < 2 or not shown() or not log.isEnabledFor(logging.WARNING)
    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=off, file=sys.stderr, dynamic_ncols=True)


def effort_bar(total: int) -> tqdm:
    """A bar over the encoder's iterations (``codec.coding.effort``, a fitted kind's fit), not when ``effort_log``
    is silenced (``--quiet``)."""
    return bar(total, "effort", "it", hidden=not effort_log.isEnabledFor(logging.WARNING))


def fit_bar(total: int) -> tqdm:
    """A bar over a fitted kind's iterations (labelled ``fit``), hidden like ``effort_bar``."""
    return bar(total, "fit", "it", hidden=not effort_log.isEnabledFor(logging.WARNING))


def over(items: Sequence[T], desc: str, unit: str) -> Iterator[T]:
    """``items``, one by one, with a ``bar`` over them (a long image's tiles)."""
    with bar(len(items), desc, unit) as shown_bar:
        for item in items:
            yield item
            shown_bar.update()
