"""``aecodec import compressai ARCH``: CompressAI's zoo weights (or any checkpoint of a zoo architecture) converted
to our weights format, a safetensors file plus a manifest entry in the user's models folder
(``codec.weights.imported.user_models_dir``); nothing is written into the installed package.

A checkpoint is untrusted input. It is read without running code: safetensors, or ``torch.load(...,
weights_only=True)``, which refuses any pickle that names a callable. Then every tensor is checked against the
architecture (names, shapes, finite values, entropy tables the C++ coder can use safely) and anything else is
refused in one line. A checkpoint's own entropy tables are kept when it has them (the zoo's files do: then every
machine that imports a file gets the same tables, and so the same network hash); one without them (a training
checkpoint) gets them from CompressAI's own ``update(force=True)``.

With network the weights come the way ``compressai.zoo`` gets them: its URL table, ``torch.hub``'s cache folder
and ``load_state_dict_from_url``, then the zoo's key renaming (``load_pretrained``). The zoo's own loader calls
``load_state_dict_from_url(url)`` with torch's defaults, ``check_hash=False`` and ``weights_only=False`` (a full
unpickling of whatever the URL served); here the same function runs with ``check_hash=True, weights_only=True``,
and a file already in the cache is checked against the hash its name carries (torch checks only downloads).
"""

from __future__ import annotations

import hashlib
import re
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..core import quality as Q
from ..core.errors import AecError
from ..models import zoo_vbr
from ..models.zoo import CLASSES, HYPER, TABLES, ZooArch, ZooModel, ZooNet
from ..models.zoo_vbr import VBR_CLASSES, VbrArch, ZooVbrModel
from .imported import METRICS, REFUSED, VARIABLE_RATE, model_id, user_models_dir
from .manifest import read_manifest, write_manifest_entry
from .store import _load, model_from_state, save_weights, sha256_file, state_dict_for_model

#: Bounds that keep a hostile checkpoint from making the tables or the reference network huge: channels (the
#: zoo's widest is 320), symbols of a factorized table (the zoo's q8 tails span a few hundred), CDF rows and
#: |median| / |offset| (symbols stay far inside int32).
MAX_CHANNELS = 1024
MAX_SPAN = zoo_vbr.MAX_Z_SYMBOLS
MAX_TABLE_ROWS = 4096
MAX_CENTRE = 1 << 20
MAX_FILE_BYTES = 1 << 31
CDF_TOP = 1 << 16  # CompressAI's rANS precision
#: |Gain| of a variable-rate model (the inverse of y's quantization step; the zoo's span about 0.1 to 1).
GAIN_RANGE = (1e-3, 1e3)
assert set(VARIABLE_RATE) == set(VBR_CLASSES), "the torch-free list names the variable-rate architectures"


@dataclass(frozen=True)
class Network:
    """One converted network and where it came from (for the manifest)."""

    quality: int  # ours
    net: ZooNet
    origin: str  # the URL or the file's name
    file_sha256: str


def check_request(arch: str, metric: str) -> None:
    """AecError unless this version imports ``arch`` trained for ``metric``."""
    if arch in REFUSED:
        raise AecError(f"{arch} is not importable: {REFUSED[arch]}")
    if arch not in CLASSES and arch not in VBR_CLASSES:
        raise AecError(f"unknown architecture {arch!r}; importable: {', '.join([*CLASSES, *VBR_CLASSES])}")
    if metric not in METRICS:
        raise AecError(f"unknown metric {metric!r}; CompressAI trains for {', '.join(METRICS)}")


def zoo_urls() -> dict[tuple[str, str, int], str]:
    """Every file the zoo publishes: (architecture, metric, quality) → URL (quality 0: a variable-rate model)."""
    from compressai.zoo import image, image_vbr

    urls = {(a, m, q): u for a, by in image.model_urls.items() for m, qs in by.items() for q, u in qs.items()}
    urls.update({(a, m, 0): u for a, by in image_vbr.model_urls.items() for m, u in by.items()})
    return urls


