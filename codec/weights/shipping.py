"""Which distribution ships which weights: ``aecodec`` the default model, ``aecodec-models`` the earlier ones.

The repository's ``weights/`` holds every model ever shipped (files written with them must keep decoding),
but one wheel with all of them grows by ~18 MB per version toward PyPI's 100 MB limit. So the ``aecodec``
wheel carries the manifest and the default model's file, and the companion ``aecodec-models`` (built from
``packaging/aecodec-models/``) the other files, as the package ``aecodec_models``; the weights loader looks
in both. Standard library only: the two ``setup.py`` files load this module by path at build time.
"""

from __future__ import annotations

#: The main distribution and the companion that carries the earlier models' weights (and its import name).
MAIN = "aecodec"
COMPANION = "aecodec-models"
COMPANION_MODULE = "aecodec_models"
#: How to get the companion: no package index has it (nor ``aecodec``), so ``pip install aecodec-models`` fails.
COMPANION_HINT = (
    f"no package index has {COMPANION}: build its wheel in a checkout of aecodec "
    f"(pip wheel --no-deps packaging/{COMPANION}) and pip install the .whl it writes, "
    "or install the checkout itself (pip install -e .), which has every model"
)


def distribution_of(manifest: dict, model_id: str) -> str:
    """The distribution whose wheel carries ``model_id``'s weights file: the default model's is in the main one,
    and so is (trivially) a model without a weights file (the overfitted kind: files carry their decoder)."""
    entry = manifest.get("models", {}).get(model_id)
    weightless = isinstance(entry, dict) and entry.get("file") is None
    return MAIN if model_id == manifest.get("default") or weightless else COMPANION


def files_of(manifest: dict, distribution: str) -> list[str]:
    """The weights files (names in ``weights/``) that ``distribution``'s wheel carries."""
    return sorted(
        str(entry["file"])
        for model_id, entry in manifest.get("models", {}).items()
        if isinstance(entry, dict) and "file" in entry and distribution_of(manifest, model_id) == distribution
    )
