"""Shipped weights: a JSON manifest plus safetensors files in ``weights/``, loaded once per process.

Nothing is unpickled: safetensors only. Every file's sha256 is checked against the manifest before
use, and its first 8 bytes are written into each ``.aec`` so a decoder can tell that a file needs
weights it does not have. The entropy tables (quantized CDFs) are stored in the file, built at
export, so loading never calls CompressAI's ``update()``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.devices import resolve_device
from ..core.digest import sha256_file
from ..core.errors import AecError
from ..models.kinds import kind_of
from ..models.light import light_decoder
from .handle import Codec
from .imported import import_command, user_models_dir
from .manifest import model_kind, read_manifest, weights_dir, weights_path  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    import torch

    from ..models.base import Model

# torch, safetensors and the model kinds are imported where a network is built: a fitted file's decoder needs
# none of them (``load_decoder_for``).


def state_dict_for_model(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Stored tensors → float32 state dict (fp16-stored transforms are widened on load)."""
    return {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}


def model_from_state(entry: dict, sd: dict[str, torch.Tensor]) -> Model:
    """The model a manifest entry describes (its ``kind`` and ``arch``), loaded from a state dict."""
    import torch

    from ..models.base import TABLE_BUFFERS
    from ..models.registry import model_class

    model = model_class(kind_of(entry)).from_arch(entry["arch"])
    # The CDF buffers are empty in a fresh model: give them the stored shapes before loading.
    for name, _ in model.named_buffers():
        if name.endswith(TABLE_BUFFERS) and name in sd:
            module = model.get_submodule(name.rsplit(".", 1)[0])
            setattr(module, name.rsplit(".", 1)[1], torch.empty_like(sd[name]))
    model.load_state_dict(sd, strict=True)
    return model.eval()


