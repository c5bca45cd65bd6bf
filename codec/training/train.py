"""Training loop for the variable-rate network (``aecodec train``).

One network learns all qualities: every sample of a batch draws its own quality uniformly in
[1, levels] (fractional values included, so the gain interpolation is trained too) and is weighted
by that quality's λ. Loss per sample = bpp + λ·255²·MSE (or λ_ms·(1 − MS-SSIM)). ``levels`` is the
whole ladder unless asked otherwise; weights or a checkpoint with fewer levels are extended upward
(``fit_levels``).

Runs resume from ``last.pt`` in the run folder; a checkpoint is written every few minutes, on
Ctrl-C / SIGTERM and at the end. Under ``torchrun`` every process trains on its own shard of the
images and DistributedDataParallel averages the gradients (gloo on CPU, NCCL on CUDA).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from ..coding import decoding, encoding
from ..coding.options import EncodeOptions
from ..core import engine
from ..core import quality as Q
from ..core.devices import resolve_device
from ..core.tensors import psnr
from ..models.base import TABLE_BUFFERS, Model, Trainable
from ..models.registry import DEFAULT_KIND, trainable_class
from ..weights.handle import Codec
from .config import TrainConfig
from .data import CropSampler, image_files, load_rgb

#: Qualities validated by default, besides the model's top level: 3 and 6 were q1 and q4 of v1, 10
#: the top of v2-v4, so validation curves stay comparable across runs.
VAL_QUALITIES = (1.0, 3.0, 6.0, 10.0)


# -- small pure helpers ------------------------------------------------------------------------
def validation_qualities(asked: tuple[float, ...] | None, levels: int) -> tuple[float, ...]:
    """The qualities to validate: those asked (each checked against ``levels``), else ``VAL_QUALITIES``
    within the range plus the top level."""
    if asked is not None:
        return tuple(Q.check_quality(q, levels) for q in asked)
    return tuple(sorted({q for q in VAL_QUALITIES if q <= levels} | {float(levels)}))


def sample_qualities(n: int, levels: int, generator: torch.Generator) -> Tensor:
    """``n`` qualities drawn uniformly in [1, levels]: the model's whole range, fractions included."""
    return Q.Q_MIN + (levels - Q.Q_MIN) * torch.rand(n, generator=generator)


def fit_levels(model: Trainable, sd: dict[str, Tensor], old: tuple[float, ...]) -> list[str]:
    """Move a state dict's per-level parameters (``model.level_params``) from ladder ``old`` onto the
    model's (``quality.remap_levels``: shared levels kept exactly, others interpolated or extrapolated
    in log λ) and drop the tables frozen from them, which ``build_tables`` rebuilds. Returns the
    names moved, none when the ladders are the same."""
    new = Q.ladder(model.levels)
    if tuple(old) == new:
        return []
    for name in model.level_params:
        sd[name] = torch.tensor(Q.remap_levels(sd[name].tolist(), tuple(old), new), dtype=torch.float32)
    for name in model.level_tables:
        sd.pop(name, None)
    return list(model.level_params)


def stored_levels(model: Trainable, sd: dict[str, Tensor]) -> int:
    """Quality levels of a state dict of ``model``'s kind: the rows of its per-level parameters (they must
    agree), the model's own count for a kind with none."""
    rows = {sd[name].shape[0] for name in model.level_params if name in sd}
    if len(rows) > 1:
        raise ValueError(f"the per-level parameters {', '.join(model.level_params)} disagree on the level count")
    return rows.pop() if rows else model.levels


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up, flat, then a cosine down to ``final_lr_fraction`` over the last part."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    if progress <= cfg.decay_start or cfg.decay_start >= 1:  # 1: a constant-rate trunk
        return cfg.lr * warm
    t = min(1.0, (progress - cfg.decay_start) / (1 - cfg.decay_start))
    lo = cfg.final_lr_fraction
    return cfg.lr * warm * (lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * t)))


def lambdas_for(qualities: Tensor) -> Tensor:
    """λ of each (fractional) quality, log-linear between ladder points."""
    return torch.tensor([Q.lmbda(float(q)) for q in qualities], dtype=torch.float32)