def published_as(digest: str) -> tuple[str, str, int] | None:
    """(architecture, metric, quality) of the zoo file whose name carries ``digest``'s prefix, if any."""
    for key, url in zoo_urls().items():
        found = torch.hub.HASH_REGEX.search(url.rsplit("/", 1)[1])
        if found and found.group(1) and digest.startswith(found.group(1)):
            return key
    return None


def _weights_only_reason(e: Exception) -> str:
    """What torch's weights-only unpickler stopped at, in a few words (its message is a paragraph)."""
    for pattern in (r"GLOBAL (\S+)", r"(Unsupported operand \d+)", r"(invalid load key[^.\n]*)"):
        found = re.search(pattern, str(e))
        if found:
            return found.group(1)
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def read_checkpoint(path: Path) -> object:
    """The object a checkpoint file holds, read without running code (safetensors or weights-only pickle)."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise AecError(f"{path}: cannot read ({e.strerror or e})") from None
    if size > MAX_FILE_BYTES:
        raise AecError(f"{path}: {size} bytes, more than any checkpoint of these architectures")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise AecError(f"{path}: not a safetensors file ({e})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every way a foreign file fails is one refusal
        raise _unreadable(str(path), e) from None


def _unreadable(label: str, e: Exception) -> AecError:
    """The refusal of a file ``torch.load(weights_only=True)`` failed on: a pickle that names a callable (it
    would run code), or anything else that is no checkpoint."""
    if re.search(r"GLOBAL \S+", str(e)):
        return AecError(f"{label}: refused, a pickle that would run code ({_weights_only_reason(e)})")
    return AecError(f"{label}: not a PyTorch checkpoint ({_weights_only_reason(e)})")


def tensors_of(obj: object, label: str) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint (CompressAI's training ones wrap it in ``state_dict``), keys renamed as
    the zoo renames them (``load_pretrained``)."""
    from compressai.zoo.pretrained import load_pretrained

    if isinstance(obj, dict):
        for wrapper in ("state_dict", "network"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj:
        raise AecError(f"{label}: holds no state dict (a mapping of names to tensors)")
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise AecError(f"{label}: entry {name!r} is a {type(value).__name__}, not a tensor")
    return load_pretrained(obj)


def _names(keys: set[str], limit: int = 4) -> str:
    shown = sorted(keys)[:limit]
    return ", ".join(shown) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_tensors(sd: dict[str, torch.Tensor], arch: str, label: str) -> tuple[int, int]:
    """(N, M) of a state dict of ``arch``, after checking every tensor's name, shape and values; AecError else."""
    width = {k: sd[k].shape[0] for k in ("g_a.0.weight", "g_a.6.weight") if k in sd and sd[k].dim() == 4}
    if len(width) < 2:
        raise AecError(f"{label}: no g_a.0.weight / g_a.6.weight convolutions: not a {arch} checkpoint")
    N, M = width["g_a.0.weight"], width["g_a.6.weight"]
    if not (0 < N <= MAX_CHANNELS and 0 < M <= MAX_CHANNELS):
        raise AecError(f"{label}: {N} and {M} channels, more than {MAX_CHANNELS}: not a {arch} checkpoint")
    expected = {k: v.shape for k, v in _reference(arch, N, M, sd).state_dict().items()}
    fixed = {k for k in expected if not k.endswith(TABLES)}
    missing, extra = fixed - sd.keys(), sd.keys() - expected.keys()
    if missing or extra:
        parts = ([f"missing {_names(missing)}"] if missing else []) + ([f"unexpected {_names(extra)}"] if extra else [])
        raise AecError(f"{label}: {'; '.join(parts)}: not a {arch} checkpoint")
    for k in sorted(sd):
        t = sd[k]
        if k in fixed and tuple(t.shape) != tuple(expected[k]):
            raise AecError(
                f"{label}: {k} has shape {list(t.shape)}, {arch} with N={N}, M={M} has {list(expected[k])}: "
                "another architecture or quality"
            )
        if k in fixed and not t.is_floating_point():
            raise AecError(f"{label}: {k} holds {t.dtype}, not floating-point numbers")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise AecError(f"{label}: {k} holds NaN or infinite values")
    _check_quantiles(sd["entropy_bottleneck.quantiles"], label)
    if "Gain" in sd and not bool(((sd["Gain"].abs() >= GAIN_RANGE[0]) & (sd["Gain"].abs() <= GAIN_RANGE[1])).all()):
        raise AecError(f"{label}: Gain out of range (|Gain| from {GAIN_RANGE[0]:g} to {GAIN_RANGE[1]:g})")
    return N, M


def _reference(arch: str, N: int, M: int, sd: dict[str, torch.Tensor]) -> torch.nn.Module:
    """CompressAI's network of ``arch`` that a state dict must match (a variable-rate one with the variable z step
    when the state dict has its network)."""
    if arch in VBR_CLASSES:
        return zoo_vbr.reference(arch, N, M, zoo_vbr.variable_z(sd))
    return CLASSES[arch](N, M)


def _check_quantiles(quantiles: torch.Tensor, label: str) -> None:
    """The entropy bottleneck's medians and tails bound its symbols and its tables' length."""
    lo, median, hi = quantiles.double().unbind(-1)
    if bool((median.abs() > MAX_CENTRE).any()) or bool(((hi - lo) > MAX_SPAN).any()) or bool((hi < lo).any()):
        raise AecError(f"{label}: entropy_bottleneck.quantiles out of range (medians, or tails over {MAX_SPAN})")


def _check_cdfs(sd: dict[str, torch.Tensor], prefix: str, rows: int, label: str) -> bool:
    """True when the checkpoint has the tables of the entropy model at ``prefix`` and the C++ coder can use them
    safely (each row a CDF from 0 to 2^16, strictly increasing over its length), False when it has none."""
    keys = [f"{prefix}.{t}" for t in ("_quantized_cdf", "_offset", "_cdf_length")]
    if not any(k in sd and sd[k].numel() for k in keys):
        return False
    cdf, offset, length = (sd.get(k, torch.empty(0)) for k in keys)
    bad = f"{label}: {prefix} tables unusable"
    if cdf.is_floating_point() or offset.is_floating_point() or length.is_floating_point() or cdf.dim() != 2:
        raise AecError(f"{bad}: not integer tables")
    if cdf.shape[0] != rows or offset.shape != (rows,) or length.shape != (rows,) or cdf.shape[1] > MAX_SPAN + 3:
        raise AecError(f"{bad}: {list(cdf.shape)} CDFs for {rows} rows")
    c, n = cdf.long(), length.long()
    if bool((n < 3).any() or (n > c.shape[1]).any() or (offset.long().abs() > MAX_CENTRE).any()):
        raise AecError(f"{bad}: lengths or offsets out of range")
    pos = torch.arange(c.shape[1])
    rising = (c[:, 1:] > c[:, :-1]) | (pos[None, 1:] >= n[:, None])
    if bool((c[:, 0] != 0).any() or (c.gather(1, n[:, None] - 1) != CDF_TOP).any() or not rising.all()):
        raise AecError(f"{bad}: a row is no CDF from 0 to {CDF_TOP}")
    return True


def _tables_kept(sd: dict[str, torch.Tensor], arch: str, N: int, M: int, label: str) -> bool:
    """True when the checkpoint's entropy tables are complete and usable (then they are kept), False when it
    has none (they are built); AecError for tables that are there but unusable."""
    hyper = arch in HYPER or arch in VBR_CLASSES
    kept = [_check_cdfs(sd, "entropy_bottleneck", N if hyper else M, label)]
    if hyper:
        table = sd.get("gaussian_conditional.scale_table", torch.empty(0)).double()
        if _check_cdfs(sd, "gaussian_conditional", table.numel(), label):
            steps = table[1:] - table[:-1]
            if not (2 <= table.numel() <= MAX_TABLE_ROWS and bool((table > 0).all()) and bool((steps > 0).all())):
                raise AecError(f"{label}: gaussian_conditional.scale_table is not an increasing list of scales")
            kept.append(True)
        else:
            kept.append(False)
    return all(kept)


def convert(sd: dict[str, torch.Tensor], arch: str, quality: int, label: str) -> ZooNet:
    """The network of a checked state dict, ready to code (tables kept or built, the exact path built)."""
    N, M = check_tensors(sd, arch, label)
    kept = _tables_kept(sd, arch, N, M, label)
    net = ZooNet(arch, N, M, quality)
    sd = {k: v for k, v in state_dict_for_model(sd).items() if kept or not k.endswith(TABLES)}
    for name, _ in net.named_buffers():  # the tables' shapes follow the data: give them the stored ones
        if name.endswith(TABLES) and name in sd:
            module, leaf = name.rsplit(".", 1)
            setattr(net.get_submodule(module), leaf, torch.empty_like(sd[name]))
    net.load_state_dict(sd, strict=False)  # every name was checked above; tables not kept are built below
    try:
        net.eval().prepare() if kept else net.eval().build_tables()
    except (RuntimeError, ValueError) as e:
        raise AecError(f"{label}: cannot be coded exactly ({e})") from None
    return net


def network_digest(net: ZooNet) -> str:
    """sha256 of one network's tensors (names, dtypes, shapes, bytes): the hash its files carry, which stays the
    same when other qualities are imported beside it."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _zoo_qualities(arch: str, metric: str) -> list[int]:
    return sorted(q for (a, m, q) in zoo_urls() if (a, m) == (arch, metric) and q)


def plan(arch: str, metric: str, qualities: list[int] | None, files: list[Path]) -> list[tuple[int, Path | None]]:
    """(zoo quality, file or None for the zoo's download) of each network to import. Files pair with
    ``qualities`` in order; without them, a file's quality is that of the zoo file it is (by its sha256)."""
    top = len(Q.COMPRESSAI_LAMBDAS)
    for q in qualities or []:
        if not 1 <= q <= top:
            raise AecError(f"--quality {q}: CompressAI's zoo qualities are 1 to {top}")
    if qualities is not None and len(set(qualities)) != len(qualities):
        raise AecError("--quality names a quality twice")
    if not files:
        qs = qualities or _zoo_qualities(arch, metric)
        if not qs:
            raise AecError(f"CompressAI publishes no {metric} weights of {arch}: give a checkpoint with --from")
        return [(q, None) for q in qs]
    if qualities is None:
        qualities = []
        for path in files:
            published = published_as(sha256_file(path)) if path.is_file() else None
            if published is None or published[:2] != (arch, metric):
                raise AecError(f"{path}: give its quality (--quality, one per --from file, in order)")
            qualities.append(published[2])
    if len(qualities) != len(files):
        raise AecError(f"{len(files)} --from files but {len(qualities)} qualities: give one quality per file")
    return list(zip(qualities, files, strict=True))


def from_file(path: Path, arch: str, metric: str, quality: int) -> tuple[object, str, str]:
    """(checkpoint object, origin, file sha256) of a local file; a file the zoo published must be the one asked
    for, and a file named like one must be it."""
    try:
        digest = sha256_file(path)
    except OSError as e:
        raise AecError(f"{path}: cannot read ({e.strerror or e})") from None
    published = published_as(digest)
    if published is not None and published != (arch, metric, quality):
        a, m, q = published
        at = lambda k: f" at quality {k}" if k else ""  # noqa: E731 - quality 0: a variable-rate model's one file
        raise AecError(f"{path}: this is CompressAI's {a} ({m}){at(q)}, not {arch} ({metric}){at(quality)}")
    named = [key for key, url in zoo_urls().items() if url.rsplit("/", 1)[1] == path.name]
    if named and published is None:
        raise AecError(f"{path}: named as a file of CompressAI's zoo, but its sha256 is not the one its name carries")
    return read_checkpoint(path), path.name, digest


def fetch(arch: str, metric: str, quality: int, progress: bool) -> tuple[object, str, str]:
    """(checkpoint object, URL, file sha256) through torch.hub's cache, as the zoo loads it (see the module)."""
    url = zoo_urls().get((arch, metric, quality))
    if url is None:
        have = ", ".join(map(str, _zoo_qualities(arch, metric))) or "none"
        raise AecError(f"CompressAI publishes no {metric} weights of {arch} at quality {quality} (it has: {have})")
    name = url.rsplit("/", 1)[1]
    found = torch.hub.HASH_REGEX.search(name)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / name
    if cached.is_file() and found and not sha256_file(cached).startswith(found.group(1)):
        raise AecError(f"{cached}: its sha256 is not the one its name carries (damaged or replaced): delete it")
    try:
        if not cached.is_file():  # torch's downloader, hash checked, without load_state_dict_from_url's own line
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), found.group(1) if found else None, progress=progress)
        obj = torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=progress, check_hash=True, weights_only=True
        )
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise AecError(
            f"cannot download {url} ({reason}); without network, download it elsewhere and give it with --from"
        ) from None
    except Exception as e:  # noqa: BLE001 - a hash mismatch (RuntimeError) or a file that is no checkpoint
        if "invalid hash value" in str(e):
            raise AecError(f"{url}: the download is not the file its name's hash names (torch.hub: {e})") from None
        raise _unreadable(str(cached), e) from None
    return obj, url, sha256_file(cached)