@functools.lru_cache(maxsize=8)
def _load(model_id: str | None, device: str, folder: str, user: str) -> Codec:
    """The codec of ``model_id`` from the shipped weights in ``folder`` and the imported ones in ``user`` (the
    folders are the cache key: they are what the environment chose)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    manifest = read_manifest()
    model_id = model_id or manifest.get("default")
    entry = manifest.get("models", {}).get(model_id)
    if entry is None:
        raise AecError(f"model {model_id!r} is not in {folder}/manifest.json nor among the imported models in {user}")
    if not needs_weights(entry):
        return _weightless(model_id, entry, device)
    if not (isinstance(entry, dict) and isinstance(entry.get("file"), str) and isinstance(entry.get("sha256"), str)):
        raise AecError(f"manifest entry for {model_id!r} lacks its file or sha256")
    path = weights_path(manifest, model_id, Path(folder))
    if not path.is_file():
        raise AecError(f"weights file {path} is not a file")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise AecError(f"weights file {path} does not match its manifest sha256 (tampered or damaged)")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise AecError(f"cannot read weights {path}: {e}") from None
    try:
        model = model_from_state(entry, state_dict_for_model(tensors)).to(device).prepare()
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise AecError(f"weights {path} do not fit model {model_id!r}: {e}") from None
    return Codec(model, model_id, bytes.fromhex(digest[:16]), torch.device(device), network_hashes(entry))


def network_hashes(entry: dict) -> dict[float, bytes]:
    """Per quality, the hash files of a model with one network per quality carry (``networks`` of its entry)."""
    nets = entry.get("networks")
    if not isinstance(nets, dict):
        return {}
    try:
        return {float(q): bytes.fromhex(str(net["sha256"])[:16]) for q, net in nets.items()}
    except (KeyError, TypeError, ValueError) as e:
        raise AecError(f"manifest networks of an imported model are damaged ({e})") from None


def needs_weights(entry: dict) -> bool:
    """Whether a manifest entry's kind needs a weights file (the overfitted kind's files carry their decoder)."""
    kind = kind_of(entry)
    light = light_decoder(kind)
    if light is not None:
        return light.needs_weights
    from ..models.registry import model_class

    return model_class(kind).needs_weights


def identity(entry: dict) -> str:
    """The hex digest a file of this entry's model carries: its weights' sha256, or for a kind without
    weights the sha256 of its kind and arch (a decoder of another arch refuses the file)."""
    if needs_weights(entry):
        return str(entry.get("sha256", ""))
    canonical = json.dumps({"kind": kind_of(entry), "arch": entry.get("arch")}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _weightless(model_id: str, entry: dict, device: str) -> Codec:
    import torch

    from ..models.registry import model_class

    try:
        model = model_class(kind_of(entry)).from_arch(entry.get("arch") or {}).to(device).prepare()
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise AecError(f"model {model_id!r}: bad arch in the manifest: {e}") from None
    return Codec(model, model_id, bytes.fromhex(identity(entry)[:16]), torch.device(device))


def load_codec(model_id: str | None = None, device: str | torch.device | None = None) -> Codec:
    """The codec for ``model_id`` (default: the manifest's default), cached per process."""
    return _load(model_id, resolve_device(device), str(weights_dir()), str(user_models_dir()))


def load_codec_for(
    model_id: str, weights_hash: bytes, device: str | torch.device | None = None, quality: float | None = None
) -> Codec:
    """The codec a file (coded at ``quality``) names; a clear error when this installation lacks those weights,
    naming the ``aecodec import`` command that brings an imported model's."""
    _entry_for(model_id, weights_hash, quality)
    return load_codec(model_id, device)


def load_decoder_for(
    model_id: str, weights_hash: bytes, device: str | torch.device | None = None, quality: float | None = None
) -> Codec:
    """``load_codec_for``, for decoding: a kind with a torch-free decoder (``codec.models.light``) gets that
    one, on the CPU whatever ``device`` says, so its files decode without importing torch."""
    light = light_decoder(kind_of(_entry_for(model_id, weights_hash, quality)))
    if light is None:
        return load_codec_for(model_id, weights_hash, device, quality)
    return _light(model_id, str(weights_dir()), str(user_models_dir()))


def _entry_for(model_id: str, weights_hash: bytes, quality: float | None) -> dict:
    """The manifest entry of the model a file names, or AecError when this installation lacks its weights."""
    entry = read_manifest().get("models", {}).get(model_id)
    if not isinstance(entry, dict) or weights_hash.hex() not in _hashes(entry, quality):
        hint = import_command(model_id, quality)
        raise AecError(
            f"this file needs model {model_id!r} with weights {weights_hash.hex()}, "
            "which this installation does not have" + (f": {hint} brings them" if hint else "")
        )
    return entry


@functools.lru_cache(maxsize=8)
def _light(model_id: str, folder: str, user: str) -> Codec:
    """The torch-free decoder of ``model_id`` (cached as ``_load``'s codecs are, by the folders too)."""
    entry = read_manifest()["models"][model_id]
    try:
        model = light_decoder(kind_of(entry)).from_arch(entry.get("arch") or {})
    except (ValueError, KeyError, TypeError) as e:
        raise AecError(f"model {model_id!r}: bad arch in the manifest: {e}") from None
    return Codec(model, model_id, bytes.fromhex(identity(entry)[:16]), "cpu")


def _hashes(entry: dict, quality: float | None) -> set[str]:
    """The hashes (hex) a file of this entry's model may carry (at ``quality``, when given)."""
    nets = {q: h.hex() for q, h in network_hashes(entry).items()}
    if nets:
        return set(nets.values()) if quality is None else {nets[q] for q in (float(quality),) if q in nets}
    return {identity(entry)[:16]}


def save_weights(model: Model, path: Path, half: bool) -> str:
    """Write a model (tables included) as safetensors; returns its sha256.

    With ``half`` the parameters under the model's ``half_stored`` prefixes (its transforms) are
    stored as fp16; gains, quantiles and tables stay float32.
    """
    from safetensors.torch import save_file

    params = {name for name, _ in model.named_parameters()}  # buffers (GDN pedestals, bounds) stay float32
    sd = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        if half and k.startswith(model.half_stored) and k in params:
            v = v.half()
        sd[k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(sd, str(tmp))
    os.replace(tmp, path)
    return sha256_file(path)