def rd_loss(out: dict, x: Tensor, lmbda: Tensor, metric: str) -> dict[str, Tensor]:
    """Per-sample rate + λ·distortion (``per_sample``), averaged (``loss``); also the pieces for logging."""
    B, _, H, W = x.shape
    bpp = sum(-torch.log2(lik).reshape(B, -1).sum(1) for lik in out["likelihoods"].values()) / (H * W)
    mse = ((out["x_hat"] - x) ** 2).reshape(B, -1).mean(1)
    if metric == "mse":
        dist_term = lmbda * 255**2 * mse
    else:
        from pytorch_msssim import ms_ssim

        # One λ ladder for both metrics: 1 − MS-SSIM is weighted by λ·255²·0.02, as MSE by λ·255².
        msssim = ms_ssim(out["x_hat"], x, data_range=1.0, size_average=False)
        dist_term = lmbda * 255**2 * (1 - msssim) * 0.02
    per_sample = bpp + dist_term
    return {
        "loss": per_sample.mean(),
        "per_sample": per_sample,
        "bpp": bpp.mean().detach(),
        "mse": mse.detach(),
        "aux": out["aux"],
    }


class LevelNorm:
    """Per-level normalization of the loss (``--level-norm``).

    Qualities are drawn uniformly, but a sample's loss grows with its λ: averaged over the batch, q11-12
    (18 % of the draws) carry about half of the loss and q1-4 under 5 %. Dividing each sample's loss by a
    running mean of its level's loss (level = the rounded quality) makes every level weigh alike; the
    result is multiplied by the mean of those running means so that the loss keeps its scale (the
    gradient clip (``TrainConfig.clip``) and the learning rate stay meaningful). Kept in the checkpoint's state.
    """

    def __init__(self, levels: int, saved: list[float | None] | None = None, decay: float = 0.99) -> None:
        self.decay = decay
        self.means: list[float | None] = list(saved) if saved and len(saved) == levels else [None] * levels

    def weights(self, qualities: Tensor, losses: Tensor) -> Tensor:
        """Each sample's weight, after folding this batch's losses into the running means."""
        levels = [int(round(q)) - 1 for q in qualities.tolist()]
        for k, value in zip(levels, losses.detach().float().cpu().tolist(), strict=True):
            m = self.means[k]
            self.means[k] = value if m is None else self.decay * m + (1 - self.decay) * value
        known = [m for m in self.means if m is not None]
        scale = sum(known) / len(known)
        return torch.tensor([scale / max(self.means[k], 1e-9) for k in levels], dtype=torch.float32)


