"""``aecodec`` command line: a thin shell over ``codec.api`` (click).

Exit codes: 0 success; 2 bad input, bad file or bad usage; 1 anything else. Errors are one line on
stderr, never a traceback. With several inputs each failure is reported and the rest still run.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

import click

from . import __version__, files
from .bitstream import MAX_PIXELS
from .errors import AecError
from .lean import import_compressai_lean
from .quality import DEFAULT_QUALITY, Q_MAX, Q_MIN

EXIT_BAD_INPUT, EXIT_OTHER = 2, 1
T = TypeVar("T")
P = TypeVar("P")
NO_LIMIT = 1 << 64  # above any u32 × u32
BATCH_HELP = (
    "Images per network pass (same-size images share it); 0 = auto: 16 on CUDA, 1 on CPU, "
    "where batching measured no faster."
)


def _one_line(msg: str) -> str:
    """Messages can quote library errors or file names; the CLI promises one line per failure."""
    return " ".join(str(msg).split())


def _fail(msg: str) -> None:
    click.echo(f"aecodec: {_one_line(msg)}", err=True)


def _labelled(src: str, msg: str) -> str:
    """Prefix a failure with its input, so a batch run says which file it was about."""
    name = files.label(src)
    return msg if msg.startswith(f"{name}:") else f"{name}: {msg}"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings (e.g. Pillow on odd EXIF) as one ``aecodec: warning:`` line, not a source dump."""
    click.echo(f"aecodec: warning: {_one_line(str(message))}", err=True)


def _prefetched(
    inputs: tuple[str, ...], load: Callable[[str], T], depth: int = 2
) -> Iterator[tuple[str, Callable[[], T]]]:
    """Yield (input, get) while the next ``depth`` inputs load in background threads, so reading and
    decoding files overlaps the network (file I/O and Pillow's decoders release the GIL). ``get()``
    returns the loaded value or raises what loading raised, inside the caller's error handling."""
    with ThreadPoolExecutor(max_workers=depth) as pool:
        pending: deque = deque()
        rest = iter(inputs)

        def submit() -> None:
            src = next(rest, None)
            if src is not None:
                pending.append((src, pool.submit(load, src)))

        for _ in range(depth + 1):
            submit()
        while pending:
            src, future = pending.popleft()
            submit()
            yield src, future.result


def _chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Outcomes:
    """Runs steps under the CLI's error policy: one line per failed input, the worst exit status kept."""

    def __init__(self) -> None:
        self.status = 0

    def attempt(self, srcs: list[str], step: Callable[[], T]) -> T | None:
        try:
            return step()
        except AecError as e:
            for src in srcs:
                _fail(_labelled(src, str(e)))
            self.status = EXIT_BAD_INPUT
        except KeyboardInterrupt:
            _fail("interrupted")
            sys.exit(130)
        except Exception as e:  # noqa: BLE001 - the CLI promises one line, never a traceback
            for src in srcs:
                _fail(f"{src}: internal error: {type(e).__name__}: {e}")
            self.status = self.status or EXIT_OTHER
        return None


def _run_many(
    inputs: tuple[str, ...],
    load: Callable[[str], T],
    prepare: Callable[[str, Callable[[], T]], P],
    code: Callable[[list[P]], list[Callable[[], int]]],
    unit: str,
    batch: int = 1,
) -> None:
    """Code the inputs ``batch`` at a time, their data loaded ahead by ``load``, with a progress bar
    showing MP/s; exit with the worst status seen.

    Per input, ``prepare`` checks its output and gets its data; ``code`` runs a batch of prepared
    inputs through the codec and returns, per input, a step that writes its output and returns its
    pixel count. A failure is reported against the inputs it concerns and the rest still run.
    """
    outcomes = _Outcomes()
    bar = None
    if len(inputs) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(inputs), unit=unit, file=sys.stderr, dynamic_ncols=True)
    t0, pixels = time.perf_counter(), 0
    for group in _chunks(_prefetched(inputs, load, depth=max(2, batch)), batch):
        ready = []
        for src, get in group:
            item = outcomes.attempt([src], lambda src=src, get=get: prepare(src, get))
            if item is not None:
                ready.append((src, item))
        srcs = [src for src, _ in ready]
        writes = outcomes.attempt(srcs, partial(code, [item for _, item in ready])) if ready else None
        for src, write in zip(srcs, writes or [], strict=False):
            pixels += outcomes.attempt([src], write) or 0
        if bar:
            bar.update(len(group))
            bar.set_postfix(MPps=f"{pixels / 1e6 / max(time.perf_counter() - t0, 1e-9):.2f}")
    if bar:
        bar.close()
    if len(inputs) > 1 and outcomes.status:
        _fail("some inputs failed (see above)")
    sys.exit(outcomes.status)


