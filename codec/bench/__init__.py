"""Measuring aecodec against classical codecs on the user's own images: ``aecodec bench`` (rate-distortion
curves, BD-rate) and ``aecodec compare`` (one page, side by side at equal bytes).

Submodules import torch, Pillow plugins and matplotlib; the CLI imports them only inside its commands.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..core.errors import AecError


def parse_floats(text: str, option: str = "value") -> list[float]:
    """``"1,2,4.5"`` → ``[1.0, 2.0, 4.5]``; the commands take sweeps as comma lists."""
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise AecError(f"{option} takes a comma list of numbers, got {text!r}") from None
    if not values:
        raise AecError(f"{option}: no value given")
    return values


def parse_names(text: str, choices: Iterable[str], option: str = "--codecs") -> tuple[str, ...]:
    """``"jpeg,webp"`` → ``("jpeg", "webp")``, each checked against ``choices``."""
    choices = tuple(choices)
    names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [n for n in names if n not in choices]
    if unknown or not names:
        raise AecError(
            f"{option}: unknown codec {', '.join(unknown) or '(none given)'}; choose from {', '.join(choices)}"
        )
    return names