def apply_gradients(
    losses: dict[str, Tensor],
    opt: torch.optim.Optimizer,
    main_params: list[Tensor],
    scaler,
    clip: float = TrainConfig.clip,
) -> None:
    """One optimizer step on rate-distortion plus auxiliary loss, main gradients clipped at norm ``clip``."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(losses["loss"] + losses["aux"]).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(main_params, clip)
    scaler.step(opt)
    scaler.update()


def compiled_forward(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` under ``torch.compile`` for the training steps; validation, the average and checkpoints keep
    using the plain module, which shares its parameters. What it saves: docs/TRAINING.md, "Compile"."""
    return torch.compile(net)


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """The training device (``devices.resolve_device``); plain ``cuda`` means this process's local GPU."""
    name = resolve_device(name)
    return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype. ``auto``: bf16 on CUDA and on CPUs with native bf16 (AVX512_BF16/AMX: 0.135
    against 0.275 s/step fp32 on 2 Zen 5 cores, N=128/M=192, 8x128²); fp32 on other CPUs, where bf16
    measured 2x slower (1.7-1.8 against 0.77 s/step on 2 AVX-512 cores without bf16) and 9x slower on an
    AVX2-only EPYC (13.7 against 1.5 s/step, 4x256²)."""
    if name == "auto":
        native = device.type == "cuda" or (device.type == "cpu" and engine.cpu_has_native_bf16())
        return torch.bfloat16 if native else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


# -- validation ---------------------------------------------------------------------------------
@torch.no_grad()
def validate(model: Model, files: list[Path], qualities: tuple[float, ...], device: torch.device) -> dict:
    """Real coding of each validation image: bpp from the bytes of a real ``.aec`` file, PSNR of its decode."""
    model.eval()
    model.build_tables()
    codec = Codec(model, device=device)
    results = {}
    for q in qualities:
        bpps, psnrs = [], []
        coder = encoding.setup(EncodeOptions(quality=q), codec)
        for path in files:
            rgb = load_rgb(path)
            data = encoding.encode_arrays(coder, [rgb], [{}])[0].data
            rec = decoding.as_rgb(decoding.decode_planes([decoding.open_file(data, codec=codec)])[0])
            bpps.append(len(data) * 8 / (rgb.shape[0] * rgb.shape[1]))
            psnrs.append(psnr(rgb, rec))
        results[f"{q:g}"] = {"bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs))}
    model.train()
    return results


# -- weight averaging -------------------------------------------------------------------------
class WeightAverage:
    """An exponential moving average of the model's parameters (decay ≈ 0.999 averages the last ~1000
    steps), kept in the checkpoint (``ema``), validated, and exported instead of the raw weights: Adam at
    small batches (``TrainConfig.batch``) leaves the raw weights noisy. The model's ``aux_params``
    (quantiles) stay raw (they track the density the tables are built from)."""

    def __init__(self, model: Trainable, decay: float, saved: dict[str, Tensor] | None = None) -> None:
        self.decay = decay
        self.names = [
            n for n, p in model.named_parameters() if p.is_floating_point() and not n.startswith(model.aux_params)
        ]
        params = dict(model.named_parameters())
        saved = saved or {}
        # A saved average of another shape (levels extended since) restarts from the weights.
        self.values = {
            n: (saved[n] if n in saved and saved[n].shape == params[n].shape else params[n]).detach().clone().float()
            for n in self.names
        }

    @torch.no_grad()
    def update(self, model: Trainable) -> None:
        params = dict(model.named_parameters())
        torch._foreach_lerp_(
            [self.values[n] for n in self.names], [params[n].detach().float() for n in self.names], 1 - self.decay
        )

    def state_dict(self) -> dict[str, Tensor]:
        return self.values

    @contextmanager
    def applied(self, model: Trainable) -> Iterator[None]:
        """The averaged weights in ``model`` inside the block (validation), the raw ones after it."""
        params = dict(model.named_parameters())
        raw = {n: params[n].detach().clone() for n in self.names}
        with torch.no_grad():
            for n in self.names:
                params[n].copy_(self.values[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n in self.names:
                    params[n].copy_(raw[n])


# -- checkpoints ----------------------------------------------------------------------------
def save_checkpoint(path: Path, model: Trainable, opt, state: dict, average: WeightAverage | None = None) -> None:
    tmp = path.with_suffix(".tmp")
    ck = {"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state}
    if average is not None:
        ck["ema"] = average.state_dict()
    torch.save({**ck, "kind": model.kind, "arch": model.arch_dict()}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def make_optimizer(model: Trainable, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, list[Tensor]]:
    """Adam over three groups: the main parameters, the model's context networks (at ``context_lr``,
    as a multiple of the scheduled LR) and the model's ``aux_params`` (CompressAI's quantiles; fixed LR).
    Returns the optimizer and the parameters whose gradient norm is clipped."""
    groups: dict[str, list[Tensor]] = {"main": [], "context": [], "aux": []}
    for name, p in model.named_parameters():
        which = (
            "aux"
            if name.startswith(model.aux_params)
            else "context"
            if name.startswith(model.context_params)
            else "main"
        )
        groups[which].append(p)
    scale = (cfg.context_lr / cfg.lr) if cfg.context_lr else 1.0
    opt = torch.optim.Adam(
        [
            {"params": groups["main"]},
            {"params": groups["context"], "lr_scale": scale},
            {"params": groups["aux"], "lr": cfg.aux_lr, "aux": True},
        ],
        lr=cfg.lr,
    )
    return opt, groups["main"] + groups["context"]


def load_optimizer(opt: torch.optim.Optimizer, saved: dict) -> None:
    """Resume Adam's moments; checkpoints from before the context group (main, aux) get an empty one.
    The LR scale of each group is this invocation's, not the checkpoint's."""
    groups = saved["param_groups"]
    if len(groups) == 2 and len(opt.param_groups) == 3:
        groups.insert(1, {**groups[0], "params": []})
    scales = [g.get("lr_scale", 1.0) for g in opt.param_groups]
    opt.load_state_dict(saved)
    for g, scale in zip(opt.param_groups, scales, strict=True):
        g["lr_scale"] = scale


class LatentCache:
    """Latents ``g_a(x)`` of many training crops, computed once (float16, CPU).

    Fitting a context model's networks to trained transforms needs no pixels at all: the rate of a
    latent under the entropy model depends on y only, and y = g_a(x) does not depend on the quality
    (the gains apply after). Caching y skips g_a, g_s and their backward passes, which are most of a
    training step, so the small context networks see many times the samples per second.
    """

    def __init__(self, model: Model, sampler: CropSampler, crops: int, device: torch.device, chunk: int = 16):
        parts = []
        with torch.no_grad():
            for _ in range(0, crops, chunk):
                parts.append(model.analyze(sampler.batch(chunk).to(device)).to("cpu", torch.float16))
        self.latents = torch.cat(parts)[:crops]
        self.pixels = model.latent_stride**2 * self.latents[0, 0].numel()

    def batch(self, size: int, generator: torch.Generator) -> Tensor:
        return self.latents[torch.randint(len(self.latents), (size,), generator=generator)].float()


def entropy_loss(model: Trainable, y: Tensor, quality: Tensor, pixels: int) -> dict[str, Tensor]:
    """Bits per pixel of cached latents under the model's entropy path (the rate alone: the
    transforms are frozen, so the distortion does not depend on what is trained)."""
    lik = model.latent_rate(y, quality)
    bpp = sum(-torch.log2(v).reshape(len(y), -1).sum(1) for v in lik.values()) / pixels
    zero = torch.zeros(len(y))
    return {"loss": bpp.mean(), "bpp": bpp.mean().detach(), "mse": zero, "aux": zero.sum()}


def freeze_all_but_context(model: Trainable) -> None:
    if not model.context_params:
        raise ValueError(f"a {model.kind} model has no context networks to fit (--entropy-only)")
    coding(model, "--entropy-only (it fits to the latents the coder sees)")
    for name, p in model.named_parameters():  # quantiles stay: build_tables fits them (validation, export)
        p.requires_grad_(name.startswith(model.context_params + model.aux_params))


def coding(model: Trainable, what: str) -> Model:
    """``model`` where ``what`` codes with it (validation, ``--entropy-only``): ValueError for a kind that only
    trains."""
    if not isinstance(model, Model):
        raise ValueError(f"{what} needs a model that codes; a {model.kind} model only trains")
    return model


# -- the loop -----------------------------------------------------------------------------
def build_model(cfg: TrainConfig) -> Trainable:
    """The kind's ``default_arch()`` with the run's overrides (``--arch``) and level count."""
    cls = trainable_class(cfg.kind)
    default = cls.default_arch()
    unknown = sorted(set(cfg.arch) - set(default))
    if unknown:
        raise ValueError(f"a {cfg.kind} model has no architecture key {', '.join(unknown)} (has {', '.join(default)})")
    return cls.from_arch(cls.with_levels({**default, **cfg.arch}, cfg.levels))


@dataclass
class Run:
    """One training invocation's objects, made by ``setup``; the step, logging and validation use them."""

    cfg: TrainConfig
    device: torch.device
    amp: torch.dtype | None
    rank: int
    world: int
    model: Trainable
    net: torch.nn.Module
    opt: torch.optim.Optimizer
    main_params: list[Tensor]
    scaler: Any
    state: dict
    ckpt_path: Path
    average: WeightAverage | None = None
    sampler: Any = None
    cache: LatentCache | None = None
    norm: LevelNorm | None = None
    qgen: torch.Generator | None = None
    val_files: list[Path] | None = None
    val_qualities: tuple[float, ...] = ()


