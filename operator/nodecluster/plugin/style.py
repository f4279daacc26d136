"""Colour for people, plain text for pipes and files.

ANSI colour only when the output is a terminal and NO_COLOR (no-color.org) is unset, or
when asked with `--color always`: a script that greps the output, a CI log or a file
never sees escape codes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal, TextIO

ColorMode = Literal["auto", "always", "never"]

GOOD = "32"  # green
BAD = "31"  # red
BUSY = "33"  # yellow
DIM = "2"
BOLD = "1"


def use_color(mode: ColorMode, stream: TextIO) -> bool:
    """Whether to colour what goes to `stream`."""
    if mode == "always":
        return True
    if mode == "never" or "NO_COLOR" in os.environ:
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


Paint = Callable[[str, str], str]


def painter(color: bool) -> Paint:
    """`paint(text, code)`: the text in that SGR colour, or as it is."""
    if not color:
        return lambda text, _code: text
    return lambda text, code: f"\x1b[{code}m{text}\x1b[0m" if text else text
