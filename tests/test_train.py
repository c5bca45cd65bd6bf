"""Training pipeline on tiny generated data: a few steps, resume, export, and 2-process DDP (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import codec
from codec.cli import main
from codec.core import engine
from codec.core import quality as Q
from codec.core.errors import AecError
from codec.models.base import Model, Trainable, register
from codec.models.registry import KINDS, model_class, trainable_class
from codec.training.export import model_from_checkpoint
from codec.training.train import TrainConfig, lr_at, pick_precision, train
from tests.conftest import one_error_line

TINY = dict(
    arch={"N": 16, "M": 24},
    crop=64,
    batch=2,
    log_every=1,
    val_every=2,
    val_images=1,
    val_qualities=(1.0, 8.0),
    compile_step=False,
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 1)):
        (root / split).mkdir()
        for i in range(n):
            arr = (rng.random((72, 96, 3)) * 255).astype("uint8")
            Image.fromarray(arr).save(root / split / f"im{i}.png")
        (root / split / "README.md").write_text("not an image")
    return root


def test_lambda_ladder_and_interpolation():
    assert Q.lmbda(Q.DEFAULT_QUALITY) == 0.013
    assert Q.LAMBDAS[2:10] == Q.COMPRESSAI_LAMBDAS
    assert list(Q.LAMBDAS) == sorted(Q.LAMBDAS)


def test_remap_levels_is_linear_in_log_lambda():
    old = (0.001, 0.004)
    table = [[0.0, 1.0], [2.0, 5.0]]
    # Same ladder: unchanged; halfway in log λ: the mean; one step below: extrapolated.
    assert Q.remap_levels(table, old, old) == table
    mid, below = Q.remap_levels(table, old, (0.002, 0.00025))
    assert mid == pytest.approx([1.0, 3.0])
    assert below == pytest.approx([-2.0, -3.0])
    assert Q.LAMBDAS[3] < Q.lmbda(4.5) < Q.LAMBDAS[4]
    assert abs(Q.lmbda(4.5) - (Q.LAMBDAS[3] * Q.LAMBDAS[4]) ** 0.5) < 1e-12


def test_lr_schedule_of_a_trunk_is_constant_and_of_a_cool_down_decays_from_the_start():
    trunk = TrainConfig(lr=1e-3, warmup_steps=0, decay_start=1.0)
    assert lr_at(trunk, 10, 0.99) == lr_at(trunk, 10, 1.0) == pytest.approx(1e-3)
    cool = TrainConfig(lr=1e-3, warmup_steps=0, decay_start=0.0, final_lr_fraction=0.1)
    assert lr_at(cool, 0, 0.0) == pytest.approx(1e-3) and lr_at(cool, 9, 1.0) == pytest.approx(1e-4)
    assert lr_at(cool, 5, 0.5) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))


def test_lr_schedule_warms_up_and_decays():
    cfg = TrainConfig(train_dir=".", lr=1e-3, warmup_steps=10, decay_start=0.5, final_lr_fraction=0.1)
    assert lr_at(cfg, 0, 0.0) == pytest.approx(1e-4)
    assert lr_at(cfg, 50, 0.4) == pytest.approx(1e-3)
    assert lr_at(cfg, 50, 1.0) == pytest.approx(1e-4)
    assert lr_at(cfg, 50, 0.75) < 1e-3


@pytest.mark.slow
def test_train_resume_and_export(folders, tmp_path, monkeypatch):
    run = tmp_path / "run"
    cfg = TrainConfig(train_dir=str(folders / "train"), val_dir=str(folders / "val"), run_dir=str(run), steps=3, **TINY)
    state = train(cfg)
    assert state["step"] == 3 and (run / "last.pt").exists()
    assert state["val"] and set(state["val"][0]) == {"step", "1", "8"}
    assert all(v["bpp"] > 0 for v in state["val"][0].values() if isinstance(v, dict))
    before = torch.load(run / "last.pt", weights_only=True)["model"]["g_a.0.weight"].clone()
    cfg.steps = 5
    assert train(cfg)["step"] == 5
    after = torch.load(run / "last.pt", weights_only=True)["model"]["g_a.0.weight"]
    assert not torch.equal(before, after)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4, 5]

    from codec.training.export import checkpoint_meta, export

    model, st = model_from_checkpoint(run / "last.pt")
    wdir = tmp_path / "w"
    entry = export(model, "tiny", wdir, half=True, meta=checkpoint_meta(st, "generated"))
    assert entry["training"]["steps"] == 5
    monkeypatch.setenv("AECODEC_WEIGHTS", str(wdir))
    data = codec.encode(Image.open(folders / "val" / "im0.png"), quality=2)
    assert codec.decode(data).size == (96, 72)

    # A new run folder can start from the shipped weights and continues their step count.
    cfg2 = TrainConfig(
        train_dir=str(folders / "train"), run_dir=str(tmp_path / "run2"), steps=6, init="tiny", seed=1, **TINY
    )
    assert train(cfg2)["step"] == 6
    resumed = torch.load(tmp_path / "run2" / "last.pt", weights_only=True)["model"]["g_a.0.weight"]
    assert (resumed - after).abs().max() < 0.05  # one small step away from the exported weights, not a fresh init

    # Another kind starts from the same hyperprior weights: only its new nets start fresh; the kind
    # travels through the checkpoint into the export.
    paths = {"train_dir": str(folders / "train"), "val_dir": str(folders / "val"), "run_dir": str(tmp_path / "run3")}
    cfg3 = TrainConfig(**paths, kind="gain-ctx", steps=6, init="tiny", **TINY)
    state3 = train(cfg3)
    assert state3["step"] == 6 and state3["val"][-1]["step"] == 6  # validated by real coding, context path
    ck = torch.load(tmp_path / "run3" / "last.pt", weights_only=True)
    assert ck["kind"] == "gain-ctx" and (ck["model"]["g_a.0.weight"] - after).abs().max() < 0.05
    ctx, _ = model_from_checkpoint(tmp_path / "run3" / "last.pt")
    assert type(ctx).__name__ == "ContextModel"
    assert export(ctx, "tiny-ctx", wdir, half=False, meta={}, make_default=False)["kind"] == "gain-ctx"
    with pytest.raises(ValueError, match="holds a gain-ctx model"):
        train(TrainConfig(**paths, steps=7, **TINY))

    # Entropy-only: from the same run, only the context networks move; validation still codes.
    before = {k: v.clone() for k, v in ck["model"].items()}
    state4 = train(TrainConfig(**paths, kind="gain-ctx", steps=9, entropy_only=True, cache_crops=4, **TINY))
    assert state4["step"] == 9 and state4["val"][-1]["step"] == 8
    after4 = torch.load(tmp_path / "run3" / "last.pt", weights_only=True)["model"]
    moved = {
        k
        for k, v in before.items()
        if v.is_floating_point() and v.shape == after4[k].shape and not torch.equal(v, after4[k])
    }
    moved -= {"entropy_bottleneck.quantiles"}  # refit whenever validation builds the tables
    assert moved and all(k.startswith("context.") for k in moved), sorted(k for k in moved if "context." not in k)
    with pytest.raises(ValueError, match="no context networks"):
        train(TrainConfig(**{**paths, "run_dir": str(tmp_path / "run4")}, steps=1, entropy_only=True, **TINY))


@pytest.mark.slow
def test_ddp_two_processes_gloo(folders, tmp_path):
    run = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29517",
        "-m",
        "codec.cli",
        "train",
        str(folders / "train"),
        "--run-dir",
        str(run),
        "--steps",
        "2",
        "--crop",
        "64",
        "--batch",
        "2",
        "--arch",
        "N=16",
        "--arch",
        "M=24",
        "--no-compile",
        "--device",
        "cpu",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert torch.load(run / "last.pt", weights_only=True)["state"]["step"] == 2


def test_auto_precision_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: True)
    assert pick_precision("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: False)
    assert pick_precision("auto", cpu) is None
    assert pick_precision("auto", torch.device("cuda", 0)) == torch.bfloat16
    assert pick_precision("fp16", cpu) == torch.float16 and pick_precision("fp32", cpu) is None


def test_unknown_model_kind_is_one_line(folders, tmp_path):
    args = ["train", str(folders / "train"), "--run-dir", str(tmp_path / "r"), "--model-kind", "elic"]
    out = CliRunner().invoke(main, args, catch_exceptions=False)
    assert out.exit_code == 2 and out.output.count("\n") == 1 and "unknown model kind 'elic'" in out.output


def test_context_networks_get_their_own_learning_rate():
    from codec.models.registry import model_class
    from codec.training.train import load_optimizer, make_optimizer

    model = model_class("gain-ctx").from_arch({"N": 16, "M": 24})
    cfg = TrainConfig(train_dir=".", lr=1e-4, context_lr=1e-3)
    opt, clipped = make_optimizer(model, cfg)
    main, context, aux = opt.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert context["params"] and all(names[id(p)].startswith("context.") for p in context["params"])
    assert not any(names[id(p)].startswith("context.") for p in main["params"])
    assert context["lr_scale"] == pytest.approx(10.0) and aux.get("aux")
    assert len(clipped) == len(main["params"]) + len(context["params"])
    # A checkpoint from before the context group (main, aux) resumes; this invocation's scale wins.
    hyper = model_class("gain-msh").from_arch({"N": 16, "M": 24})
    old, _ = make_optimizer(hyper, TrainConfig(train_dir="."))
    saved = old.state_dict()
    saved["param_groups"].pop(1)
    fresh, _ = make_optimizer(hyper, cfg)
    load_optimizer(fresh, saved)
    assert len(fresh.param_groups[0]["params"]) == len(saved["param_groups"][0]["params"])
    assert len(fresh.param_groups[1]["params"]) == 0 and fresh.param_groups[1]["lr_scale"] == pytest.approx(10.0)


# -- the quality ladder: training covers the model's levels, shorter models are extended -------------
def test_quality_sampling_covers_the_models_range():
    from codec.training.train import sample_qualities, validation_qualities

    gen = torch.Generator().manual_seed(0)
    for levels in (10, Q.LEVELS):
        q = sample_qualities(4000, levels, gen)
        assert q.min() >= 1 and q.max() <= levels and q.max() > levels - 0.01 and q.min() < 1.01
    assert validation_qualities(None, 10) == (1.0, 3.0, 6.0, 10.0)
    assert validation_qualities(None, Q.LEVELS) == (1.0, 3.0, 6.0, 10.0, float(Q.LEVELS))
    with pytest.raises(ValueError, match="between 1 and 10"):
        validation_qualities((1.0, 11.0), 10)


def test_init_from_ten_level_weights_extends_the_gains():
    """The test weights have 10 levels: a full-ladder model starting from them keeps those 10 rows."""
    from codec.models.hyperprior import Arch, GainHyperprior
    from codec.training.train import init_from_weights
    from codec.weights.store import load_codec
    from tests.support import TEST_MODEL_ID

    old = load_codec(TEST_MODEL_ID, "cpu").model
    assert old.levels == 10
    model = GainHyperprior(Arch(N=old.arch.N, M=old.arch.M, levels=Q.LEVELS))
    init_from_weights(model, TEST_MODEL_ID)
    for name in ("log_y_gain", "log_z_gain"):
        new, was = getattr(model, name).detach(), getattr(old, name).detach()
        assert new.shape[0] == Q.LEVELS and torch.equal(new[:10], was)
        assert (new[10:] > new[9]).all()  # the test gains grow with λ: the extrapolation continues upward


def test_resume_with_more_levels_extends_gains_and_resets_their_adam_state(folders, tmp_path, capsys):
    from codec.models.registry import model_class
    from codec.training.train import load_checkpoint, make_optimizer, resume

    run = tmp_path / "run"
    base = {"train_dir": str(folders / "train"), "run_dir": str(run), **TINY}
    assert train(TrainConfig(**base, steps=1, levels=10))["step"] == 1
    ck = load_checkpoint(run / "last.pt")
    assert ck["arch"]["levels"] == 10 and ck["model"]["log_y_gain"].shape[0] == 10

    model = model_class("gain-msh").from_arch({"N": 16, "M": 24})
    opt, _ = make_optimizer(model, TrainConfig(train_dir="."))
    state, note = resume(model, opt, ck, run / "last.pt")
    assert state["step"] == 1 and "extended 10 -> 12" in note and "Adam state reset" in note
    assert torch.equal(model.log_y_gain.detach()[:10], ck["model"]["log_y_gain"])
    assert model.log_y_gain not in opt.state and model.g_a[0].weight in opt.state
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()  # the dropped moments restart at the new shape

    assert train(TrainConfig(**base, steps=2))["step"] == 2  # the default: the whole ladder
    assert "quality levels extended 10 -> 12" in capsys.readouterr().out
    ck = load_checkpoint(run / "last.pt")
    assert ck["arch"]["levels"] == Q.LEVELS and ck["model"]["log_z_gain"].shape[0] == Q.LEVELS
    with pytest.raises(ValueError, match="holds 12 quality levels, asked for 10: resume with --levels 12"):
        train(TrainConfig(**base, steps=3, levels=10))


@pytest.mark.slow
def test_weight_average_is_kept_validated_and_exported(folders, tmp_path, monkeypatch):
    """--ema keeps a moving average beside the raw weights: in the checkpoint, under validation (the raw
    weights come back after it), and in the export unless --raw."""
    run = tmp_path / "run"
    cfg = TrainConfig(
        train_dir=str(folders / "train"), val_dir=str(folders / "val"), run_dir=str(run), steps=4, ema=0.5, **TINY
    )
    calls = []

    def fake_validate(model, *args):
        calls.append(model.g_a[0].weight.detach().clone())
        return {}

    monkeypatch.setattr("codec.training.train.validate", fake_validate)
    train(cfg)
    ck = torch.load(run / "last.pt", weights_only=True)
    raw, avg = ck["model"]["g_a.0.weight"], ck["ema"]["g_a.0.weight"]
    assert "entropy_bottleneck.quantiles" not in ck["ema"]
    assert not torch.allclose(raw, avg) and (raw - avg).abs().max() < 0.05
    assert len(calls) == 2 and torch.equal(calls[-1], avg)  # validation saw the average (step 4 = the last)

    cfg.steps = 5  # resumes the average with the weights; raw weights kept training, not the average
    train(cfg)
    ck2 = torch.load(run / "last.pt", weights_only=True)
    assert torch.allclose(ck2["ema"]["g_a.0.weight"], 0.5 * avg + 0.5 * ck2["model"]["g_a.0.weight"], atol=1e-6)
    assert not torch.equal(ck2["model"]["g_a.0.weight"], avg)

    averaged, _ = model_from_checkpoint(run / "last.pt")
    raw_model, _ = model_from_checkpoint(run / "last.pt", raw=True)
    assert torch.equal(averaged.g_a[0].weight, ck2["ema"]["g_a.0.weight"])
    assert torch.equal(raw_model.g_a[0].weight, ck2["model"]["g_a.0.weight"])
    result = CliRunner().invoke(
        main, ["export", str(run / "last.pt"), "--name", "avg", "--weights-dir", str(tmp_path / "w"), "--raw"]
    )
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_compiled_training_steps_match_eager_ones(folders, tmp_path):
    """--compile changes how the steps run, not what they compute: the same seed gives the same weights."""
    weights = {}
    for compiled in (False, True):
        run = tmp_path / f"run-{compiled}"
        cfg = TrainConfig(
            train_dir=str(folders / "train"),
            run_dir=str(run),
            steps=2,
            kind="gain-ctx",
            **{**TINY, "compile_step": compiled},
        )
        assert train(cfg)["step"] == 2
        weights[compiled] = torch.load(run / "last.pt", weights_only=True)["model"]
    for name, value in weights[False].items():
        assert torch.allclose(weights[True][name], value, rtol=1e-4, atol=1e-5), name


class TinyKind(Trainable):
    """A model kind that exists only in this test: all a new kind must write to train. It only trains (no coding
    method), and its level count sits under an arch key of its own (``L``): training assumes neither."""

    kind = "tiny-test"
    level_params = ("log_gain",)

    def __init__(self, C: int = 4, L: int = Q.LEVELS):
        super().__init__()
        self.C, self.L = C, L
        self.g_a = torch.nn.Conv2d(3, C, 4, stride=4)
        self.g_s = torch.nn.ConvTranspose2d(C, 3, 4, stride=4)
        self.log_gain = torch.nn.Parameter(torch.linspace(-1, 1, L)[:, None])
        self.log_scale = torch.nn.Parameter(torch.zeros(C))

    @classmethod
    def default_arch(cls) -> dict:
        return {"C": 4, "L": Q.LEVELS}

    @classmethod
    def with_levels(cls, arch: dict, levels: int) -> dict:
        return {**arch, "L": levels}

    @classmethod
    def from_arch(cls, arch: dict) -> TinyKind:
        return cls(**arch)

    def arch_dict(self) -> dict:
        return {"C": self.C, "L": self.L}

    @property
    def levels(self) -> int:
        return self.L

    def forward(self, x, quality, autocast_dtype=None) -> dict:
        gain = torch.stack([Q.interpolate(self.log_gain.exp(), float(q)) for q in quality])[:, :, None, None]
        y = self.g_a(x) * gain
        noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        normal = torch.distributions.Normal(0.0, self.log_scale.exp()[:, None, None])
        lik = (normal.cdf(noisy + 0.5) - normal.cdf(noisy - 0.5)).clamp_min(1e-9)
        y_hat = (torch.round(y) - y).detach() + y
        return {"x_hat": self.g_s(y_hat / gain), "likelihoods": {"y": lik}, "aux": 0.0}


@pytest.fixture
def tiny_kind():
    """``TinyKind`` registered (by the decorator every kind uses) for one test."""
    register(TinyKind)
    yield TinyKind
    del KINDS[TinyKind.kind]


def test_a_new_kind_trains_by_registering_one_class(folders, tmp_path, tiny_kind):
    """No edit to train.py or cli.py: the kind's default_arch, --arch overrides, its level parameters (resume),
    the average and the per-level loss all come through the training interface (``Trainable``)."""
    run = tmp_path / "run"
    args = ["train", str(folders / "train"), "--run-dir", str(run), "--model-kind", "tiny-test", "--arch", "C=6"]
    args += ["--steps", "3", "--crop", "32", "--batch", "2", "--no-compile", "--level-norm", "--levels", "6"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    ck = torch.load(run / "last.pt", weights_only=True)
    assert ck["kind"] == "tiny-test" and ck["arch"] == {"C": 6, "L": 6} and ck["state"]["step"] == 3
    assert set(ck["ema"]) == {n for n, _ in TinyKind(6, 6).named_parameters()}  # the default --ema 0.999
    assert len(ck["state"]["level_means"]) == 6 and any(m is not None for m in ck["state"]["level_means"])
    start = TinyKind(6, 6).state_dict()["g_a.weight"]
    assert not torch.equal(ck["model"]["g_a.weight"], start)
    tiny = dict(kind="tiny-test", arch={"C": 6}, levels=6, crop=32, batch=2, compile_step=False)
    assert train(TrainConfig(train_dir=str(folders / "train"), run_dir=str(run), steps=4, **tiny))["step"] == 4
    # More levels than the checkpoint's: its per-level rows move to the longer ladder (``level_params``).
    more = TrainConfig(train_dir=str(folders / "train"), run_dir=str(run), steps=5, **{**tiny, "levels": 8})
    assert train(more)["step"] == 5
    ck = torch.load(run / "last.pt", weights_only=True)
    assert ck["arch"] == {"C": 6, "L": 8} and ck["model"]["log_gain"].shape == (8, 1)
    # A cool-down branch of that trunk: starts from its checkpoint in a folder of its own, the trunk untouched.
    branch = TrainConfig(
        train_dir=str(folders / "train"),
        run_dir=str(tmp_path / "branch"),
        steps=7,
        from_checkpoint=str(run / "last.pt"),
        decay_start=0.0,
        warmup_steps=0,
        **{**tiny, "levels": 8},
    )
    assert train(branch)["step"] == 7
    assert torch.load(run / "last.pt", weights_only=True)["state"]["step"] == 5
    bad = CliRunner().invoke(main, [*args[:6], "--arch", "width=3", "--steps", "1"])
    assert bad.exit_code == 2 and "no architecture key width (has C, L)" in bad.output


def test_coding_refuses_a_kind_that_only_trains(folders, tmp_path, tiny_kind, weights_copy, aec_file, png):
    """The registry tells a kind that only trains from one that codes: validating, exporting, encoding or
    decoding with it is one error line, and a kind that only codes is not trained."""
    with pytest.raises(AecError, match="'tiny-test' only trains"):
        model_class("tiny-test")
    assert trainable_class("tiny-test") is TinyKind and issubclass(model_class("compressai"), Model)
    with pytest.raises(AecError, match="'compressai' is not trained here"):
        trainable_class("compressai")
    run = tmp_path / "run"
    args = ["train", str(folders / "train"), "--run-dir", str(run), "--model-kind", "tiny-test", "--steps", "1"]
    args += ["--crop", "32", "--batch", "2", "--no-compile"]
    one_error_line(CliRunner().invoke(main, [*args, "--val", str(folders / "train")]), "--val", "only trains")
    with pytest.MonkeyPatch.context() as mp:  # context networks to fit, but no coder's latents to fit them to
        mp.setattr(TinyKind, "context_params", ("g_a.",))
        one_error_line(CliRunner().invoke(main, [*args, "--entropy-only"]), "--entropy-only", "only trains")
    assert CliRunner().invoke(main, args).exit_code == 0
    export = CliRunner().invoke(main, ["export", str(run / "last.pt"), "--name", "t", "--weights-dir", str(tmp_path)])
    one_error_line(export, "'tiny-test' only trains")
    # A manifest entry of that kind: the file that names it does not decode, and nothing encodes with it.
    manifest = json.loads((weights_copy / "manifest.json").read_text())
    manifest["models"][manifest["default"]]["kind"] = "tiny-test"
    (weights_copy / "manifest.json").write_text(json.dumps(manifest))
    for command in (["decode", str(aec_file), "-o", str(tmp_path / "a.png")], ["encode", str(png), "-f"]):
        one_error_line(CliRunner().invoke(main, command), "'tiny-test' only trains")


def test_train_options_are_the_config_fields():
    """One place for the defaults: every TrainConfig field the command offers is an option with its default."""
    from codec.training.config import cli_fields

    params = {p.name: p for p in main.commands["train"].params}
    for f in cli_fields():
        assert f.name in params, f.name
        if f.name != "arch":
            assert params[f.name].default == f.default, f.name


def test_level_norm_weighs_every_level_alike():
    from codec.training.train import LevelNorm

    norm = LevelNorm(levels=3, decay=0.0)  # decay 0: the running mean is the last value
    w = norm.weights(torch.tensor([1.0, 2.0, 3.0, 3.2]), torch.tensor([1.0, 4.0, 16.0, 16.0]))
    means = [1.0, 4.0, 16.0]
    assert norm.means == means
    assert torch.allclose(w * torch.tensor([1.0, 4.0, 16.0, 16.0]), torch.full((4,), sum(means) / 3))