def setup(cfg: TrainConfig, sampler: Any = None) -> Run:
    """Device, model (resumed or initialized), optimizer, average and data: everything before the first
    step. ``sampler`` (anything with ``batch(size) -> Tensor``) replaces the crops of ``cfg.train_dir``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(cfg.device, local_rank)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.seed + rank)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(cfg).to(device)
    if cfg.val_dir:
        coding(model, "--val (validation codes images)")
    opt, main_params = make_optimizer(model, cfg)
    state, saved_average = start_state(cfg, model, opt, run_dir / "last.pt", device, rank)
    model = model.to(memory_format=torch.channels_last)
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None
        )
    compile_step = cfg.compile_step if cfg.compile_step is not None else device.type == "cpu"
    if compile_step and not cfg.entropy_only:
        net = compiled_forward(net)
    amp = pick_precision(cfg.precision, device)
    run = Run(
        cfg=cfg,
        device=device,
        amp=amp,
        rank=rank,
        world=world,
        model=model,
        net=net,
        opt=opt,
        main_params=main_params,
        scaler=torch.amp.GradScaler(enabled=amp == torch.float16),
        state=state,
        ckpt_path=run_dir / "last.pt",
        average=WeightAverage(model, cfg.ema, saved_average) if cfg.ema else None,
        norm=LevelNorm(model.levels, state.get("level_means")) if cfg.level_norm else None,
        qgen=torch.Generator().manual_seed(cfg.seed * 7919 + rank + state["step"]),
        val_files=image_files(cfg.val_dir)[: cfg.val_images] if cfg.val_dir and rank == 0 else [],
        val_qualities=validation_qualities(cfg.val_qualities, model.levels),
    )
    run.sampler = sampler or CropSampler(cfg.train_dir, cfg.crop, seed=cfg.seed + state["step"], shard=(rank, world))
    if cfg.entropy_only:
        freeze_all_but_context(model)
        model.eval()
        run.cache = LatentCache(model, run.sampler, cfg.cache_crops, device)
        say(run, f"entropy-only: cached the latents of {len(run.cache.latents)} crops")
    return run


def say(run: Run, text: str) -> None:
    if run.rank == 0:
        print(text, flush=True)


def start_state(
    cfg: TrainConfig, model: Trainable, opt: torch.optim.Optimizer, ckpt_path: Path, device: torch.device, rank: int
) -> tuple[dict, dict | None]:
    """Where the run starts: the run folder's checkpoint, else ``--from-checkpoint``, else ``--init``'s
    shipped weights, else fresh. Returns the training state and the saved weight average, if any."""
    source = ckpt_path if ckpt_path.exists() else Path(cfg.from_checkpoint) if cfg.from_checkpoint else None
    if source is not None:
        ck = load_checkpoint(source, map_location=device)
        state, note = resume(model, opt, ck, source)
        if rank == 0:
            print(f"resumed {source} at step {state['step']}{note}", flush=True)
        return state, ck.get("ema")
    if cfg.init:
        state = init_from_weights(model, cfg.init)
        if rank == 0:
            print(f"initialized from shipped model {cfg.init} (trained {state['step']} steps)", flush=True)
        return state, None
    return {"step": 0, "seconds": 0.0, "val": []}, None


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        if not g.get("aux"):
            g["lr"] = lr * g.get("lr_scale", 1.0)


def train_step(run: Run) -> dict[str, Tensor]:
    """One optimizer step on a fresh batch; returns the losses."""
    cfg, device = run.cfg, run.device
    q = sample_qualities(cfg.batch, run.model.levels, run.qgen)
    if run.cache is not None:
        losses = entropy_loss(
            run.model, run.cache.batch(cfg.batch, run.qgen).to(device), q.to(device), run.cache.pixels
        )
    else:
        x = run.sampler.batch(cfg.batch).to(device, non_blocking=True)
        out = run.net(x.contiguous(memory_format=torch.channels_last), q.to(device), run.amp)
        losses = rd_loss(out, x, lambdas_for(q).to(device), cfg.metric)
        if run.norm is not None:
            weights = run.norm.weights(q, losses["per_sample"].detach()).to(device)
            losses["loss"] = (losses["per_sample"] * weights).mean()
            run.state["level_means"] = run.norm.means
    apply_gradients(losses, run.opt, run.main_params, run.scaler, cfg.clip)
    if run.average is not None:
        run.average.update(run.model)
    run.state["step"] += 1
    return losses


def log_record(losses: dict[str, Tensor], step: int, lr: float, seconds: float) -> dict:
    """The log line of a step: loss, rate, mean PSNR of the batch, aux loss, LR, time."""
    psnr_mean = float(np.mean([10 * np.log10(1 / max(m, 1e-10)) for m in losses["mse"].tolist()]))
    return {
        "step": step,
        "loss": losses["loss"].item(),
        "bpp": losses["bpp"].item(),
        "psnr": psnr_mean,
        "aux": float(torch.as_tensor(losses["aux"]).detach()),
        "lr": lr,
        "t": round(seconds, 1),
    }


def run_validation(run: Run) -> dict:
    """Validation with the weight average applied (when kept), recorded in the state."""
    with run.average.applied(run.model) if run.average is not None else nullcontext():
        res = validate(run.model, run.val_files, run.val_qualities, run.device)
    run.state["val"].append({"step": run.state["step"], **res})
    return res


class RunLog:
    """Rank 0's progress bar and ``RUN_DIR/log.jsonl`` (a line per ``log_every`` steps and per validation)."""

    def __init__(self, cfg: TrainConfig, start_step: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=cfg.steps, initial=start_step, dynamic_ncols=True, mininterval=5)
        self.file = open(Path(cfg.run_dir) / "log.jsonl", "a")

    def _write(self, rec: dict) -> None:
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()

    def step(self, rec: dict) -> None:
        self._write(rec)
        self.bar.set_postfix(loss=f"{rec['loss']:.3f}", bpp=f"{rec['bpp']:.3f}", psnr=f"{rec['psnr']:.2f}")

    def validation(self, step: int, res: dict) -> None:
        self._write({"step": step, "val": res})
        self.bar.write(
            f"val @ {step}: " + "  ".join(f"q{k}: {v['bpp']:.3f} bpp {v['psnr']:.2f} dB" for k, v in res.items())
        )

    def close(self) -> None:
        self.bar.close()
        self.file.close()


