"""Device choice: the one place that decides what ``auto`` means and which device names exist."""

from __future__ import annotations

import torch

from .errors import AecError

#: Images per network pass on a GPU: enough to fill an H100 with Kodak-size images, small enough for its memory.
BATCH = 16


def available() -> list[str]:
    """Devices this machine can run on: the CPU, and CUDA when present (fastest last)."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def resolve_device(device: str | torch.device | None) -> str:
    """``auto`` (or None) → the fastest available device; other names validated. AecError otherwise."""
    name = str(device or "auto")
    if name == "auto":
        return available()[-1]
    if name.startswith("cuda") and "cuda" not in available():
        raise AecError(f"--device {name} asked for, but CUDA is not available")
    if name != "cpu" and not name.startswith("cuda"):
        raise AecError(f"unknown device {name!r} (use auto, cpu or cuda)")
    return name