def _imported(mid: str, folder: Path) -> tuple[dict[int, ZooNet], dict[str, dict]]:
    """The networks (and their manifest records) already imported under ``mid``: kept beside the new ones."""
    entry = read_manifest(folder)["models"].get(mid) if (folder / "manifest.json").exists() else None
    if not isinstance(entry, dict):
        return {}, {}
    path = folder / str(entry.get("file"))
    if not path.is_file() or sha256_file(path) != entry.get("sha256"):
        raise AecError(f"{path}: missing or not the file its manifest names; delete it and import again")
    try:
        model = model_from_state(entry, state_dict_for_model(load_file(str(path))))
    except (SafetensorError, OSError, RuntimeError, ValueError, KeyError, TypeError) as e:
        raise AecError(f"{path}: cannot be read back ({e}); delete it and import again") from None
    assert isinstance(model, ZooModel)
    return {net.quality: net for net in model.nets()}, dict(entry.get("networks", {}))


def install(arch: str, metric: str, networks: list[Network]) -> tuple[str, dict]:
    """Write the networks (with those imported before under the same id) and their manifest entry into the
    user's models folder; (model id, manifest entry)."""
    folder, mid = user_models_dir(), model_id(arch, metric)
    nets, records = _imported(mid, folder)
    for n in networks:
        nets[n.quality] = n.net
        records[str(n.quality)] = {
            "sha256": network_digest(n.net),
            "zoo_quality": Q.zoo_quality(n.quality),
            "lambda": _lambdas(metric)[Q.zoo_quality(n.quality) - 1],
            "from": n.origin,
            "file_sha256": n.file_sha256,
        }
    model = ZooModel(ZooArch(arch, metric, {q: (net.N, net.M) for q, net in nets.items()}))
    for q, net in nets.items():
        model.add_module(f"{ZooModel.PREFIX}{q}", net)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        digest = save_weights(model, folder / f"{mid}.safetensors", half=False)
        entry = {
            "file": f"{mid}.safetensors",
            "sha256": digest,
            "kind": ZooModel.kind,
            "arch": model.arch_dict(),
            "dtype": "float32",
            "source": f"CompressAI's {arch} ({metric}), trained by CompressAI, imported with aecodec import",
            "networks": dict(sorted(records.items(), key=lambda kv: int(kv[0]))),
        }
        write_manifest_entry(folder, mid, entry, make_default=None)
    except OSError as e:
        raise AecError(f"{folder}: cannot write the imported model ({e.strerror or e})") from None
    _load.cache_clear()  # a model of this id loaded before in this process is stale
    return mid, entry


