"""``aecodec compare`` (the side-by-side page) and ``aecodec bench`` (R-D on a folder), through the command line
as a user runs them, and the page rendered in headless Chromium."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from codec.bench import compare as cmp
from codec.bench import page
from codec.cli import main
from tests.conftest import one_error_line

SOURCE_IMG = re.compile(r'<img data-view="(\d+)" data-variant="([\w-]+)" alt="" src="data:image/png;base64,([^"]+)">')


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def page_images(html: str) -> list[tuple[int, str, Image.Image, int]]:
    """(view, variant, image, PNG bytes) of every picture the page embeds."""
    out = []
    for view, name, b64 in SOURCE_IMG.findall(html):
        png = base64.b64decode(b64)
        with Image.open(io.BytesIO(png), formats=["PNG"]) as im:
            im.load()
            out.append((int(view), name, im.copy(), len(png)))
    return out


def page_data(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="results">(.*?)</script>', html, re.S)[1])


def image_of(mode: str, photo_like, h: int = 64, w: int = 96) -> Image.Image:
    """A photo-like image in ``mode``; with alpha, a ramp from transparent (left) to opaque (right)."""
    image = Image.fromarray(photo_like(h, w, seed=5)).convert(mode.removesuffix("A") or mode)
    if mode.endswith("A"):
        image.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1)), "L"))
    return image


# -- compare ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA"])
def test_compare_page_at_equal_bytes(mode, tmp_path, photo_like):
    src = tmp_path / "in.png"
    image_of(mode, photo_like).save(src)
    before = src.read_bytes()
    result = run("compare", src, "-q", "8", "-o", tmp_path / "page.html")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    rows = {r["codec"]: r for r in summary["rows"]}
    assert list(rows) == ["original", "aecodec", "jpeg", "webp", "avif"]
    budget = rows["aecodec"]["bytes"]
    assert summary["budget_bytes"] == budget and rows["original"]["bytes"] == len(before)
    for name in ("jpeg", "webp", "avif"):
        r = rows[name]
        assert r["fits"] and 0 < r["bytes"] <= budget, r  # the largest file at or under aecodec's bytes
        assert r["bpp"] == pytest.approx(r["bytes"] * 8 / (64 * 96))
        assert 15 < r["psnr"] < 60 and r["ms_ssim"] is None  # 64 px: too small for MS-SSIM
    assert src.read_bytes() == before  # the input is never touched

    html = (tmp_path / "page.html").read_text()
    assert page_data(html)["rows"] == summary["rows"]  # the table the page shows is the one printed
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from the network
    images = page_images(html)
    assert [(v, n) for v, n, _, _ in images] == [(0, n) for n in rows]
    assert all(im.size == (96, 64) and im.mode == "RGB" for _, _, im, _ in images)
    shown = {n: np.asarray(im) for _, n, im, _ in images}
    assert len(html.encode()) < 3 * sum(size for *_, size in images)  # the page is mostly its pictures
    if mode in ("L", "LA"):
        assert all((a[..., 0] == a[..., 2]).all() for a in shown.values())  # gray stays gray
    if mode in ("RGBA", "LA"):
        assert rows["aecodec"]["alpha"] == "lossless" and rows["jpeg"]["alpha"] == "dropped"
        assert rows["webp"]["alpha"] is not None and rows["avif"]["alpha"] is not None
        # Transparent columns show the checkerboard, opaque ones the picture (the original's own pixels).
        board = np.asarray(cmp.checkerboard(96, 64).convert("RGB"))
        assert np.abs(shown["original"][:, 0].astype(int) - board[:, 0]).max() <= 1
        assert (shown["original"][:, 0] != shown["jpeg"][:, 0]).any()
    else:
        assert all(r["alpha"] is None for r in rows.values())


def test_compare_targets_and_default_output(tmp_path, photo_like):
    src = tmp_path / "photo.png"
    Image.fromarray(photo_like(64, 96, seed=2)).save(src)
    result = run("compare", src, "--bytes", "900", "--codecs", "jpeg")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [r["codec"] for r in rows] == ["original", "aecodec", "jpeg"]
    assert rows[1]["bytes"] <= 900 and rows[2]["bytes"] <= rows[1]["bytes"]
    assert (tmp_path / "photo.compare.html").stat().st_size > 0  # beside the input by default
    one_error_line(run("compare", src, "--codecs", "jpeg"), "exists", "--force")
    assert run("compare", src, "--codecs", "jpeg", "--bpp", "1", "-f").exit_code == 0


@pytest.mark.parametrize(
    "args, needles",
    [
        (["-q", "3", "--bpp", "1"], ["one of"]),
        (["--codecs", "jpeg,nope"], ["nope", "webp"]),
        (["--bytes", "10"], ["10 bytes"]),
        (["--bpp", "0"], ["--bpp"]),
        (["-o", "IN"], ["overwrite the input"]),
        (["-o", "-"], ["-o -"]),
    ],
)
def test_compare_bad_usage(args, needles, png, tmp_path):
    args = [png if a == "IN" else a for a in args]
    one_error_line(run("compare", png, *args), *needles)
    assert not list(tmp_path.glob("*.html"))


def test_compare_bad_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    one_error_line(run("compare", bad), "bad.png", "not a readable image")


def test_fit_quality_takes_the_largest_file_under_budget():
    sizes = {q: 100 + 10 * q for q in range(1, 101)}
    sizes[60] = 2000  # sizes grow with quality, not strictly: a bump above the budget
    q, data, fits = cmp.fit_quality(lambda q: b"x" * sizes[q], 700)
    assert fits and len(data) == sizes[q] <= 700 and sizes[q + 1] > 700
    q, data, fits = cmp.fit_quality(lambda q: b"x" * sizes[q], 50)
    assert (q, fits, len(data)) == (1, False, 110)  # even quality 1 is over: marked, not hidden
    assert cmp.fit_quality(lambda q: b"x" * q, 10**6)[:1] == (100,)


def test_large_image_views_overview_and_crops():
    """Over WHOLE_SIDE: a downscaled overview and full-resolution crops (centre and most detailed)."""
    h, w = 2200, 3000
    rgb = np.full((h, w, 3), 120, np.uint8)
    rng = np.random.default_rng(0)
    rgb[1536:2048, 512:1024] = rng.integers(0, 256, (512, 512, 3))  # the one textured grid cell
    vs = page.views(rgb)
    assert [v.scale for v in vs][1:] == [1.0, 1.0]
    assert vs[0].pixels(rgb).size == (page.OVERVIEW_SIDE, round(h * page.OVERVIEW_SIDE / w))
    assert (vs[1].x, vs[1].y) == ((w - page.CROP_SIDE) // 2, (h - page.CROP_SIDE) // 2)
    assert (vs[2].x, vs[2].y) == (512, 1536)
    assert all(v.pixels(rgb).size == (page.CROP_SIDE, page.CROP_SIDE) for v in vs[1:])
    assert np.array_equal(np.asarray(vs[2].pixels(rgb)), rgb[1536:2048, 512:1024])  # 1:1, not resampled
    assert len(page.views(rgb[:2048, :2048])) == 1  # up to WHOLE_SIDE: the whole image, full resolution


@pytest.mark.slow
def test_large_image_page_embeds_every_view(photo_like):
    rgb = np.tile(photo_like(64, 96), (40, 25, 1))[:2100, :2200]
    variants = [cmp.Variant(n, Image.fromarray(rgb), 1000) for n in ("original", "aecodec")]
    for v in variants:
        cmp.measure(variants[0], v)
    html = page.build("big", variants, 2200, 2100)
    images = page_images(html)
    assert sorted({v for v, *_ in images}) == list(range(len(page_data(html)["views"]))) and len(images) >= 4
    assert max(im.size[0] for *_, im, _ in images) == page.OVERVIEW_SIDE


# -- bench -----------------------------------------------------------------------------------------
def test_bench_folder(tiny_dir, tmp_path):
    out = tmp_path / "out"
    args = ["bench", tiny_dir, "-q", "2,8", "--codecs", "jpeg,webp", "--pillow-qualities", "10,50,90", "-o", out]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "## aecodec against each measured codec" in result.stdout and "| jpeg |" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["bdrate.md", "rd.csv", "rd.json", "rd.png", "rd_per_image.csv"]
    data = json.loads((out / "rd.json").read_text())
    assert data["images"] == ["im0.png", "im1.png", "im2.png"] and set(data["codecs"]) == {"aecodec", "jpeg", "webp"}
    aec = data["codecs"]["aecodec"]["results"]
    assert aec["quality"] == [2.0, 8.0] and aec["bpp"][0] < aec["bpp"][1]  # (the test network is random)
    jpeg = data["codecs"]["jpeg"]["results"]
    assert jpeg["quality"] == [10.0, 50.0, 90.0] and jpeg["psnr-rgb"] == sorted(jpeg["psnr-rgb"])
    with open(out / "rd_per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * (2 + 3 + 3)
    for r in rows:  # bpp from the whole file's real bytes
        assert float(r["bpp"]) == pytest.approx(int(r["bytes"]) * 8 / (64 * 96), rel=1e-5)
    mean = np.mean([float(r["bpp"]) for r in rows if r["codec"] == "aecodec" and float(r["quality"]) == 2.0])
    assert aec["bpp"][0] == pytest.approx(mean, rel=1e-5)
    with Image.open(out / "rd.png") as im:
        assert im.format == "PNG" and im.width > 500

    again = run(*args)
    one_error_line(again, "exists", "--force")
    quiet = run(*args, "-f", "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == "" and "| jpeg |" in quiet.stdout  # the table is the result


def test_bench_bad_inputs(tiny_dir, tmp_path):
    one_error_line(run("bench", tiny_dir, "-q", "2,x"), "-q")
    one_error_line(run("bench", tiny_dir, "-q", "11"), "11")
    one_error_line(run("bench", tiny_dir, "--codecs", "gif"), "gif")
    (tmp_path / "empty").mkdir()
    one_error_line(run("bench", tmp_path / "empty"), "no images")
    (tiny_dir / "im9.png").write_text("damaged")  # fails alone (issue 28): the others are measured and reported
    result = run("bench", tiny_dir, "-q", "4", "--codecs", "jpeg", "-o", tmp_path / "o")
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and "im9.png" in lines[0] and "1 of 4 images failed" in lines[-1], result.stderr
    assert "im9.png" not in (tmp_path / "o" / "rd.json").read_text()


# -- the page in a browser ---------------------------------------------------------------------------
@pytest.mark.slow
def test_page_in_chromium(tmp_path, photo_like, script):
    """Every picture loads, the slider moves the split, the selects swap the pictures; a screenshot is saved."""
    browser = script("browser")
    binary = browser.find_chromium()
    if binary is None:
        pytest.skip("Chromium not installed (Debian: apt-get install chromium)")
    src = tmp_path / "photo.png"
    Image.fromarray(photo_like(192, 256, seed=1)).save(src)
    assert run("compare", src, "-q", "4", "-o", tmp_path / "page.html").exit_code == 0
    with browser.Browser(binary, 900, 700) as b:
        b.open((tmp_path / "page.html").as_uri() + "#a=aecodec&b=jpeg&zoom=2")
        loaded = b.evaluate("[...document.images].map(i => i.complete && i.naturalWidth)")
        assert len(loaded) == 2 + 5 and all(w == 256 for w in loaded), loaded  # the stage's two and the sources
        clip = "document.getElementById('left').style.clipPath"
        assert b.evaluate(clip) == "inset(0px 50% 0px 0px)"
        box = b.evaluate(
            "(r => [r.left, r.top, r.width, r.height])(document.getElementById('split').getBoundingClientRect())"
        )
        b.click(box[0] + 0.25 * box[2], box[1] + box[3] / 2)
        assert b.evaluate(clip) != "inset(0px 50% 0px 0px)"
        assert 20 < b.evaluate("+document.getElementById('split').value") < 30
        assert b.evaluate("document.getElementById('right').src") == b.evaluate(
            "document.querySelector('#sources img[data-variant=\"jpeg\"]').src"
        )
        b.evaluate("location.hash = 'a=original&b=avif'")
        b.evaluate("new Promise(r => setTimeout(r, 100))")
        assert b.evaluate("document.getElementById('tagB').textContent") == "avif"
        assert b.evaluate("document.querySelectorAll('#table tbody tr').length") == 5
        shot = b.screenshot()
    (tmp_path / "compare.png").write_bytes(shot)
    with Image.open(io.BytesIO(shot)) as im:
        assert im.size == (900, 700) and len(set(im.convert("L").getdata())) > 50  # a rendered picture, not blank
