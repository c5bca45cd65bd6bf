"""The weights manifest, read without torch: ``info`` and ``models`` answer at once.

``weights/manifest.json`` maps model ids to their file, sha256, architecture (with the quality levels),
``kind`` and measured points; ``codec.weights.store`` loads the networks it names. An installation's models are
those of the shipped manifest plus the ones the user imported (``aecodec import``, ``codec.weights.imported``),
which live in a folder of the user's, never in the installed package.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from ..core.errors import AecError
from ..core.quality import LEVELS, check_levels, check_quality, default_quality
from ..models.kinds import kind_of
from .imported import user_models_dir
from .shipping import COMPANION, COMPANION_HINT, COMPANION_MODULE, distribution_of


def weights_dir() -> Path:
    """``$AECODEC_WEIGHTS`` if set, else the weights an installed wheel carries (the package data
    ``codec.weights.shipped``), else the repository's ``weights/`` (a checkout, an editable install)."""
    env = os.environ.get("AECODEC_WEIGHTS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent  # codec/weights
    repo = here.parents[1] / "weights"
    for cand in (here / "shipped", repo):
        if (cand / "manifest.json").exists():
            return cand
    return repo


def companion_dirs() -> list[Path]:
    """The folders of the installed companion distribution (``codec.weights.shipping``); none from a checkout."""
    spec = importlib.util.find_spec(COMPANION_MODULE)
    return [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []


def weights_path(manifest: dict, model_id: str, folder: Path) -> Path:
    """Where ``model_id``'s weights file is: in ``folder`` (the manifest's), else in the companion's folder, else
    in the user's models folder (imported models). AecError when none has it, naming the distribution that
    carries it and how to get it (``shipping.COMPANION_HINT``)."""
    name = str(manifest["models"][model_id]["file"])
    for place in (folder, *companion_dirs(), user_models_dir()):
        if (place / name).exists():
            return place / name
    if distribution_of(manifest, model_id) == COMPANION:
        raise AecError(
            f"model {model_id!r} is not installed: its weights are in the package {COMPANION}; {COMPANION_HINT}"
        )
    raise AecError(f"weights file {folder / name} is missing")


def read_manifest(folder: Path | None = None) -> dict:
    """The manifest of ``folder``; without one, the installation's: the shipped manifest with the user's imported
    models added (an id of the shipped manifest is never shadowed; the user's has no default)."""
    if folder is not None:
        return _read(folder)
    manifest = _read(weights_dir())
    user = user_models_dir()
    if (user / "manifest.json").exists():
        for model_id, entry in _read(user)["models"].items():
            manifest["models"].setdefault(model_id, entry)
    return manifest


def _read(folder: Path) -> dict:
    path = folder / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise AecError(f"no weights manifest at {path}") from None
    except (OSError, UnicodeDecodeError) as e:  # a folder, unreadable, not text
        raise AecError(f"cannot read weights manifest {path} ({getattr(e, 'strerror', None) or e})") from None
    except json.JSONDecodeError as e:
        raise AecError(f"weights manifest {path} is not valid JSON ({e})") from None
    models = manifest.get("models", {}) if isinstance(manifest, dict) else None
    if not (isinstance(models, dict) and all(isinstance(entry, dict) for entry in models.values())):
        raise AecError(f'weights manifest {path} must be an object whose "models" maps ids to objects')
    return manifest


def model_kind(model_id: str) -> str | None:
    """The kind of an installed model, None when this installation does not have it."""
    try:
        manifest = read_manifest()
        entry = manifest.get("models", {}).get(model_id) if isinstance(manifest, dict) else None
        return kind_of(entry) if isinstance(entry, dict) else None
    except AecError:
        return None


def levels_of(entry: dict) -> int:
    """Quality levels of a manifest entry's model (its qualities are [1, levels]); an ``arch`` without
    them means the longest ladder, as for a model built from that ``arch``."""
    arch = entry.get("arch")
    try:
        return check_levels(arch.get("levels", LEVELS) if isinstance(arch, dict) else LEVELS)
    except ValueError as e:
        raise AecError(f"manifest arch: {e}") from None


def qualities_of(entry: dict) -> tuple[float, ...] | None:
    """The qualities of a manifest entry's model with one network per quality (``arch.qualities``: an imported
    model), None for a model that codes every quality of [1, levels]."""
    arch = entry.get("arch")
    only = arch.get("qualities") if isinstance(arch, dict) else None
    if only is None:
        return None
    levels = levels_of(entry)
    try:
        return tuple(check_quality(q, levels) for q in only)
    except (TypeError, ValueError) as e:
        raise AecError(f"manifest arch qualities: {e}") from None


def installed_levels(model_id: str | None = None) -> tuple[str, int]:
    """(id, quality levels) of an installed model, the manifest's default when ``model_id`` is None;
    AecError naming the ids this installation has when it lacks the model."""
    model_id, levels, _ = installed_qualities(model_id)
    return model_id, levels


def installed_qualities(model_id: str | None = None) -> tuple[str, int, tuple[float, ...] | None]:
    """(id, quality levels, qualities of a model with one network per quality, else None) of an installed model,
    as ``installed_levels``."""
    manifest = read_manifest()
    models = manifest.get("models", {})
    model_id = model_id or manifest.get("default")
    if model_id not in models:
        have = ", ".join(sorted(models)) or "none"
        raise AecError(f"model {model_id!r} is not available; this installation has: {have}")
    return model_id, levels_of(models[model_id]), qualities_of(models[model_id])


def check_installed_quality(quality: float | None, model_id: str | None = None) -> tuple[str, float]:
    """(id, quality) when the installed model ``model_id`` (None: the default) codes ``quality`` (None: its
    default, ``quality.default_quality``), else ValueError (AecError when the model is not installed);
    torch-free, so a bad -q fails before torch loads."""
    model_id, levels, only = installed_qualities(model_id)
    return model_id, check_quality(default_quality(only) if quality is None else quality, levels, model_id, only)


def write_manifest_entry(folder: Path, model_id: str, entry: dict, make_default: bool | None = True) -> None:
    """Add or replace ``model_id``'s entry in ``folder``'s manifest (created if missing), atomically. The
    default becomes ``model_id`` with ``make_default``, or when there is none yet unless it is None."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {"format": 1, "models": {}}
    manifest["models"][model_id] = entry
    if make_default or (make_default is not None and "default" not in manifest):
        manifest["default"] = model_id
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
