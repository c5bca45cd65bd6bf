"""Device choice: the one place that decides what ``auto`` means and which device names exist."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import AecError

if TYPE_CHECKING:
    import torch

#: Images per network pass on a GPU: enough to fill an H100 with Kodak-size images, small enough for its memory.
BATCH = 16


def available() -> list[str]:
    """Devices this machine can run on: the CPU, and CUDA when present (fastest last)."""
    import torch  # here: naming a device costs no torch (a fitted file decodes without it)

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def resolve_device(device: str | torch.device | None) -> str:
    """``auto`` (or None) → the fastest available device; other names validated. AecError otherwise."""
    name = check_device_name(device)
    if name == "auto":
        return available()[-1]
    if name.startswith("cuda") and "cuda" not in available():
        raise AecError(f"--device {name} asked for, but CUDA is not available")
    return name


def check_device_name(device: str | torch.device | None) -> str:
    """The device's name (None: ``auto``) if it is one ``resolve_device`` knows, else AecError; without torch."""
    name = str(device or "auto")
    if name not in ("auto", "cpu") and not name.startswith("cuda"):
        raise AecError(f"unknown device {name!r} (use auto, cpu or cuda)")
    return name