def train(cfg: TrainConfig, sampler: Any = None, on_checkpoint: Callable[[Path, dict], None] | None = None) -> dict:
    """Train until ``cfg.steps``, ``cfg.max_minutes``, SIGTERM or Ctrl-C; checkpoint every ``ckpt_minutes``
    and at the end, calling ``on_checkpoint(path, state)`` after each one (the GPU sprint ships them)."""
    run = setup(cfg, sampler)
    state, rank = run.state, run.rank
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("flag", True))
    start_step, t0 = state["step"], time.time()
    last_ckpt, counted = t0, {"t": t0}
    budget_s = cfg.max_minutes * 60
    log = RunLog(cfg, start_step) if rank == 0 else None

    def checkpoint() -> None:
        if rank == 0:
            state["seconds"] += time.time() - counted["t"]
            counted["t"] = time.time()
            save_checkpoint(run.ckpt_path, run.model, run.opt, state, run.average)
            if on_checkpoint is not None:
                on_checkpoint(run.ckpt_path, state)

    run.model.train()
    try:
        while state["step"] < cfg.steps and not stop["flag"]:
            elapsed = time.time() - t0
            if budget_s and elapsed >= budget_s:
                break
            progress = max(
                (state["step"] - start_step) / max(1, cfg.steps - start_step), elapsed / budget_s if budget_s else 0.0
            )
            lr = lr_at(cfg, state["step"] - start_step, progress)
            set_lr(run.opt, lr)
            losses = train_step(run)
            if log is None:
                continue
            if state["step"] % cfg.log_every == 0:
                log.step(log_record(losses, state["step"], lr, time.time() - t0))
            log.bar.update(1)
            if run.val_files and state["step"] % cfg.val_every == 0:
                log.validation(state["step"], run_validation(run))
            if time.time() - last_ckpt > cfg.ckpt_minutes * 60:
                checkpoint()
                last_ckpt = time.time()
    except KeyboardInterrupt:
        say(run, "interrupted: saving checkpoint")
    finally:
        checkpoint()
        if log:
            log.close()
        if run.world > 1:
            dist.destroy_process_group()
    return state


