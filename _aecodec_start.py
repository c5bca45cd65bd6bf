"""The ``aecodec`` command's entry point: Ctrl-C while it starts is one line and exit 130.

The command's own handler (``codec.cli``) exists only once its module is imported, and importing it
(Pillow, click) takes a noticeable fraction of a second; a Ctrl-C before that would print Python's
``KeyboardInterrupt`` traceback. This module imports nothing heavy: it installs a handler first, then
loads the command. (The interpreter's own start-up, before this module runs, remains uncovered.)
"""

from __future__ import annotations

import signal
import sys


def _interrupted(signum: int, frame: object) -> None:
    # Imported here, not above: importing ``codec`` loads Pillow, part of what this handler covers.
    from codec.core.errors import EXIT_INTERRUPTED

    sys.stderr.write("aecodec: interrupted\n")
    raise SystemExit(EXIT_INTERRUPTED)


def main() -> None:
    previous = signal.signal(signal.SIGINT, _interrupted)
    try:
        from codec.cli import main as command
    finally:
        signal.signal(signal.SIGINT, previous)
    command()


if __name__ == "__main__":
    main()
