"""``Codec``: a loaded model with the identity written into its files; below both ``api`` and ``store``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ..models.base import Model


def _cpu() -> torch.device:
    import torch

    return torch.device("cpu")


@dataclass
class Codec:
    """A model prepared for coding (``Model.prepare``) and the identity written into files.

    ``model`` may also be a kind's torch-free decoding model (``codec.models.light``; ``device`` then "cpu"):
    what ``codec.weights.store.load_decoder_for`` gives a decoder, never an encoder."""

    model: Model | Any
    model_id: str = "untracked"
    weights_hash: bytes = b"\0" * 8
    device: torch.device | str = field(default_factory=_cpu)
    #: A model with one network per quality (imported): the hash each quality's files carry, that network's own,
    #: so that importing more qualities later leaves the files written before decodable.
    quality_hashes: dict[float, bytes] = field(default_factory=dict)

    def hash_at(self, quality: float) -> bytes:
        """The weights hash a file coded at ``quality`` carries."""
        return self.quality_hashes.get(float(quality), self.weights_hash)