def _lambdas(metric: str) -> tuple[float, ...]:
    return Q.COMPRESSAI_LAMBDAS if metric == "mse" else Q.COMPRESSAI_MSSSIM_LAMBDAS


def import_compressai(
    arch: str, metric: str, qualities: list[int] | None = None, files: list[Path] | None = None, progress: bool = False
) -> tuple[str, dict]:
    """Import CompressAI networks of ``arch`` for ``metric``: ``qualities`` (zoo numbers, 1..8; default: every one
    the zoo has, or those of the ``files``) from the zoo through torch.hub, or from local ``files`` paired with
    them in order. Every network is read and checked before anything is written. (model id, manifest entry)."""
    check_request(arch, metric)
    if arch in VBR_CLASSES:
        return import_variable_rate(arch, metric, qualities, list(files or []), progress)
    networks = []
    for zoo_q, path in plan(arch, metric, qualities, list(files or [])):
        obj, origin, digest = (
            fetch(arch, metric, zoo_q, progress) if path is None else from_file(path, arch, metric, zoo_q)
        )
        ours = Q.compressai_quality(zoo_q)
        networks.append(Network(ours, convert(tensors_of(obj, origin), arch, ours, origin), origin, digest))
    return install(arch, metric, networks)


# -- variable-rate models: one network, its per-quality grid computed here, once --------------------------------