def _batch_size(batch: int, device: str) -> int:
    """``--batch 0`` (auto): a GPU gets ``codec.batch.BATCH`` images per network pass, a CPU one."""
    if batch < 0:
        raise AecError(f"--batch must be 0 (auto) or positive, got {batch}")
    if batch:
        return batch
    from .batch import BATCH
    from .weights import resolve_device

    return BATCH if resolve_device(device).startswith("cuda") else 1


def _check_dest(src: str, dest: str, force: bool) -> None:
    _check_not_input(src, dest)
    if dest != files.STDIO and Path(dest).exists() and not force:
        raise AecError(f"{dest}: exists (use --force to overwrite)")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aecodec")
def main() -> None:
    """aecodec: a learned image codec.

    \b
      aecodec encode photo.png            writes photo.aec
      aecodec decode photo.aec            writes photo.png
      aecodec info photo.aec
    """
    warnings.showwarning = _show_warning


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-o", "--output", help="Output file, folder (ends with / or exists; required for several inputs), or - for stdout."
)
@click.option(
    "-q",
    "--quality",
    type=float,
    default=DEFAULT_QUALITY,
    show_default=True,
    help=f"{Q_MIN:g} (fewest bits, ~0.1 bpp) to {Q_MAX:g} (best quality); fractions interpolate.",
)
@click.option(
    "--target-bpp", type=float, help="Search the quality whose file is closest below this many bits per pixel."
)
@click.option("--max-bytes", type=int, help="Highest quality whose file fits in this many bytes (fails if none does).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--model", "model_id", help="Model id from weights/manifest.json (default: the manifest's default).")
@click.option(
    "--tile",
    type=int,
    default=1024,
    show_default=True,
    help="Tile side in pixels (multiple of 64): larger images are coded in tiles, bounding memory.",
)
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--batch", type=int, default=0, show_default=True, help=BATCH_HELP)
def encode(inputs, output, quality, target_bpp, max_bytes, device, model_id, tile, force, batch) -> None:
    """Compress images (PNG, JPEG, WebP, TIFF, ...) to .aec. Use - to read stdin."""
    import_compressai_lean()
    from .api import encode as encode_image
    from .batch import encode_images
    from .quality import check_quality
    from .tiling import check_tile_size
    from .weights import load_codec

    try:
        check_quality(quality)
        check_tile_size(tile)
        if target_bpp is not None and max_bytes is not None:
            raise AecError("give either --target-bpp or --max-bytes, not both")
        batch = _batch_size(batch, device)
        codec = load_codec(model_id, device)
    except (AecError, ValueError) as e:
        _fail(str(e))
        sys.exit(EXIT_BAD_INPUT)

    def load(src: str):
        return files.open_image(files.read_bytes(src), files.label(src))

    def prepare(src: str, get):
        dest = files.output_path(src, output, ".aec", len(inputs) > 1)
        _check_dest(src, dest, force)
        return dest, get()

    def code(items: list) -> list[Callable[[], int]]:
        images = [image for _, image in items]
        if target_bpp is None and max_bytes is None:
            datas = encode_images(images, quality, codec, batch, tile=tile)
        else:  # a search per image: nothing to batch
            search = partial(encode_image, target_bpp=target_bpp, max_bytes=max_bytes, codec=codec, tile=tile)
            datas = [search(im) for im in images]
        return [
            _writer(dest, force, image, partial(bytes, data)) for (dest, image), data in zip(items, datas, strict=True)
        ]

    _run_many(inputs, load, prepare, code, "img", batch)


def _writer(dest: str, force: bool, image, render: Callable[[], bytes]) -> Callable[[], int]:
    """A step that writes ``render()`` to ``dest`` (atomically) and returns the image's pixel count."""

    def write() -> int:
        files.write_output(dest, render(), force)
        return image.width * image.height

    return write


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output file (.png, .jpg, .webp, .tif), folder, or - for stdout (PNG).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=MAX_PIXELS,
    show_default=True,
    help="Refuse larger images (width x height, padded to 64) before allocating anything for them.",
)
@click.option("--batch", type=int, default=0, show_default=True, help=BATCH_HELP)
def decode(inputs, output, device, force, max_pixels, batch) -> None:
    """Decompress .aec files to PNG (or the format the output name asks for). Use - to read stdin."""
    import_compressai_lean()
    from . import bitstream as bs
    from .api import check_work_area
    from .batch import decode_images
    from .weights import load_codec_for

    try:
        batch = _batch_size(batch, device)
    except AecError as e:
        _fail(str(e))
        sys.exit(EXIT_BAD_INPUT)

    def prepare(src: str, get):
        dest = files.output_path(src, output, ".png", len(inputs) > 1)
        _check_dest(src, dest, force)
        data = get()
        header = bs.unpack(data, max_pixels)
        check_work_area(header, max_pixels)
        load_codec_for(header.model_id, header.weights_hash, device)  # a missing model fails this file alone
        return dest, data

    def code(items: list) -> list[Callable[[], int]]:
        images = decode_images([data for _, data in items], None, batch, max_pixels, device)
        return [
            _writer(dest, force, image, partial(files.image_bytes, image, dest))
            for (dest, _), image in zip(items, images, strict=True)
        ]

    _run_many(inputs, files.read_bytes, prepare, code, "img", batch)


