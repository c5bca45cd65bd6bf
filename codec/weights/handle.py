"""``Codec``: a loaded model with the identity written into its files; below both ``api`` and ``store``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.base import Model


@dataclass
class Codec:
    """A model prepared for coding (``Model.prepare``) and the identity written into files."""

    model: Model
    model_id: str = "untracked"
    weights_hash: bytes = b"\0" * 8
    device: torch.device = torch.device("cpu")