def resume(model: Trainable, opt: torch.optim.Optimizer, ck: dict, path: Path) -> tuple[dict, str]:
    """Load a checkpoint into ``model`` and ``opt``; returns its training state and a note for the log.

    A checkpoint with fewer quality levels than the model is extended upward (``fit_levels``); the
    moved parameters' Adam moments, shaped for the old level count, start afresh.
    """
    found = ck.get("kind", DEFAULT_KIND), type(model).with_levels(ck["arch"], model.levels)
    asked = model.kind, model.arch_dict()
    if found != asked:  # another kind or architecture (a level count of its own is extended below)
        raise ValueError(f"{path} holds a {found[0]} model {ck['arch']}, asked for a {asked[0]} {model.arch_dict()}")
    sd = _without_tables(ck["model"])
    levels = stored_levels(model, sd)
    if levels > model.levels:
        raise ValueError(
            f"{path} holds {levels} quality levels, asked for {model.levels}: resume with --levels {levels}"
        )
    moved = fit_levels(model, sd, Q.ladder(levels))
    model.load_state_dict(sd, strict=False)
    if ck.get("optimizer"):
        load_optimizer(opt, ck["optimizer"])
    for name in moved:
        opt.state.pop(model.get_parameter(name), None)
    fresh = "" if ck.get("optimizer") else "; no optimizer state in it: Adam starts afresh"
    note = fresh + (
        f"; quality levels extended {levels} -> {model.levels} ({', '.join(moved)} extrapolated in log lambda, "
        "their Adam state reset)"
        if moved
        else ""
    )
    return ck["state"], note