@main.command()
@click.argument("file")
def info(file) -> None:
    """Describe an .aec file: size, channels, quality, bpp, model, format version."""
    from . import bitstream as bs

    try:
        data = files.read_bytes(file)
        f = bs.unpack(data, max_pixels=NO_LIMIT)  # describing allocates nothing: no size limit
    except AecError as e:
        _fail(str(e))
        sys.exit(EXIT_BAD_INPUT)
    pixels = f.width * f.height
    lines = [
        ("file", file),
        ("format version", f.version),
        ("size", f"{f.width}x{f.height}"),
        ("channels", f.mode),
        ("quality", f"{f.quality:g}"),
        ("bytes", len(data)),
        ("bpp", f"{len(data) * 8 / pixels:.4f}"),
        ("model", f.model_id),
        ("weights", f.weights_hash.hex()),
        ("streams", f"z {len(f.z_stream)} B, y {len(f.y_stream)} B" + (f", alpha {len(f.alpha)} B" if f.alpha else "")),
        ("icc profile", f"{len(f.icc)} B" if f.icc else "none"),
        ("exif", f"{len(f.exif)} B" if f.exif else "none"),
    ]
    for k, v in lines:
        click.echo(f"{k + ':':16}{v}")


def _check_not_input(src: str, dest: str) -> None:
    if src != files.STDIO and dest != files.STDIO and Path(src).resolve() == Path(dest).resolve():
        raise AecError(f"{src}: output would overwrite the input")


@main.command()
@click.argument("train_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--val", "val_dir", type=click.Path(exists=True, file_okay=False), help="Validation folder.")
@click.option("--run-dir", default=None, help="Checkpoints and logs (default ~/.cache/aecodec/runs/default).")
@click.option("--steps", type=int, default=100_000, show_default=True)
@click.option("--max-minutes", type=float, default=0.0, help="Time budget for this invocation (0 = none).")
@click.option("--crop", type=int, default=128, show_default=True)
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option(
    "--decay-start",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.7,
    show_default=True,
    help="Fraction of this invocation's budget after which the LR follows a cosine down.",
)
@click.option("--warmup-steps", type=int, default=300, show_default=True, help="Linear LR warm-up after (re)start.")
@click.option("--metric", type=click.Choice(["mse", "ms-ssim"]), default="mse", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True)
@click.option("--val-every", type=int, default=2000, show_default=True)
@click.option("--val-images", type=int, default=8, show_default=True)
@click.option("--ckpt-minutes", type=float, default=5.0, show_default=True)
@click.option("--N", "N", type=int, default=128, show_default=True)
@click.option("--M", "M", type=int, default=192, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=int, default=0)
@click.option("--init", default=None, help="Model id in weights/ to start from when RUN_DIR has no checkpoint.")
def train(train_dir, val_dir, run_dir, **kw) -> None:
    """Train (or resume) the variable-rate network on a folder of photos.

    Resumes from RUN_DIR/last.pt when it exists. Ctrl-C saves a checkpoint. Multi-GPU:
    torchrun --nproc-per-node K -m codec.cli train ...
    """
    from .train import TrainConfig
    from .train import train as run_training

    cfg = TrainConfig(train_dir=train_dir, val_dir=val_dir, **kw)
    if run_dir:
        cfg.run_dir = run_dir
    try:
        state = run_training(cfg)
    except (AecError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
        sys.exit(EXIT_BAD_INPUT)
    click.echo(f"stopped at step {state['step']}; checkpoint in {cfg.run_dir}/last.pt")


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", "model_id", required=True, help="Model id, e.g. aec-gain-msh-128-192-v1.")
@click.option("--weights-dir", default="weights", show_default=True)
@click.option("--half/--no-half", default=False, help="Store transform weights as fp16.")
@click.option("--train-data", default=None, help="Training data description for the manifest.")
@click.option("--device-used", default=None, help="Where it was trained, for the manifest.")
def export(checkpoint, model_id, weights_dir, half, train_data, device_used) -> None:
    """Write a checkpoint's weights (entropy tables built now) and its manifest entry."""
    from .export import checkpoint_meta, model_from_checkpoint
    from .export import export as do_export

    model, state = model_from_checkpoint(checkpoint)
    entry = do_export(model, model_id, Path(weights_dir), half, checkpoint_meta(state, train_data, device_used))
    click.echo(f"wrote {Path(weights_dir) / entry['file']} (sha256 {entry['sha256'][:16]}...)")


if __name__ == "__main__":
    main()
