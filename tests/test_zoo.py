"""Models trained elsewhere (issue 35): CompressAI's architectures at random initialisation (small N, M), saved as
CompressAI saves checkpoints, imported with ``aecodec import compressai --from``, and coded through every path
(CLI, API, Pillow plugin, size search, bench); the exact path's symbols against threads and float64; sizes
against CompressAI's own ``compress()``; hostile checkpoints; the zoo's download path through torch.hub, served
from this machine (no machine here reaches the zoo's servers).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import codec
from codec.cli import main
from codec.core import quality as Q
from codec.format import bitstream as bs
from codec.models.zoo import CLASSES
from codec.weights.imported import model_id
from codec.weights.store import load_codec
from tests.conftest import one_error_line

ARCHS = tuple(CLASSES)
N, M = 16, 24  # small networks: the tests take seconds


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """This test's models folder and torch hub folder."""
    monkeypatch.setenv("AECODEC_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "models"


def network(arch: str, seed: int = 0) -> torch.nn.Module:
    """A CompressAI network at random initialisation, its analysis widened so that latents span several
    integers (a fresh g_a gives latents of ~0.05, all coded as 0)."""
    torch.manual_seed(seed)
    net = CLASSES[arch](N, M)
    with torch.no_grad():
        net.g_a[-1].weight.mul_(30)
    return net.eval()


def save_training_checkpoint(net: torch.nn.Module, path: Path) -> Path:
    """As CompressAI's examples/train.py saves ``checkpoint.pth.tar``: no entropy tables (update() not run)."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, "min")
    torch.save(
        {"epoch": 3, "state_dict": net.state_dict(), "loss": 1.5, "optimizer": opt.state_dict(),
         "aux_optimizer": opt.state_dict(), "lr_scheduler": sched.state_dict()},
        path,
    )  # fmt: skip
    return path


def save_zoo_file(net: torch.nn.Module, path: Path) -> Path:
    """As the zoo's files are: a plain state dict with the tables of ``update()``."""
    net.update(force=True)
    torch.save(net.state_dict(), path)
    return path


@functools.cache
def _photo(h: int, w: int) -> np.ndarray:
    from tests.conftest import make_photo_like

    return make_photo_like(h, w, seed=3)


def imported(home: Path, tmp_path: Path, arch: str) -> str:
    """``arch`` imported at zoo qualities 1 (a training checkpoint) and 2 (a zoo-style file): our 3 and 4."""
    one = save_training_checkpoint(network(arch, 1), tmp_path / f"{arch}-a.pth.tar")
    two = save_zoo_file(network(arch, 2), tmp_path / f"{arch}-b.pth.tar")
    result = run("import", "compressai", arch, "--quality", "1,2", "--from", one, "--from", two)
    assert result.exit_code == 0, result.output
    assert f"--model {model_id(arch, 'mse')}" in result.stdout
    return model_id(arch, "mse")


def test_our_ladder_is_compressais():
    """Qualities 3..10 are CompressAI's zoo qualities 1..8: the same λ (its own list, in its VBR model)."""
    from compressai.models import ScaleHyperpriorVbr

    assert Q.COMPRESSAI_LAMBDAS == tuple(ScaleHyperpriorVbr(8, 8).lmbda)
    assert Q.LAMBDAS[2:10] == Q.COMPRESSAI_LAMBDAS
    assert [Q.compressai_quality(k) for k in range(1, 9)] == list(range(3, 11))
    assert [Q.zoo_quality(q) for q in range(3, 11)] == list(range(1, 9))


@pytest.mark.parametrize("arch", ARCHS)
def test_import_and_code_everywhere(arch, home, tmp_path, png):
    mid = imported(home, tmp_path, arch)
    listed = {row["id"]: row for row in json.loads(run("models", "--json").stdout)}
    assert listed[mid]["levels"] == [3.0, 4.0] and listed[mid]["metric"] == "mse" and listed[mid]["present"]
    assert f"{mid}  q 3,4  (imported from CompressAI, mse-trained" in run("models").stdout
    package = Path(codec.__file__).parent
    assert not [*package.rglob("cai-*"), *(package.parent / "weights").glob("cai-*")], "nothing in the package"
    # the command
    for q in (3, 4):
        assert run("encode", png, "-o", tmp_path / f"{q}.aec", "--model", mid, "-q", q).exit_code == 0
        assert run("decode", tmp_path / f"{q}.aec", "-o", tmp_path / f"{q}.png").exit_code == 0
        with Image.open(tmp_path / f"{q}.png") as im:
            assert im.size == (80, 48)
    assert run("encode", png, "-o", tmp_path / "t.aec", "--model", mid, "-q", "4", "--tile", "64").exit_code == 0
    assert bs.unpack((tmp_path / "t.aec").read_bytes()).tile_count() == 2  # tiles, each with its margins
    assert run("decode", tmp_path / "t.aec", "-o", tmp_path / "t.png").exit_code == 0
    one_error_line(run("encode", png, "-o", tmp_path / "x.aec", "--model", mid, "-q", "5"), "qualities 3, 4")
    one_error_line(run("encode", png, "-o", tmp_path / "x.aec", "--model", mid, "-q", "3.5"), "3, 4")
    one_error_line(run("encode", png, "-o", tmp_path / "x.aec", "--model", mid, "-q", "3", "--effort", "1"))
    # the API, the size search over the qualities the model has, and the plugin
    with Image.open(png) as im:
        data = codec.encode(im, 4, model=mid)
        fits = codec.encode(im, max_bytes=10**6, model=mid)
        im.save(tmp_path / "p.aec", model=mid, quality=100)
    assert codec.decode(data).size == (80, 48) and bytes(data) == (tmp_path / "4.aec").read_bytes()
    assert bs.unpack(fits).quality == 4  # the size search picks among the qualities the model has
    with Image.open(tmp_path / "p.aec") as im:
        assert im.size == (80, 48)
    assert (tmp_path / "p.aec").read_bytes() == data  # Pillow's 100 is the model's top quality


@pytest.mark.parametrize("arch", ARCHS)
def test_symbols_are_identical_across_threads_and_float64(arch, home, tmp_path):
    net = load_codec(imported(home, tmp_path, arch)).model.at(4)
    x = torch.from_numpy(_photo(128, 192)).permute(2, 0, 1)[None].float() / 255
    y = net.analyze(x)
    sent, streams = net.quantize(y), net.encode_latent(y, 4)
    threads = torch.get_num_threads()
    for name in ("threads1", "threads2", "float64"):
        m = copy.deepcopy(net).double().prepare() if name == "float64" else net
        torch.set_num_threads(2 if name == "threads2" else 1)
        try:
            got = m.decode_symbols(streams, tuple(y.shape[2:]), 4)
            again = m.encode_latent(y.to(m.g_a[0].weight.dtype), 4)
        finally:
            torch.set_num_threads(threads)
        for field in ("z_sym", "y_sym", "indexes", "means"):
            assert torch.equal(getattr(got, field), getattr(sent, field)), (name, field)
        if name != "float64":
            assert again == streams, name


@pytest.mark.parametrize("arch", ARCHS)
def test_sizes_within_half_a_percent_of_compressai(arch, home, tmp_path, monkeypatch):
    """Our streams against CompressAI's ``compress()`` strings, same network, same padded image."""
    monkeypatch.setenv("AECODEC_CPU_FAST", "0")  # float32 analysis, as CompressAI's
    net = load_codec(imported(home, tmp_path, arch)).model.at(4)
    reference = CLASSES[arch](N, M).eval()
    reference.load_state_dict(net.state_dict())
    ours = theirs = 0
    for h, w in ((128, 192), (192, 128), (64, 256)):
        x = torch.from_numpy(_photo(h, w)).permute(2, 0, 1)[None].float() / 255
        ours += sum(len(s) for s in net.encode_latent(net.analyze(x), 4)[0])
        with torch.no_grad():
            theirs += sum(len(s[0]) for s in reference.compress(x)["strings"])
    assert abs(ours / theirs - 1) <= 0.005, (ours, theirs)


def test_files_name_their_network_and_survive_more_imports(home, tmp_path, png, monkeypatch):
    """A file carries its network's own hash: importing another quality later leaves it decodable; without the
    model, decoding it is one line naming the command that brings it."""
    one = save_training_checkpoint(network("mbt2018-mean", 1), tmp_path / "one.pth.tar")
    assert run("import", "compressai", "mbt2018-mean", "-q", "1", "--from", one).exit_code == 0
    mid = model_id("mbt2018-mean", "mse")
    assert run("encode", png, "-o", tmp_path / "a.aec", "--model", mid, "-q", "3").exit_code == 0
    two = save_training_checkpoint(network("mbt2018-mean", 2), tmp_path / "two.pth.tar")
    assert run("import", "compressai", "mbt2018-mean", "-q", "2", "--from", two).exit_code == 0
    assert run("decode", tmp_path / "a.aec", "-o", tmp_path / "a.png").exit_code == 0
    listed = {row["id"]: row for row in json.loads(run("models", "--json").stdout)}
    assert listed[mid]["levels"] == [3.0, 4.0]
    monkeypatch.setenv("AECODEC_MODELS", str(tmp_path / "elsewhere"))
    one_error_line(
        run("decode", tmp_path / "a.aec", "-o", tmp_path / "b.png"),
        "aecodec import compressai mbt2018-mean --metric mse --quality 1",
    )


def test_bench_measures_the_qualities_an_imported_model_has(home, tmp_path, png):
    mid = imported(home, tmp_path, "mbt2018-mean")
    out = tmp_path / "bench"
    result = run("bench", png.parent, "--model", mid, "--codecs", "jpeg", "--pillow-qualities", "50", "-o", out)
    assert result.exit_code == 0, result.output
    curves = json.loads((out / "rd.json").read_text())["codecs"]
    (ours,) = [c for name, c in curves.items() if name.startswith("aecodec")]
    assert len(ours["results"]["bpp"]) == 2  # qualities 3 and 4


def test_the_default_quality_is_the_nearest_a_model_has():
    assert Q.default_quality() == Q.DEFAULT_QUALITY == 6
    assert Q.default_quality((3.0, 4.0)) == 4
    assert Q.default_quality((3.0, 6.0, 10.0)) == 6
    assert Q.default_quality((5.0, 7.0)) == 7  # as near: the higher, a default should not starve an image
    assert Q.default_quality((9.0, 10.0)) == 9


def test_without_a_quality_an_imported_model_codes_its_nearest(home, tmp_path, png):
    """``aecodec encode --model ID`` without -q (and the API and the plugin without a quality) codes the quality
    nearest the default 6 that a model lacking 6 has: what a user who did not choose expects; -q 6 is refused."""
    mid = imported(home, tmp_path, "bmshj2018-factorized")  # qualities 3, 4
    assert run("encode", png, "-o", tmp_path / "d.aec", "--model", mid).exit_code == 0
    data = (tmp_path / "d.aec").read_bytes()
    assert bs.unpack(data).quality == 4
    with Image.open(png) as im:
        assert codec.encode(im, model=mid) == data
        im.save(tmp_path / "p.aec", model=mid)
    assert (tmp_path / "p.aec").read_bytes() == data
    one_error_line(run("encode", png, "-o", tmp_path / "x.aec", "--model", mid, "-q", "6"), "qualities 3, 4")


def test_models_lists_each_import_with_its_metric_and_levels(home, tmp_path):
    one = save_zoo_file(network("bmshj2018-factorized", 1), tmp_path / "a.pth.tar")
    two = save_zoo_file(network("bmshj2018-factorized", 2), tmp_path / "b.pth.tar")
    arch = "bmshj2018-factorized"
    assert run("import", "compressai", arch, "--metric", "ms-ssim", "-q", "8", "--from", one).exit_code == 0
    assert run("import", "compressai", arch, "-q", "2,5", "--from", one, "--from", two).exit_code == 0
    rows = {row["id"]: row for row in json.loads(run("models", "--json").stdout)}
    mse, ssim = rows[model_id(arch, "mse")], rows[model_id(arch, "ms-ssim")]
    assert (mse["metric"], mse["levels"], mse["qualities"], mse["imported"]) == ("mse", [4.0, 7.0], [4.0, 7.0], True)
    assert (ssim["metric"], ssim["levels"], ssim["imported"], ssim["present"]) == ("ms-ssim", [10.0], True, True)
    text = run("models").stdout.splitlines()
    note = "(imported from CompressAI, {}-trained, one network per quality)"
    assert f"{model_id(arch, 'mse')}  q 4,7  {note.format('mse')}" in text
    assert f"{model_id(arch, 'ms-ssim')}  q 10  {note.format('ms-ssim')}" in text


def test_a_safetensors_checkpoint_imports_too(home, tmp_path):
    from safetensors.torch import save_file

    net = network("bmshj2018-hyperprior")
    net.update(force=True)
    path = tmp_path / "net.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    assert run("import", "compressai", "bmshj2018-hyperprior", "-q", "3", "--from", path).exit_code == 0
    assert load_codec(model_id("bmshj2018-hyperprior", "mse")).model.qualities == (5.0,)


# -- hostile checkpoints: each refused in one line, exit 2, nothing written --------------------------------


class _Writes:
    """A pickled object whose ``__reduce__`` would create a file when unpickled."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def _hostile(kind: str, tmp_path: Path) -> tuple[Path, str]:
    """A checkpoint of mbt2018-mean damaged as ``kind``, and a word its refusal must hold."""
    sd = network("mbt2018-mean").state_dict()
    path = tmp_path / f"{kind}.pth.tar"
    words = {"pickle": "refused", "shape": "shape", "nan": "NaN", "inf": "infinite", "missing": "missing",
             "extra": "unexpected", "arch": "shape", "text": "not a PyTorch checkpoint", "entry": "not a tensor",
             "tails": "quantiles", "tables": "tables unusable"}  # fmt: skip
    if kind == "pickle":
        torch.save({"state_dict": sd, "extra": _Writes(tmp_path / "written")}, path)
        return path, words[kind]
    if kind == "shape":
        sd["g_s.2.weight"] = torch.zeros(3, 3, 5, 5)
    elif kind in ("nan", "inf"):
        sd["h_s.2.weight"][0, 0, 0, 0] = float("nan" if kind == "nan" else "inf")
    elif kind == "missing":
        del sd["h_a.4.bias"]
    elif kind == "extra":
        sd["context_prediction.weight"] = torch.zeros(2)
    elif kind == "arch":
        sd = network("bmshj2018-hyperprior").state_dict()
    elif kind == "text":
        path.write_text("not a checkpoint")
        return path, words[kind]
    elif kind == "entry":
        sd["g_a.0.weight"] = "code?"
    elif kind == "tails":
        sd["entropy_bottleneck.quantiles"][:, :, 2] = 1e9
    elif kind == "tables":
        net = network("mbt2018-mean")
        net.update(force=True)
        sd = net.state_dict()
        sd["gaussian_conditional._quantized_cdf"][0, 1] = 70000
    torch.save({"state_dict": sd}, path)
    return path, words[kind]


@pytest.mark.parametrize(
    "kind", ["pickle", "shape", "nan", "inf", "missing", "extra", "arch", "text", "entry", "tails", "tables"]
)
def test_hostile_checkpoints_are_refused(kind, home, tmp_path):
    path, word = _hostile(kind, tmp_path)
    one_error_line(run("import", "compressai", "mbt2018-mean", "-q", "1", "--from", path), word)
    assert not (tmp_path / "written").exists(), "the pickle ran code"
    assert not home.exists(), "nothing is written for a refused import"


_CONTEXT = "its context model predicts each latent from the ones decoded before it with a float network"


@pytest.mark.parametrize(
    "arch, why",
    [
        ("mbt2018", (_CONTEXT, "wavefront")),
        ("cheng2020-anchor", (_CONTEXT, "wavefront")),
        ("cheng2020-attn", (_CONTEXT, "wavefront")),
        ("mbt2018-vbr", (_CONTEXT, "wavefront")),
    ],
)
def test_refused_architectures_say_why(arch, why, home, tmp_path):
    """Each zoo architecture this version cannot code exactly is refused in one line that says why in plain
    words (what differs on another machine, and what is missing), whether from the zoo or from a file."""
    for args in ((), ("-q", "1", "--from", save_zoo_file(network("mbt2018-mean"), tmp_path / "any.pth.tar"))):
        result = run("import", "compressai", arch, *args)
        one_error_line(result, f"{arch} is not importable: ", *why, "another machine", "not built yet")
    assert not home.exists()


def test_unknown_requests_are_refused_in_one_line(home):
    one_error_line(run("import", "compressai", "nosuch"), "importable: bmshj2018-factorized")
    one_error_line(run("import", "compressai", "mbt2018-mean", "--metric", "psnr"), "mse, ms-ssim")
    one_error_line(run("import", "compressai", "mbt2018-mean", "-q", "9"), "1 to 8")
    assert not home.exists()


# -- the zoo's download path: torch.hub from a server on this machine -----------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request lines on stderr
        pass


@pytest.fixture
def served(tmp_path):
    """An HTTP server of ``tmp_path/served`` on this machine: (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _publish(monkeypatch, folder: Path, base: str, quality: int, content: Path) -> str:
    """Serve ``content`` under the zoo's naming (its sha256 prefix in the name) and point the zoo's URL table at
    it: the only thing the test replaces; torch.hub downloads, checks and caches it as for the real zoo."""
    from compressai.zoo import image

    name = f"mbt2018-mean-{quality}-{hashlib.sha256(content.read_bytes()).hexdigest()[:8]}.pth.tar"
    (folder / name).write_bytes(content.read_bytes())
    urls = copy.deepcopy(image.model_urls)
    urls["mbt2018-mean"]["mse"][quality] = f"{base}/{name}"
    monkeypatch.setattr(image, "model_urls", urls)
    return name


def test_the_zoo_path_downloads_checks_and_caches(home, tmp_path, served, monkeypatch, png):
    folder, base = served
    zoo = save_zoo_file(network("mbt2018-mean", 5), tmp_path / "zoo.pth.tar")
    name = _publish(monkeypatch, folder, base, 1, zoo)
    assert run("import", "compressai", "mbt2018-mean", "--quality", "1").exit_code == 0
    cached = Path(torch.hub.get_dir()) / "checkpoints" / name
    assert cached.read_bytes() == zoo.read_bytes()  # torch.hub's cache, where the zoo's loader keeps it
    (folder / name).unlink()  # a second import reads the cache
    assert run("import", "compressai", "mbt2018-mean", "--quality", "1").exit_code == 0
    mid = model_id("mbt2018-mean", "mse")
    assert run("encode", png, "-o", tmp_path / "z.aec", "--model", mid, "-q", "3").exit_code == 0
    # the zoo's file given with --from: its quality comes from its hash; as another quality it is refused
    assert run("import", "compressai", "mbt2018-mean", "--from", cached).exit_code == 0
    one_error_line(run("import", "compressai", "mbt2018-mean", "-q", "2", "--from", cached), "quality 1")
    cached.write_bytes(cached.read_bytes() + b"\0")  # damaged in the cache: torch does not check it, we do
    one_error_line(run("import", "compressai", "mbt2018-mean", "--quality", "1"), "delete it")
    one_error_line(run("import", "compressai", "mbt2018-mean", "-q", "1", "--from", cached), "its name")


def test_the_zoo_path_refuses_a_download_of_another_hash_and_no_network(home, tmp_path, served, monkeypatch):
    folder, base = served
    name = _publish(monkeypatch, folder, base, 1, save_zoo_file(network("mbt2018-mean"), tmp_path / "a.pth.tar"))
    (folder / name).write_bytes(save_zoo_file(network("mbt2018-mean", 9), tmp_path / "b.pth.tar").read_bytes())
    one_error_line(run("import", "compressai", "mbt2018-mean", "--quality", "1"), "hash")
    from compressai.zoo import image

    image.model_urls["mbt2018-mean"]["mse"][1] = "http://127.0.0.1:9/mbt2018-mean-1-00000000.pth.tar"
    one_error_line(run("import", "compressai", "mbt2018-mean", "--quality", "1"), "--from")
    assert not home.exists()


# -- the variable-rate models: one network for qualities 3 to 10 in steps of 0.25 -----------------------------------

VBR = ("bmshj2018-hyperprior-vbr", "mbt2018-mean-vbr")


def vbr_network(arch: str, seed: int = 0, variable_z: bool = True) -> torch.nn.Module:
    """A CompressAI variable-rate network at random initialisation (as the zoo builds them: ``vr_entbttlnck``),
    analysis widened as ``network``'s, its gains moved off their defaults so that the file's are what codes."""
    from codec.models.zoo_vbr import VBR_CLASSES

    torch.manual_seed(seed)
    net = VBR_CLASSES[arch](N, M, vr_entbttlnck=variable_z)
    with torch.no_grad():
        net.g_a[-1].weight.mul_(30)
        net.Gain.mul_(torch.linspace(0.8, 1.3, 8))
    return net.eval()


def save_vbr_zoo_file(net: torch.nn.Module, path: Path) -> Path:
    """As the zoo's VBR files are loaded and evaluated (``update(force=True, scale=Gain[-1])``), then saved."""
    net.update(force=True, scale=net.Gain[-1])
    torch.save(net.state_dict(), path)
    return path


def imported_vbr(tmp_path: Path, arch: str, variable_z: bool = True, training: bool = False) -> str:
    net = vbr_network(arch, 1, variable_z)
    path = tmp_path / f"{arch}.pth.tar"
    save_training_checkpoint(net, path) if training else save_vbr_zoo_file(net, path)
    result = run("import", "compressai", arch, "--from", path)
    assert result.exit_code == 0, result.output
    assert "qualities 3 to 10 in steps of 0.25" in result.stdout
    return model_id(arch, "mse")


def test_the_variable_rate_grid():
    from codec.models.zoo_vbr import GRID

    assert GRID[0] == 3 and GRID[-1] == 10 and len(GRID) == 29 and GRID[5] == 4.25
    assert Q.grid_step(GRID) == 0.25 and Q.grid_step((3.0, 4.0, 5.0)) is None and Q.grid_step((3.0, 4.0)) is None
    assert Q.describe(GRID) == "qualities 3 to 10 in steps of 0.25" and Q.describe((3.0, 4.0)) == "qualities 3, 4"
    assert Q.integer_qualities(10, GRID) == [float(q) for q in range(3, 11)]  # bench: the trained levels
    with pytest.raises(ValueError, match="it codes qualities 3 to 10 in steps of 0.25"):
        Q.check_quality(4.3, 10, "m", GRID)


@pytest.mark.parametrize("arch", VBR)
def test_variable_rate_import_and_code_everywhere(arch, home, tmp_path, png):
    mid = imported_vbr(tmp_path, arch)
    listed = {row["id"]: row for row in json.loads(run("models", "--json").stdout)}
    assert listed[mid]["levels"] == [3 + 0.25 * i for i in range(29)] and listed[mid]["qualities"] == [3.0, 10.0]
    assert f"{mid}  q 3-10 step 0.25  (imported from CompressAI, mse-trained, one variable-rate network)" in (
        run("models").stdout
    )
    for q in (3, 4.25, 10):
        assert run("encode", png, "-o", tmp_path / f"{q}.aec", "--model", mid, "-q", q).exit_code == 0
        assert bs.unpack((tmp_path / f"{q}.aec").read_bytes()).quality == q
        assert run("decode", tmp_path / f"{q}.aec", "-o", tmp_path / f"{q}.png").exit_code == 0
        with Image.open(tmp_path / f"{q}.png") as im:
            assert im.size == (80, 48)
    sizes = [len((tmp_path / f"{q}.aec").read_bytes()) for q in (3, 4.25, 10)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[2]  # the rate follows the quality
    for q in ("4.3", "2.5", "11"):
        one_error_line(run("encode", png, "-o", tmp_path / "x.aec", "--model", mid, "-q", q), "in steps of 0.25")
    one_error_line(run("import", "compressai", arch, "-q", "1", "--from", tmp_path / f"{arch}.pth.tar"), "no --quality")
    one_error_line(run("encode", png, "-o", tmp_path / "x.aec", "--model", mid, "-q", "4", "--effort", "1"), "effort")
    assert run("encode", png, "-o", tmp_path / "d.aec", "--model", mid).exit_code == 0
    assert bs.unpack((tmp_path / "d.aec").read_bytes()).quality == Q.DEFAULT_QUALITY  # on the grid
    with Image.open(png) as im:
        data = codec.encode(im, 4.25, model=mid)
        fits = codec.encode(im, max_bytes=sizes[1], model=mid)
        im.save(tmp_path / "p.aec", model=mid, quality=100)
    assert bytes(data) == (tmp_path / "4.25.aec").read_bytes() and codec.decode(data).size == (80, 48)
    assert len(fits) <= sizes[1] and bs.unpack(fits).quality in [3 + 0.25 * i for i in range(29)]
    assert bs.unpack(fits).quality >= 4.25  # the search walks the grid, not only the trained levels
    assert (tmp_path / "p.aec").read_bytes() == (tmp_path / "10.aec").read_bytes()  # Pillow's 100 is the top


@pytest.mark.parametrize("arch", VBR)
def test_variable_rate_symbols_are_identical_across_threads_and_float64(arch, home, tmp_path):
    model = load_codec(imported_vbr(tmp_path, arch)).model
    x = torch.from_numpy(_photo(128, 192)).permute(2, 0, 1)[None].float() / 255
    y = model.analyze(x)
    threads = torch.get_num_threads()
    for q in (4.0, 6.75):
        sent, streams = model.quantize(y, q), model.encode_latent(y, q)
        for name in ("threads1", "threads2", "float64"):
            m = copy.deepcopy(model).double().prepare() if name == "float64" else model
            torch.set_num_threads(2 if name == "threads2" else 1)
            try:
                got = m.decode_symbols(streams, tuple(y.shape[2:]), q)
                again = m.encode_latent(y.to(m.g_a[0].weight.dtype), q)
            finally:
                torch.set_num_threads(threads)
            for field in ("z_sym", "y_sym", "indexes", "means"):
                assert torch.equal(getattr(got, field), getattr(sent, field)), (q, name, field)
            if name != "float64":
                assert again == streams, (q, name)


def test_variable_rate_grid_is_the_same_whatever_the_model_is_held_in(home, tmp_path):
    """The stored grid (z's steps and tables, y's scales) is computed in float64 on copies: rebuilding it from a
    model held in float64, or at another thread count, stores the very same buffers, as another machine must."""
    model = load_codec(imported_vbr(tmp_path, "mbt2018-mean-vbr")).model
    stored = {k: v.clone() for k, v in model.grid.state_dict().items()}
    threads = torch.get_num_threads()
    for name in ("float64", "threads2"):
        m = copy.deepcopy(model).double() if name == "float64" else copy.deepcopy(model)
        torch.set_num_threads(2 if name == "threads2" else 1)
        try:
            m.build_grid()
        finally:
            torch.set_num_threads(threads)
        for k, v in m.grid.state_dict().items():
            assert v.dtype == stored[k].dtype and torch.equal(v, stored[k]), (name, k)
    assert len(set(stored["qs"].tolist())) > 1  # the variable step: the grid is not one table repeated


@pytest.mark.parametrize("arch, variable_z", [(a, v) for a in VBR for v in (True, False)])
def test_variable_rate_sizes_and_pixels_match_compressai(arch, variable_z, home, tmp_path, monkeypatch):
    """At each of CompressAI's levels s (our quality s+3): our streams within 0.5 % of its ``compress(x,
    stage=2, s=s)`` after its ``update(force=True, scale=Gain[s])``, and our decoded image (quantization offsets
    included) its ``decompress``'s, to float precision: the same network, tables of the same step. Between levels,
    the same against its ``compress(x, stage=2, inputscale=scale)`` at the scale our grid stored."""
    from codec.models.zoo_vbr import GRID, reference

    monkeypatch.setenv("AECODEC_CPU_FAST", "0")  # float32 analysis, as CompressAI's
    model = load_codec(imported_vbr(tmp_path, arch, variable_z, training=not variable_z)).model
    ref = reference(arch, N, M, variable_z).eval()
    # the variable step's bottleneck: its load_state_dict cannot size the tables, update() builds them
    eb = tuple(f"entropy_bottleneck.{t}" for t in ("_quantized_cdf", "_offset", "_cdf_length") if variable_z)
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith(("grid.", *eb))}
    assert set(ref.load_state_dict(sd, strict=False).missing_keys) <= set(eb)
    x = torch.from_numpy(_photo(128, 192)).permute(2, 0, 1)[None].float() / 255
    for q in [*range(3, 11), 4.25, 8.5]:  # and between levels: CompressAI's own arbitrary step, the grid's scale
        s = Q.zoo_quality(q) - 1 if q == int(q) else 0
        scale = ref.Gain[s] if q == int(q) else model.grid.scale[GRID.index(q)]
        kwargs = {"s": s} if q == int(q) else {"inputscale": scale}
        streams = model.encode_latent(model.analyze(x), q)
        with torch.no_grad():
            ref.update(force=True, scale=scale)
            out = ref.compress(x, stage=2, **kwargs)
            x_ref = ref.decompress(out["strings"], out["shape"], stage=2, **kwargs)["x_hat"]
        ours, theirs = sum(len(b) for b in streams[0]), sum(len(b[0]) for b in out["strings"])
        assert abs(ours / theirs - 1) <= 0.005, (q, ours, theirs)
        x_hat = model.synthesize(model.decode_latent(streams, (8, 12), q)).clamp(0, 1)
        assert float((x_hat - x_ref).abs().max()) < 1e-4, q


@pytest.mark.parametrize(
    "kind, word",
    [("gain", "Gain out of range"), ("nan", "NaN"), ("step", "quantization step"), ("missing", "missing"),
     ("pickle", "refused")],
)  # fmt: skip
def test_hostile_variable_rate_checkpoints_are_refused(kind, word, home, tmp_path):
    sd = vbr_network("mbt2018-mean-vbr").state_dict()
    path = tmp_path / f"{kind}.pth.tar"
    if kind == "gain":
        sd["Gain"][3] = 0.0
    elif kind == "nan":
        sd["gayn2zqstep.2.weight"][0, 0] = float("nan")
    elif kind == "step":
        sd["lower_bound_zqstep.bound"].fill_(1e-12)  # z's step as small as the network gives: huge tables
        sd["gayn2zqstep.4.bias"].fill_(-1e4)
    elif kind == "missing":
        del sd["gayn2zqstep.4.bias"]  # half the variable-step network
    torch.save({"state_dict": sd, **({"x": _Writes(tmp_path / "written")} if kind == "pickle" else {})}, path)
    one_error_line(run("import", "compressai", "mbt2018-mean-vbr", "--from", path), word)
    assert not (tmp_path / "written").exists(), "the pickle ran code"
    assert not home.exists(), "nothing is written for a refused import"


def test_a_variable_rate_file_without_its_model_names_the_import(home, tmp_path, png, monkeypatch):
    """A file names its weights' hash: other weights under the same id (another import: its grid computed from
    another checkpoint) refuse it, as does an installation without the model, in one line naming the import."""
    mid = imported_vbr(tmp_path, "bmshj2018-hyperprior-vbr")
    assert run("encode", png, "-o", tmp_path / "a.aec", "--model", mid, "-q", "5.5").exit_code == 0
    other = save_vbr_zoo_file(vbr_network("bmshj2018-hyperprior-vbr", 7), tmp_path / "other.pth.tar")
    copy_of = tmp_path / "kept"
    copy_of.mkdir()
    for f in home.iterdir():
        (copy_of / f.name).write_bytes(f.read_bytes())
    assert run("import", "compressai", "bmshj2018-hyperprior-vbr", "--from", other).exit_code == 0
    one_error_line(run("decode", tmp_path / "a.aec", "-o", tmp_path / "b.png"), "does not have")
    monkeypatch.setenv("AECODEC_MODELS", str(copy_of))  # the models folder copied: the file decodes
    assert run("decode", tmp_path / "a.aec", "-o", tmp_path / "b.png").exit_code == 0
    monkeypatch.setenv("AECODEC_MODELS", str(tmp_path / "elsewhere"))
    line = one_error_line(run("decode", tmp_path / "a.aec", "-o", tmp_path / "c.png"))
    assert "aecodec import compressai bmshj2018-hyperprior-vbr --metric mse" in line and "--quality" not in line, line


def test_the_zoo_path_brings_a_variable_rate_model(home, tmp_path, served, monkeypatch, png):
    """The zoo's VBR file (``compressai.zoo.image_vbr.model_urls``), downloaded through torch.hub as the others."""
    from compressai.zoo import image_vbr

    folder, base = served
    zoo = save_vbr_zoo_file(vbr_network("mbt2018-mean-vbr", 4), tmp_path / "zoo.pth.tar")
    name = f"mbt2018-mean-mse-vbr-{hashlib.sha256(zoo.read_bytes()).hexdigest()[:8]}.pth.tar"
    (folder / name).write_bytes(zoo.read_bytes())
    urls = copy.deepcopy(image_vbr.model_urls)
    urls["mbt2018-mean-vbr"]["mse"] = f"{base}/{name}"
    monkeypatch.setattr(image_vbr, "model_urls", urls)
    assert run("import", "compressai", "mbt2018-mean-vbr").exit_code == 0
    assert (Path(torch.hub.get_dir()) / "checkpoints" / name).read_bytes() == zoo.read_bytes()
    mid = model_id("mbt2018-mean-vbr", "mse")
    assert run("encode", png, "-o", tmp_path / "z.aec", "--model", mid, "-q", "7.75").exit_code == 0
    assert run("decode", tmp_path / "z.aec", "-o", tmp_path / "z.png").exit_code == 0
    cached = Path(torch.hub.get_dir()) / "checkpoints" / name  # the zoo's file, known by its hash
    assert run("import", "compressai", "mbt2018-mean-vbr", "--from", cached).exit_code == 0
    one_error_line(
        run("import", "compressai", "bmshj2018-hyperprior-vbr", "--from", cached),
        "this is CompressAI's mbt2018-mean-vbr (mse), not bmshj2018-hyperprior-vbr (mse)",
    )


def test_bench_measures_a_variable_rate_models_levels(home, tmp_path, png):
    """``bench`` without -q measures a variable-rate model at its trained levels (3..10), -q at any grid quality."""
    mid = imported_vbr(tmp_path, "mbt2018-mean-vbr")
    for qualities, count in ((), 8), (("-q", "3.5,9.75"), 2):
        out = tmp_path / f"bench{count}"
        args = ("--codecs", "jpeg", "--pillow-qualities", "50", "-o", out, *qualities)
        result = run("bench", png.parent, "--model", mid, *args)
        assert result.exit_code == 0, result.output
        curves = json.loads((out / "rd.json").read_text())["codecs"]
        (ours,) = [c for name, c in curves.items() if name.startswith("aecodec")]
        assert len(ours["results"]["bpp"]) == count