def convert_variable_rate(sd: dict[str, torch.Tensor], arch: str, metric: str, label: str) -> ZooVbrModel:
    """The variable-rate model of a checked state dict: its tables kept or built, then the grid of per-quality
    scales, z steps and z tables computed once (``ZooVbrModel.build_grid``) and the exact path built."""
    sd = {k: v for k, v in sd.items() if k != "QuantOffset"}  # as CompressAI's from_state_dict drops it
    N, M = check_tensors(sd, arch, label)
    kept = _tables_kept(sd, arch, N, M, label)
    model = ZooVbrModel(VbrArch(arch, metric, N, M, zoo_vbr.variable_z(sd)))
    sd = {k: v for k, v in state_dict_for_model(sd).items() if kept or not k.endswith(TABLES)}
    for name, _ in model.named_buffers():
        if name.endswith(TABLES) and name in sd:
            module, leaf = name.rsplit(".", 1)
            setattr(model.get_submodule(module), leaf, torch.empty_like(sd[name]))
    model.load_state_dict(sd, strict=False)  # every name was checked above; the grid is built below
    try:
        model.eval().build_grid() if kept else model.eval().build_tables()
    except (RuntimeError, ValueError) as e:
        raise AecError(f"{label}: cannot be coded exactly ({e})") from None
    return model


