"""Huge images: peak memory of a tiled encode/decode, and what tiling costs in quality.

    python -m benchmarks.huge --size 8000 [--source PHOTO] [--quality 6]
    python -m benchmarks.huge --compare 768 --tile 256       # tiled vs untiled PSNR/bpp (one tile: ≤ 960)
    python -m benchmarks.huge --hostile 4096 --tile 1024     # a crafted file of empty streams (issue 15)
    python -m benchmarks.huge --hostile 11584 --stored png+alpha --to webp   # a crafted lossless file (issue 28)
    python -m benchmarks.huge --hostile 65536 --height 1 --fitted            # a fitted file of thin tiles (issue 34)

The big image is a photo resized up (Lanczos) to ``size × size``: smooth, photo-like content at a
size no training crop ever had. Encode and decode each run in a fresh process through the CLI, so
the peak resident memory reported (``ru_maxrss`` of the child) is the whole program's.

``--hostile`` decodes what an attacker can send for free: a header claiming ``size × size`` pixels in
tiles of ``--tile`` px with empty streams (a hundred bytes), built with ``codec.format.bitstream``. The decoder
must stay within its documented memory bound and take time in proportion to the pixels it writes.
With ``--fitted`` the file is of the fitted kind (``overfit``), whose streams cannot be empty: every tile
carries the streams of a small real one (``tests/fixtures/overfit``), which decode to some image at any tile
size (past its end a grid stream reads zeros), so the whole decoder runs on every tile. Its CPU seconds per
megapixel compare tile shapes (``--hostile 1024 --fitted`` is the square reference).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image

from codec.core.quality import DEFAULT_QUALITY
from codec.core.tensors import psnr
from codec.training.data import image_files

from .common import RESULTS_DIR, use_weights

DEFAULT_SOURCE = Path(__file__).resolve().parents[1] / "scripts" / "sample.png"


def _photo(source: Path | None, height: int, width: int) -> np.ndarray:
    src = Image.open(source or DEFAULT_SOURCE).convert("RGB")
    return np.asarray(src.resize((width, height), Image.Resampling.LANCZOS))


def _run_child(args: list[str], check: bool = True, cpu: bool = False) -> tuple[float, ...]:
    """(seconds, peak RSS in MB) of one CLI run in its own process (``wait4``: that child's own peak), with its
    CPU seconds (user + system) third if ``cpu``; with ``check`` a failed run raises RuntimeError."""
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "codec.cli", *args])
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - t0
    if check and os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"aecodec {args[0]} failed with status {os.waitstatus_to_exitcode(status)}")
    found = (seconds, usage.ru_maxrss / 1024)
    return (*found, usage.ru_utime + usage.ru_stime) if cpu else found


def memory(size: int, quality: float, tile: int, source: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        png, aec, out = Path(tmp) / "big.png", Path(tmp) / "big.aec", Path(tmp) / "out.png"
        rgb = _photo(source, size, size)
        Image.fromarray(rgb).save(png, compress_level=1)
        enc_s, enc_mb = _run_child(["encode", str(png), "-o", str(aec), "-q", str(quality), "--tile", str(tile)])
        dec_s, dec_mb = _run_child(["decode", str(aec), "-o", str(out)])
        rec = np.asarray(Image.open(out).convert("RGB"))
        return {
            "size": f"{size}x{size}",
            "tile": tile,
            "quality": quality,
            "encode_s": round(enc_s, 1),
            "encode_peak_rss_mb": round(enc_mb),
            "decode_s": round(dec_s, 1),
            "decode_peak_rss_mb": round(dec_mb),
            "bpp": aec.stat().st_size * 8 / size**2,
            "psnr": psnr(rgb, rec),
        }


def hostile_file(
    size: int, tile: int, model_id: str, weights_hash: bytes, streams: int = 2, height: int | None = None
) -> bytes:
    """A ``size × size`` (or ``size × height``) file in tiles of ``tile`` px (one tile when it covers the image)
    whose streams are empty."""
    from codec.format import bitstream as bs

    f = bs.AecFile(size, height or size, DEFAULT_QUALITY, model_id=model_id, weights_hash=weights_hash, tile=tile)
    if f.tile_count() == 1:
        f.tile = 0
    f.streams = [[b""] * streams for _ in range(f.tile_count())]
    return bs.pack(f)


FITTED_SEED = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "overfit" / "fitted-48x40.aec"


def fitted_file(width: int, height: int, tile: int) -> bytes:
    """A fitted file claiming ``width × height`` in tiles of ``tile`` px, every tile with ``FITTED_SEED``'s
    streams (a header rewritten, as an attacker would: 25 KB claim megapixels)."""
    from codec.format import bitstream as bs

    seed = bs.unpack(FITTED_SEED.read_bytes())
    f = bs.AecFile(width, height, seed.quality, model_id=seed.model_id, weights_hash=seed.weights_hash, tile=tile)
    if f.tile_count() == 1:
        f.tile = 0
    f.streams = [list(seed.streams[0]) for _ in range(f.tile_count())]
    return bs.pack(f)


#: Fitted files up to this many pixels are also decoded in this process (``codec.decode``): the time per pixel
#: without the command's start-up (importing torch alone costs about 1.6 s of CPU), which small files are made of.
IN_PROCESS_PIXELS = 1 << 24


def hostile_fitted(size: int, tile: int, height: int | None = None) -> dict:
    """Time, CPU time and peak RSS of ``aecodec decode`` on ``fitted_file``, written as PNG; for files up to
    ``IN_PROCESS_PIXELS`` also the CPU time of the decode alone, in this process."""
    height = height or size
    with tempfile.TemporaryDirectory() as tmp:
        aec, out = Path(tmp) / "fitted.aec", Path(tmp) / "out.png"
        aec.write_bytes(fitted_file(size, height, tile))
        seconds, peak_mb, cpu = _run_child(["decode", str(aec), "-o", str(out)], check=False, cpu=True)
        megapixels = size * height / 1e6
        found = {}
        if size * height <= IN_PROCESS_PIXELS:  # the decode alone, without the command's start-up
            import codec

            data = aec.read_bytes()
            codec.decode(fitted_file(48, 40, 0))  # warm: imports, tables
            t, c = time.perf_counter(), time.process_time()
            codec.decode(data)
            found = {"in_process_s": time.perf_counter() - t, "in_process_cpu_s": time.process_time() - c}
            found["in_process_cpu_us_per_pixel"] = round(found["in_process_cpu_s"] / megapixels, 3)
        return found | {
            "kind": "overfit",
            "size": f"{size}x{height}",
            "tile": tile,
            "file_bytes": aec.stat().st_size,
            "outcome": "decoded" if out.exists() else "refused",
            "decode_s": round(seconds, 1),
            "decode_cpu_s": round(cpu, 2),
            "decode_peak_rss_mb": round(peak_mb),
            "cpu_s_per_megapixel": round(cpu / megapixels, 3),
        }


def hostile(size: int, tile: int, height: int | None = None) -> dict:
    """Time and peak RSS of ``aecodec decode`` on ``hostile_file`` for the default model, written as PNG; a
    refused file is reported as such (with the time and memory the refusal took)."""
    from codec.weights.store import load_codec

    c = load_codec()
    height = height or size
    with tempfile.TemporaryDirectory() as tmp:
        aec, out = Path(tmp) / "hostile.aec", Path(tmp) / "out.png"
        aec.write_bytes(hostile_file(size, tile, c.model_id, c.weights_hash, height=height))
        seconds, peak_mb = _run_child(["decode", str(aec), "-o", str(out)], check=False)
        return {
            "size": f"{size}x{height}",
            "tile": tile,
            "file_bytes": aec.stat().st_size,
            "outcome": "decoded" if out.exists() else "refused",
            "decode_s": round(seconds, 1),
            "decode_peak_rss_mb": round(peak_mb),
            "s_per_megapixel": round(seconds / (size * height / 1e6), 2),
        }


#: ``--stored`` kinds: what the ``PIXL`` (and ``aLPH``) chunks of a crafted lossless file hold.
STORED_KINDS = ("png", "png+alpha", "webp", "exif")


def stored_file(size: int, kind: str) -> bytes:
    """A lossless (``PIXL``) file of ``size × size`` flat pixels: a PNG, a PNG with a 1-bit striped alpha PNG,
    or a lossless WebP (which the decoder refuses above ``stored.WEBP_MAX_PIXELS``); ``exif``: a 4×3 file whose
    ``eXIF`` chunk is ``size`` bytes (over ``bitstream.MAX_METADATA`` it is refused)."""
    import io

    from codec.format import bitstream as bs

    def encoded(image: Image.Image, fmt: str) -> bytes:
        buf = io.BytesIO()
        image.save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {"compress_level": 9}))
        return buf.getvalue()

    if kind == "exif":  # built by hand: pack refuses a chunk over the limit
        import zlib

        small = bs.pack(bs.AecFile(4, 3, DEFAULT_QUALITY, streams=[], pixels=encoded(Image.new("RGB", (4, 3)), "PNG")))
        body = small[: -bs.CRC_SIZE] + bs.CHUNK_HEADER.pack(bs.EXIF, size) + bytes(size)
        return body + zlib.crc32(body).to_bytes(bs.CRC_SIZE, "little")
    flat = Image.new("RGB", (size, size), (9, 99, 199))
    alpha = None
    if kind == "png+alpha":
        stripes = np.zeros((size, size), bool)
        stripes[:, ::2] = True
        alpha = encoded(Image.fromarray(stripes), "PNG")
    pixels = encoded(flat, "WEBP" if kind == "webp" else "PNG")
    return bs.pack(bs.AecFile(size, size, DEFAULT_QUALITY, streams=[], pixels=pixels, alpha=alpha))


def _write_stored(path: Path, size: int, kind: str) -> None:
    path.write_bytes(stored_file(size, kind))


def stored(size: int, kind: str, fmt: str) -> dict:
    """Time and peak RSS of ``aecodec decode`` on ``stored_file``, written as ``fmt``; a refusal is reported."""
    with tempfile.TemporaryDirectory() as tmp:
        aec, out = Path(tmp) / "stored.aec", Path(tmp) / f"out.{fmt}"
        # Built in a spawned process: a forked child's peak RSS counts the memory its parent held at the fork.
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(1) as pool:
            pool.apply(_write_stored, (aec, size, kind))
        seconds, peak_mb = _run_child(["decode", str(aec), "-o", str(out)], check=False)
        outcome = "decoded" if out.exists() else "refused"
        return {
            "kind": kind,
            "size": f"{size}x{size}" if kind != "exif" else f"{size} bytes of EXIF",
            "to": fmt,
            "file_bytes": aec.stat().st_size,
            "outcome": outcome,
            "decode_s": round(seconds, 1),
            "decode_peak_rss_mb": round(peak_mb),
        }


def compare(size: int, tile: int, quality: float, source: Path | None) -> dict:
    """Tiled vs one-piece coding of the same image at the same quality."""
    import codec
    from codec.coding.tiling import MAX_TILE

    untiled = max(size, 64) + 64
    if untiled > MAX_TILE:
        raise click.UsageError(f"--compare {size}: one tile of {untiled} px exceeds the tile limit of {MAX_TILE}")
    rgb = _photo(source, size, size)
    out = {}
    for name, t in (("untiled", untiled), ("tiled", tile)):
        data = codec.encode(rgb, quality=quality, tile=t)
        rec = np.asarray(codec.decode(data))
        out[name] = {"tile": t, "bpp": len(data) * 8 / size**2, "psnr": psnr(rgb, rec)}
    out["delta_psnr_db"] = out["tiled"]["psnr"] - out["untiled"]["psnr"]
    out["delta_bpp_percent"] = 100 * (out["tiled"]["bpp"] / out["untiled"]["bpp"] - 1)
    return out


@click.command()
@click.option("--size", type=int, default=8000, show_default=True, help="Side of the square test image (memory run).")
@click.option("--compare", "compare_size", type=int, default=None, help="Run the tiled-vs-untiled comparison instead.")
@click.option("--hostile", "hostile_size", type=int, default=None, help="Decode a crafted file of empty streams.")
@click.option(
    "--stored",
    "stored_kind",
    type=click.Choice(STORED_KINDS),
    default=None,
    help="With --hostile SIZE: decode a crafted lossless file of SIZE² flat pixels instead (exif: SIZE bytes of EXIF).",
)
@click.option("--height", type=int, default=None, help="With --hostile SIZE: the crafted file's height [SIZE].")
@click.option("--fitted", is_flag=True, help="With --hostile SIZE: a fitted (overfit) file of real tile streams.")
@click.option("--to", "to_format", type=click.Choice(["png", "webp"]), default="png", show_default=True)
@click.option("--tile", type=int, default=1024, show_default=True)
@click.option("--quality", type=float, default=DEFAULT_QUALITY, show_default=True)
@click.option(
    "--source", type=click.Path(exists=True), default=None, help="Photo to resize (default scripts/sample.png)."
)
@click.option(
    "--data", type=click.Path(exists=True, file_okay=False), default=None, help="Use this folder's first image."
)
@click.option("--weights", default=None)
def main(
    size, compare_size, hostile_size, stored_kind, height, fitted, to_format, tile, quality, source, data, weights
) -> None:
    use_weights(weights)
    src = Path(source) if source else (image_files(data)[0] if data else None)
    if hostile_size and stored_kind:
        result = stored(hostile_size, stored_kind, to_format)
        name = f"huge-stored-{stored_kind}-{hostile_size}-{to_format}.json"
    elif hostile_size and fitted:
        result = hostile_fitted(hostile_size, tile, height)
        name = f"huge-fitted-{hostile_size}{f'x{height}' if height else ''}-{tile}.json"
    elif hostile_size:
        result = hostile(hostile_size, tile, height)
        name = f"huge-hostile-{hostile_size}{f'x{height}' if height else ''}-{tile}.json"
    elif compare_size:
        result, name = compare(compare_size, tile, quality, src), f"huge-compare-{compare_size}.json"
    else:
        result, name = memory(size, quality, tile, src), f"huge-{size}.json"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / name).write_text(json.dumps(result, indent=2) + "\n")
    click.echo(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