def init_from_weights(model: Trainable, model_id: str) -> dict:
    """Start a run from shipped weights (no optimizer state): training continues across sessions
    even when the checkpoint folder did not survive. Returns the training state to continue from."""
    from safetensors.torch import load_file

    from ..weights.store import read_manifest, sha256_file, state_dict_for_model, weights_dir, weights_path

    manifest = read_manifest()
    entry = manifest["models"][model_id]
    if type(model).with_levels(entry["arch"], model.levels) != model.arch_dict():
        raise ValueError(f"model {model_id} has architecture {entry['arch']}, asked for {model.arch_dict()}")
    path = weights_path(manifest, model_id, weights_dir())
    if sha256_file(path) != entry["sha256"]:
        raise ValueError(f"weights file {path} does not match its manifest sha256")
    sd = _without_tables(state_dict_for_model(load_file(str(path))))
    training = entry.get("training", {})
    rows = stored_levels(model, sd)
    old = training.get("lambdas")
    if not isinstance(old, list):  # entries before the key: v1 (CompressAI's 8 levels), else this ladder
        old = Q.COMPRESSAI_LAMBDAS if rows == len(Q.COMPRESSAI_LAMBDAS) else Q.ladder(rows)
    if model.level_params and len(old) != rows:
        raise ValueError(f"model {model_id} has {rows} gain levels for a {len(old)}-level ladder")
    fit_levels(model, sd, tuple(old))  # another ladder or fewer levels: move the gains
    # strict=False: parameters the weights lack (a context model's nets on hyperprior weights) start fresh
    unexpected = model.load_state_dict(sd, strict=False).unexpected_keys
    if unexpected:
        raise ValueError(f"model {model_id} holds parameters a {model.kind} model lacks: {', '.join(unexpected[:3])}")
    return {
        "step": int(training.get("steps") or 0),
        "seconds": float(training.get("seconds") or 0.0),
        "val": list(training.get("validation") or []),
    }


def _without_tables(sd: dict) -> dict:
    """Drop the size-varying CDF buffers; they are rebuilt by ``Model.build_tables``."""
    return {k: v for k, v in sd.items() if not k.endswith(TABLE_BUFFERS)}
