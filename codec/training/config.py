"""The training run's settings: one place for every default, read by ``codec.training.train`` and by the ``train``
command, whose options are generated from these fields (``cli.train_options``). No torch here: the
command line's ``--help`` must stay light.

A field's ``metadata`` holds what the command line needs beyond name, type and default: ``help``,
``choices``, a ``range`` (lo, hi; ``open`` when hi is excluded), a ``type`` when the default is None,
a ``flag`` when the option's name differs, ``switch`` for ``--x/--no-x`` pairs, ``multiple`` for
repeated ``KEY=VALUE`` options, ``cli=False`` for fields the command sets itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..core.quality import LEVELS, MIN_LEVELS
from ..models.kinds import LEGACY_KIND

#: Where runs live unless told otherwise: ``run_dir``'s default is its ``default`` (``~`` as written in help texts).
RUNS = Path("~/.cache/aecodec/runs")


def _opt(default: Any, help: str, **more: Any) -> Any:
    return field(default=default, metadata={"help": help, **more})


@dataclass
class TrainConfig:
    train_dir: str = field(default="", metadata={"cli": False})
    val_dir: str | None = field(default=None, metadata={"cli": False})
    kind: str = _opt(
        LEGACY_KIND,
        "Registered model kind to train (codec.models); e.g. gain-ctx, which can --init from gain-msh weights.",
        flag="--model-kind",
    )
    run_dir: str = field(default=str(RUNS.expanduser() / "default"), metadata={"cli": False})
    arch: dict = field(
        default_factory=dict,
        metadata={
            "help": "Architecture override KEY=VALUE of the kind's default_arch() (repeatable), e.g. --arch N=192.",
            "multiple": True,
        },
    )
    levels: int = _opt(
        LEVELS,
        "Quality levels to train (the first of the lambda ladder); --init or a checkpoint with fewer is "
        "extended upward (gains extrapolated in log lambda).",
        range=(MIN_LEVELS, LEVELS),
    )
    crop: int = _opt(128, "Side of the random training crops.")
    batch: int = _opt(8, "Crops per step.")
    lr: float = _opt(5e-4, "Peak learning rate.")
    context_lr: float | None = _opt(
        None, "Peak LR of the entropy model's context networks (default: --lr); they start untrained.", type=float
    )
    aux_lr: float = _opt(1e-3, "Fixed LR of the entropy bottleneck's quantiles (the model's aux_params).")
    clip: float = _opt(1.0, "Norm at which the gradient of the main and context parameters is clipped.")
    final_lr_fraction: float = _opt(0.05, "Where the cosine decay ends, as a fraction of --lr.")
    decay_start: float = _opt(
        0.7,
        "Fraction of this invocation's budget after which the LR follows a cosine down; 1 = constant "
        "(a trunk), 0 = a cool-down over the whole budget.",
        range=(0.0, 1.0),
    )
    warmup_steps: int = _opt(300, "Linear LR warm-up after (re)start; 0 for a cool-down branch.")
    steps: int = _opt(100_000, "Step count at which training stops.")
    max_minutes: float = _opt(0.0, "Time budget for this invocation (0 = none).")
    metric: str = _opt("mse", "Distortion term.", choices=("mse", "ms-ssim"))
    level_norm: bool = _opt(
        True,
        "Per-level normalized loss: each sample's loss divided by a running mean of its quality level's loss "
        '(times their mean), so that every level weighs alike (docs/TRAINING.md, "λ mix A/B").',
        switch=True,
    )
    precision: str = _opt("auto", "Autocast dtype (auto: bf16 where native).", choices=("auto", "fp32", "bf16", "fp16"))
    val_every: int = _opt(2000, "Validate every this many steps.")
    val_images: int = _opt(8, "Validation images (the first of --val).")
    val_qualities: tuple[float, ...] | None = field(default=None, metadata={"cli": False})
    ckpt_minutes: float = _opt(5.0, "Checkpoint every this many minutes.")
    seed: int = _opt(0, "Random seed.")
    device: str = _opt("auto", "Training device (auto, cpu, cuda, cuda:1...).")
    log_every: int = _opt(50, "Log a line every this many steps.")
    init: str | None = _opt(None, "Model id in weights/ to start from when RUN_DIR has no checkpoint.")
    from_checkpoint: str | None = _opt(
        None,
        "Checkpoint to start from (weights, average, step) when RUN_DIR has none: a cool-down branch of a trunk.",
    )
    entropy_only: bool = _opt(
        False, "Fit only the context networks, on cached latents of the frozen transforms (rate loss).", switch=True
    )
    cache_crops: int = _opt(2048, "Crops cached by --entropy-only.")
    ema: float = _opt(
        0.999,
        "Decay of a moving average of the weights, validated and exported instead of them (0 = none).",
        range=(0.0, 1.0),
        open=True,
    )
    compile_step: bool | None = _opt(
        None,
        "torch.compile the training forward (codec.training.train.compiled_forward); default: on CPU, off on CUDA "
        "(not measured there).",
        flag="--compile",
        switch=True,
    )


def cli_fields() -> list:
    """The fields the ``train`` command offers as options, in declaration order."""
    return [f for f in fields(TrainConfig) if f.metadata.get("cli", True)]


def parse_arch(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as a dict, values read as int, float or bool where they look like one."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--arch takes KEY=VALUE, got {pair!r}")
        out[key] = _scalar(value)
    return out


def _scalar(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