def import_variable_rate(
    arch: str, metric: str, qualities: list[int] | None, files: list[Path], progress: bool
) -> tuple[str, dict]:
    """Import a variable-rate model: one network for every quality, from the zoo or one ``--from`` file."""
    if qualities is not None:
        raise AecError(f"{arch} is one network for every quality: give no --quality")
    if len(files) > 1:
        raise AecError(f"{arch} is one network for every quality: give one --from file")
    if not files and (arch, metric, 0) not in zoo_urls():
        raise AecError(f"CompressAI publishes no {metric} weights of {arch}: give a checkpoint with --from")
    obj, origin, digest = fetch(arch, metric, 0, progress) if not files else from_file(files[0], arch, metric, 0)
    model = convert_variable_rate(tensors_of(obj, origin), arch, metric, origin)
    folder, mid = user_models_dir(), model_id(arch, metric)
    entry = {
        "file": f"{mid}.safetensors",
        "kind": ZooVbrModel.kind,
        "arch": model.arch_dict(),
        "dtype": "float32",
        "source": f"CompressAI's {arch} ({metric}), trained by CompressAI, imported with aecodec import",
        "lambdas": {str(Q.compressai_quality(k)): lam for k, lam in enumerate(_lambdas(metric), 1)},
        "from": origin,
        "file_sha256": digest,
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        entry["sha256"] = save_weights(model, folder / entry["file"], half=False)
        write_manifest_entry(folder, mid, entry, make_default=None)
    except OSError as e:
        raise AecError(f"{folder}: cannot write the imported model ({e.strerror or e})") from None
    _load.cache_clear()  # a model of this id loaded before in this process is stale
    return mid, entry
