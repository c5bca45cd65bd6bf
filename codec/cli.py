"""``aecodec`` command line: a thin shell over ``codec.api`` (click).

Exit codes: 0 success; 2 bad input, bad file, bad usage or a failed write; 130 Ctrl-C; 1 anything else.
Errors are one line on stderr, never a traceback. With several inputs each failure is reported and the rest still run.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import NoReturn, TypeVar

import click

from _aecodec_start import EXIT_INTERRUPTED

from . import __version__, files
from .bitstream import MAX_PIXELS, NO_LIMIT
from .errors import AecError
from .lean import import_compressai_lean
from .manifest import installed_levels
from .quality import (
    DEFAULT_QUALITY,
    MAX_EFFORT,
    Q_MAX,
    Q_MIN,
    check_quality,
    effort_iterations,
)

EXIT_BAD_INPUT, EXIT_OTHER = 2, 1
T = TypeVar("T")
P = TypeVar("P")
BATCH_HELP = (
    "Images per network pass (same-size images share it); 0 = auto: 16 on CUDA, 1 on CPU, "
    "where batching measured no faster."
)


def _one_line(msg: str) -> str:
    """Messages can quote library errors or file names; the CLI promises one line per failure."""
    return " ".join(str(msg).split())


class _Console:
    """Where a command talks (stderr): errors always, warnings unless ``--quiet``, a summary line per file
    with ``-v``, and a progress bar only when stderr is a terminal (never ``\\r`` bars in a log file).
    Every message is a line of its own, printed above the bar when there is one."""

    current: _Console | None = None  # the running command's, for library warnings

    def __init__(self, verbose: bool = False, quiet: bool = False) -> None:
        self.verbose, self.quiet, self.bar = verbose, quiet, None
        _Console.current = self

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            click.echo(text, err=True)

    def fail(self, msg: str) -> None:
        self.line(f"aecodec: {_one_line(msg)}")

    def warn(self, msg: str) -> None:
        if not self.quiet:
            self.line(f"aecodec: warning: {_one_line(msg)}")

    def say(self, msg: str) -> None:
        if self.verbose:
            self.line(_one_line(msg))

    def start_bar(self, total: int, unit: str) -> None:
        if total > 1 and not self.quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _fail(msg: str) -> None:
    (_Console.current or _Console()).fail(msg)


def _usage_error(e: Exception) -> NoReturn:
    """Bad usage or a setup failure before any input was touched: one line, exit 2."""
    _fail(str(e))
    sys.exit(EXIT_BAD_INPUT)


def _print(text: str, nl: bool = True) -> None:
    """A command's text result on stdout: a closed stdout, a reader that left (``| head``) or a full disk
    is one line and exit 2, not a silent loss or a traceback."""
    try:
        files.write_stream(files.STDIO, (text + ("\n" if nl else "")).encode())
    except OSError as e:
        _usage_error(AecError(f"stdout: cannot write ({e.strerror or e})"))


def _labelled(src: str, msg: str) -> str:
    """Prefix a failure with its input, so a batch run says which file it was about."""
    name = files.label(src)
    return msg if msg.startswith(f"{name}:") else f"{name}: {msg}"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings (e.g. Pillow on odd EXIF) as one ``aecodec: warning:`` line, not a source dump."""
    (_Console.current or _Console()).warn(str(message))


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

    def __init__(self, console: _Console) -> None:
        self.console, self.status, self.failed = console, 0, 0

    def attempt(self, srcs: list[str], step: Callable[[], T]) -> T | None:
        try:
            return step()
        except AecError as e:
            for src in srcs:
                self.console.fail(_labelled(src, str(e)))
            self.status = EXIT_BAD_INPUT
        except KeyboardInterrupt:
            self.console.fail("interrupted")
            sys.exit(EXIT_INTERRUPTED)
        except Exception as e:  # noqa: BLE001 - the CLI promises one line, never a traceback
            for src in srcs:
                self.console.fail(f"{src}: internal error: {type(e).__name__}: {e}")
            self.status = self.status or EXIT_OTHER
        self.failed += len(srcs)
        return None


#: What writing one output returns: its pixel count and the summary line ``-v`` prints.
Done = tuple[int, str]


def _run_many(
    inputs: tuple[str, ...],
    dests: list[str],
    load: Callable[[str], T],
    prepare: Callable[[str, str, Callable[[], T]], P],
    code: Callable[[list[P]], list[Callable[[], Done]]],
    console: _Console,
    batch: int = 1,
) -> None:
    """Code the inputs ``batch`` at a time, their data loaded ahead by ``load``; exit with the worst status.

    Per input, ``prepare`` checks its output and gets its data; ``code`` runs a batch of prepared
    inputs through the codec and returns, per input, a step that writes its output. A failure is
    reported against the inputs it concerns, the rest still run, and the count of failures ends the run.
    """
    outcomes = _Outcomes(console)
    console.start_bar(len(inputs), "img")
    t0, pixels = time.perf_counter(), 0
    for group in _chunks(zip(_prefetched(inputs, load, depth=max(2, batch)), dests, strict=True), batch):
        started = time.perf_counter()
        ready = []
        for (src, get), dest in group:
            item = outcomes.attempt([src], lambda src=src, dest=dest, get=get: prepare(src, dest, get))
            if item is not None:
                ready.append((src, item))
        srcs = [src for src, _ in ready]
        writes = outcomes.attempt(srcs, partial(code, [item for _, item in ready])) if ready else None
        for src, write in zip(srcs, writes or [], strict=False):
            done = outcomes.attempt([src], write)
            if done is not None:
                pixels += done[0]
                console.say(f"{done[1]}, {time.perf_counter() - started:.2f} s")
        if console.bar is not None:
            console.bar.update(len(group))
            console.bar.set_postfix_str(f"{pixels / 1e6 / max(time.perf_counter() - t0, 1e-9):.2f} MP/s")
    console.close_bar()
    if len(inputs) > 1 and outcomes.failed:
        console.fail(f"{outcomes.failed} of {len(inputs)} inputs failed (see above)")
    sys.exit(outcomes.status)


def _batch_size(batch: int, device: str) -> int:
    """``--batch 0`` (auto): a GPU gets ``codec.batch.BATCH`` images per network pass, a CPU one."""
    if batch < 0:
        raise AecError(f"--batch must be 0 (auto) or positive, got {batch}")
    if batch:
        return batch
    from .batch import BATCH
    from .devices import resolve_device

    return BATCH if resolve_device(device).startswith("cuda") else 1


def _rate_choice(
    quality: float | None, target_bpp: float | None, max_bytes: int | None, flags: tuple[str, str]
) -> float:
    """The quality to code at, after checking the rate options: at most one of -q and the two targets
    (named ``flags``; they choose the quality), each target positive and finite."""
    bpp_flag, bytes_flag = flags
    given = [f for f, v in (("-q", quality), (bpp_flag, target_bpp), (bytes_flag, max_bytes)) if v is not None]
    if len(given) > 1:
        raise AecError(f"give one of -q, {bpp_flag} or {bytes_flag}, not {' and '.join(given)}")
    if target_bpp is not None and not 0 < target_bpp < float("inf"):
        raise AecError(f"{bpp_flag} must be positive and finite, got {target_bpp:g}")
    if max_bytes is not None and max_bytes < 1:
        raise AecError(f"{bytes_flag} must be positive, got {max_bytes}")
    return check_quality(DEFAULT_QUALITY if quality is None else quality)


def _check_dest(src: str, dest: str, force: bool) -> None:
    _check_not_input(src, dest)
    files.check_output(dest, force)


def _check_not_input(src: str, dest: str) -> None:
    if src != files.STDIO and dest != files.STDIO and Path(src).resolve() == Path(dest).resolve():
        raise AecError(f"{src}: output would overwrite the input")


def _arrow(src: str, dest: str) -> str:
    return f"{files.label(src)} -> {'stdout' if dest == files.STDIO else dest}"


def _shared_options(output_help: str) -> Callable:
    """The options encode and decode share, in one place."""
    options = [
        click.option("-o", "--output", help=output_help),
        click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda."),
        click.option(
            "-f", "--force", is_flag=True, help="Overwrite existing outputs; write binary data to a terminal too."
        ),
        click.option("--batch", type=int, default=0, show_default=True, help=BATCH_HELP),
        click.option("--threads", type=click.IntRange(min=1), help="CPU threads for the network [default: torch's]."),
        click.option(
            "-v", "--verbose", is_flag=True, help="Print a summary line per file (sizes, bpp, quality, time)."
        ),
        click.option("--quiet", is_flag=True, help="No progress bar and no warnings; errors are still printed."),
    ]

    def decorate(f: Callable) -> Callable:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _start(verbose: bool, quiet: bool, device: str, batch: int, threads: int | None) -> tuple[_Console, int]:
    """A command's console and batch size; the network stack is imported here, after the usage checks."""
    if verbose and quiet:
        _usage_error(AecError("give either -v or --quiet, not both"))
    console = _Console(verbose, quiet)
    import_compressai_lean()
    try:
        batch = _batch_size(batch, device)
    except AecError as e:
        _usage_error(e)
    if threads:
        import torch

        torch.set_num_threads(threads)
    return console, batch


class _Group(click.Group):
    """Ctrl-C anywhere in a command (loading torch or the weights included) is one line and exit 130,
    not click's "Aborted!" with exit 1 nor a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            _fail("interrupted")
            sys.exit(EXIT_INTERRUPTED)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aecodec")
def main() -> None:
    """aecodec: a learned image codec.

    \b
      aecodec encode photo.png                  writes photo.aec
      aecodec decode photo.aec -o decoded.png   writes decoded.png
      aecodec info photo.aec
      aecodec models                            the models this installation has
      aecodec compare photo.png -o page.html    side by side with JPEG, WebP, AVIF at equal bytes
      aecodec bench photos/ -o results/         rate-distortion curves and BD-rates on your images
    """
    warnings.showwarning = _show_warning


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-q",
    "--quality",
    type=float,
    help=f"{Q_MIN:g} (fewest bits, ~0.1 bpp) to the model's top level (best quality; 'aecodec models' lists "
    f"each model's range, {Q_MAX:g} at most); fractions interpolate. [default: {DEFAULT_QUALITY:g}]",
)
@click.option(
    "--target-bpp",
    type=float,
    help="Highest quality whose file is at most this many bits per pixel; exit 2 if even the lowest is above.",
)
@click.option("--max-bytes", type=int, help="Highest quality whose file fits in this many bytes; exit 2 if none does.")
@click.option("--model", "model_id", help="Model id (see 'aecodec models'; default: the installation's default).")
@click.option(
    "--tile",
    type=int,
    default=1024,
    show_default=True,
    help="Tile side in pixels (a multiple of the model's stride, 64): larger images are coded in tiles.",
)
@click.option(
    "--effort",
    type=int,
    default=0,
    show_default=True,
    help=f"Encoder search, 0 to {MAX_EFFORT}: 0 is one pass; higher optimizes each image's latents longer "
    "(slower, smaller files, same decoder; -v prints the gain).",
)
@_shared_options(
    "Output file, folder (existing, or ending in /; required form for several inputs), or - for stdout. "
    "Default: beside each input, as NAME.aec."
)
def encode(
    inputs,
    output,
    quality,
    target_bpp,
    max_bytes,
    model_id,
    tile,
    effort,
    device,
    force,
    batch,
    threads,
    verbose,
    quiet,
) -> None:
    """Compress images (PNG, JPEG, WebP, TIFF, ...) to .aec. Use - to read stdin."""
    searching = target_bpp is not None or max_bytes is not None
    try:
        quality = _rate_choice(quality, target_bpp, max_bytes, ("--target-bpp", "--max-bytes"))
        effort_iterations(effort)
        dests = files.output_paths(inputs, output, ".aec", force)
        model_id, levels = installed_levels(model_id)  # torch-free: a bad -q fails before torch loads
        quality = check_quality(DEFAULT_QUALITY if quality is None else quality, levels, model_id)
    except (AecError, ValueError) as e:
        _usage_error(e)
    console, batch = _start(verbose, quiet, device, batch, threads)
    _effort_messages(console)
    from . import bitstream as bs
    from .api import checked_tile
    from .api import encode as encode_image
    from .batch import encode_images
    from .weights import load_codec

    try:
        codec = load_codec(model_id, device)
        checked_tile(tile, codec)
    except (AecError, ValueError) as e:
        _usage_error(e)

    def load(src: str):
        return files.open_image(files.read_bytes(src), files.label(src))

    def prepare(src: str, dest: str, get):
        _check_dest(src, dest, force)
        return src, dest, get()

    def writer(src: str, dest: str, image, make: Callable[[], bytes]) -> Callable[[], Done]:
        def write() -> Done:
            data = make()
            pixels = image.width * image.height
            bpp = len(data) * 8 / pixels
            if target_bpp is not None and bpp > target_bpp:
                raise AecError(
                    f"--target-bpp {target_bpp:g} not reached: the lowest quality gives {bpp:.4f} bpp "
                    f"({len(data)} bytes); nothing written"
                )
            files.write_output(dest, data, force)
            q = bs.unpack(data, max_pixels=NO_LIMIT).quality
            summary = (
                f"{_arrow(src, dest)}: {image.width}x{image.height}, {len(data)} bytes, {bpp:.4f} bpp, quality {q:g}"
            )
            return pixels, summary

        return write

    def code(items: list) -> list[Callable[[], Done]]:
        images = [image for _, _, image in items]
        if searching:  # a search per image, inside its own step so a miss fails that input alone
            search = partial(
                encode_image, target_bpp=target_bpp, max_bytes=max_bytes, codec=codec, tile=tile, effort=effort
            )
            return [writer(src, dest, image, partial(search, image)) for src, dest, image in items]
        datas = encode_images(images, quality, codec, batch, tile=tile, effort=effort)
        return [
            writer(src, dest, image, partial(bytes, data))
            for (src, dest, image), data in zip(items, datas, strict=True)
        ]

    _run_many(inputs, dests, load, prepare, code, console, batch)


class _SayHandler(logging.Handler):
    """Log records as the console's ``-v`` lines."""

    def __init__(self, console: _Console) -> None:
        super().__init__(logging.INFO)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        self.console.say(record.getMessage())


def _effort_messages(console: _Console) -> None:
    """The encoder effort's messages (``codec.effort.log``) on the console: with ``-v`` each gain is a line
    before its files' summaries; ``--quiet`` silences the logger, which also hides the effort's progress bar."""
    logger = logging.getLogger("codec.effort")
    logger.setLevel(logging.ERROR if console.quiet else logging.INFO)
    logger.handlers = [_SayHandler(console)]
    logger.propagate = False


FORMAT_CHOICES = sorted({suffix[1:] for suffix in files.OUTPUT_FORMATS})


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMAT_CHOICES, case_sensitive=False),
    help="Output format, whatever the name says; for -o - (stdout, PNG otherwise) and default names.",
)
@click.option(
    "--out-quality",
    type=click.IntRange(0, 100),
    default=files.DEFAULT_OUT_QUALITY,
    show_default=True,
    help="Quality of lossy outputs (.jpg, .webp), on Pillow's 0-100 scale.",
)
@click.option("--drop-alpha", is_flag=True, help="Allow writing an image with alpha to a format without it.")
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=MAX_PIXELS,
    show_default=True,
    help="Refuse larger images (width x height, padded to the model's stride) before allocating anything for them.",
)
@_shared_options(
    "Output file (.png .jpg .webp .tif .ppm .bmp), folder (existing, or ending in /; required form for several "
    "inputs), or - for stdout. Default: beside each input, as NAME.png."
)
def decode(
    inputs, output, fmt, out_quality, drop_alpha, max_pixels, device, force, batch, threads, verbose, quiet
) -> None:
    """Decompress .aec files to PNG (or the format the output name or --format asks for). Use - to read stdin."""
    suffix = f".{fmt.lower()}" if fmt else None
    try:
        dests = files.output_paths(inputs, output, suffix or ".png", force)
        formats = dict(zip(dests, (files.output_format(dest, suffix) for dest in dests), strict=True))
    except AecError as e:
        _usage_error(e)
    console, batch = _start(verbose, quiet, device, batch, threads)
    from . import bitstream as bs
    from .api import check_fits_model
    from .batch import decode_images
    from .weights import load_codec_for

    def prepare(src: str, dest: str, get):
        _check_dest(src, dest, force)
        data = get()
        header = bs.unpack(data, max_pixels)
        if header.pixels is None:  # a missing model fails this file alone; a lossless one needs none
            check_fits_model(header, load_codec_for(header.model_id, header.weights_hash, device), max_pixels)
        return src, dest, data, header.quality

    def writer(src: str, dest: str, image, quality: float) -> Callable[[], Done]:
        def write() -> Done:
            fmt = formats[dest]
            files.write_output(dest, files.image_bytes(image, dest, fmt, out_quality, drop_alpha), force)
            lossy = f" at {out_quality}" if fmt in files.LOSSY_FORMATS else ""
            summary = (
                f"{_arrow(src, dest)}: {image.width}x{image.height} {image.mode}, quality {quality:g}, {fmt}{lossy}"
            )
            return image.width * image.height, summary

        return write

    def code(items: list) -> list[Callable[[], Done]]:
        images = decode_images([data for _, _, data, _ in items], None, batch, max_pixels, device)
        return [writer(src, dest, image, q) for (src, dest, _, q), image in zip(items, images, strict=True)]

    _run_many(inputs, dests, files.read_bytes, prepare, code, console, batch)


def _describe(file: str, size: int, f) -> dict:
    """What ``info`` reports on one file of ``size`` bytes, as plain values (the text and JSON forms both
    come from this)."""
    from .manifest import model_kind

    return {
        "file": file,
        "format version": f.version,
        "size": f"{f.width}x{f.height}",
        "channels": f.mode,
        "quality": f.quality,
        "bytes": size,
        "bpp": round(size * 8 / (f.width * f.height), 4),
        "model": f.model_id,
        "model kind": "none (pixels stored as an image)"
        if f.pixels is not None
        else model_kind(f.model_id) or "unknown (model not in this installation's weights)",
        "weights": f.weights_hash.hex(),
        "tiles": f"{f.tile_count()} of {f.tile} px" if f.tile else "1",
        "streams": {
            "per tile": len(f.streams[0]) if f.streams else 0,
            "coded": sum(len(s) for tile in f.streams for s in tile),
            "lossless": len(f.pixels) if f.pixels is not None else 0,
            "alpha": len(f.alpha) if f.alpha else 0,
        },
        "icc profile": len(f.icc) if f.icc else 0,
        "exif": len(f.exif) if f.exif else 0,
    }


def _text(key: str, value) -> str:
    if key == "streams":
        alpha = f", alpha {value['alpha']} B" if value["alpha"] else ""
        if value["lossless"]:
            return f"none: pixels stored losslessly, {value['lossless']} B{alpha}"
        return f"{value['per tile']} per tile, {value['coded']} B{alpha}"
    if key in ("icc profile", "exif"):
        return f"{value} B" if value else "none"
    if key == "quality":
        return f"{value:g}"
    return str(value)


@main.command()
@click.argument("paths", metavar="FILE...", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="A JSON list, one object per file.")
def info(paths, as_json) -> None:
    """Describe .aec files: size, channels, quality, bpp, model, format version. Allocates nothing the size
    of a file: files are mapped, not read."""
    from . import bitstream as bs

    records, status = [], 0
    for path in paths:
        try:
            data = files.map_or_read(path)
            records.append(_describe(path, len(data), bs.unpack(data, max_pixels=NO_LIMIT, views=True)))
        except AecError as e:
            _fail(_labelled(path, str(e)))
            status = EXIT_BAD_INPUT
    if as_json:
        _print(json.dumps(records, indent=2))
    else:
        _print("\n\n".join("\n".join(f"{k + ':':16}{_text(k, v)}" for k, v in r.items()) for r in records))
    sys.exit(status)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON list, one object per model.")
def models(as_json) -> None:
    """List the models this installation has: the ids --model takes, each with its quality range; the
    default is marked."""
    from .manifest import read_manifest, weights_dir

    try:
        manifest = read_manifest()
    except AecError as e:
        _usage_error(e)
    folder = weights_dir()
    rows = []
    for model_id, entry in sorted(manifest.get("models", {}).items()):
        path = folder / str(entry.get("file", ""))
        rows.append(
            {
                "id": model_id,
                "default": model_id == manifest.get("default"),
                "file": str(path),
                "present": path.is_file(),
                "arch": entry.get("arch"),
                "qualities": _quality_range(entry),
            }
        )
    if as_json:
        _print(json.dumps(rows, indent=2))
        return
    for row in rows:
        notes = [n for n, on in (("default", row["default"]), ("weights file missing", not row["present"])) if on]
        span = f"q {row['qualities'][0]:g}-{row['qualities'][1]:g}" if row["qualities"] else "q unknown (bad arch)"
        _print(f"{row['id']}  {span}" + (f"  ({', '.join(notes)})" if notes else ""))


def _quality_range(entry: dict) -> list[float] | None:
    """[lowest, highest] quality of a manifest entry's model; None when its arch is unusable."""
    from .manifest import levels_of

    try:
        return [Q_MIN, float(levels_of(entry))]
    except AecError:
        return None


#: The classical codecs ``compare`` and ``bench`` measure unless ``--codecs`` says otherwise.
DEFAULT_VERSUS = "jpeg,webp,avif"
#: aecodec's qualities in ``bench`` (the Pillow sweep is ``codec.bench.coders.BENCH_QUALITIES``).
DEFAULT_BENCH_QUALITIES = "2,4,6,8"


def _versus(codecs: str) -> tuple[tuple[str, ...], list[str]]:
    """The classical codecs asked for that this Pillow can run, and a note per one it cannot."""
    from .bench import parse_names
    from .bench.coders import PILLOW_CODECS, unavailable_reason

    names = parse_names(codecs, [pc.name for pc in PILLOW_CODECS])
    reasons = {pc.name: unavailable_reason(pc) for pc in PILLOW_CODECS if pc.name in names}
    return tuple(n for n in names if not reasons[n]), [r for r in reasons.values() if r]


@main.command()
@click.argument("image")
@click.option("-q", "--quality", type=float, help=f"aecodec's quality [default: {DEFAULT_QUALITY:g}].")
@click.option("--bpp", type=float, help="aecodec at the highest quality at or under this many bits per pixel.")
@click.option("--bytes", "max_bytes", type=int, help="aecodec at the highest quality that fits in this many bytes.")
@click.option("--codecs", default=DEFAULT_VERSUS, show_default=True, help="Classical codecs to compare (comma list).")
@click.option("-o", "--output", help="The HTML page [default: beside the image, as NAME.compare.html].")
@click.option("--model", "model_id", help="Model id (see 'aecodec models').")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing page.")
def compare(image, quality, bpp, max_bytes, codecs, output, model_id, device, force) -> None:
    """Code IMAGE with aecodec and with each classical codec at the same file size, and write one self-contained
    HTML page (no network): a slider between any two results, zoom to pixels, bytes, bpp, PSNR and MS-SSIM.

    Each classical codec gets the quality whose file is the largest at or under aecodec's bytes."""
    try:
        quality = _rate_choice(quality, bpp, max_bytes, ("--bpp", "--bytes"))
        dest = output or str(Path(image).with_suffix(".compare.html"))
        if dest == files.STDIO:
            raise AecError("-o - is not supported: the page goes to a file (stdout gets the table)")
        _check_dest(image, dest, force)
        names, notes = _versus(codecs)
        model_id, levels = installed_levels(model_id)
        quality = check_quality(quality, levels, model_id)
    except (AecError, ValueError) as e:
        _usage_error(e)
    console = _Console()
    for note in notes:
        console.warn(note)
    import_compressai_lean()
    from . import api
    from . import bitstream as bs
    from .bench import compare as cmp
    from .bench import page
    from .bench.report import json_text
    from .weights import load_codec

    try:
        data = files.read_bytes(image)
        original = api.coded_image(files.open_image(data, files.label(image)))
        codec = load_codec(model_id, device)
        aec = api.encode(original, quality, target_bpp=bpp, max_bytes=max_bytes, codec=codec)
        aec_quality = bs.unpack(aec, max_pixels=NO_LIMIT).quality
        variants = cmp.compare(original, len(data), aec, api.decode(aec, codec=codec), names, aec_quality)
        w, h = original.size
        html = page.build(f"{Path(image).name} ({w}x{h} {original.mode})", variants, w, h)
        files.write_output(dest, html.encode(), force)
    except AecError as e:
        _fail(_labelled(image, str(e)))
        sys.exit(EXIT_BAD_INPUT)
    except Exception as e:  # noqa: BLE001 - the CLI promises one line, never a traceback
        _fail(f"{image}: internal error: {type(e).__name__}: {e}")
        sys.exit(EXIT_OTHER)
    _print(json_text({"page": dest, "budget_bytes": len(aec), "rows": [v.row(w, h) for v in variants]}), nl=False)


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--codecs", default=DEFAULT_VERSUS, show_default=True, help="Classical codecs to measure (comma list).")
@click.option("-q", "--qualities", default=DEFAULT_BENCH_QUALITIES, show_default=True, help="aecodec's qualities.")
@click.option("--pillow-qualities", help="The classical codecs' quality sweep [default: 5,10,20,...,90,95].")
@click.option("-o", "--output", help="Output folder [default: ./bench-FOLDER/].")
@click.option("--model", "model_id", help="Model id (see 'aecodec models').")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("-f", "--force", is_flag=True, help="Overwrite the report files of an earlier run.")
@click.option("--quiet", is_flag=True, help="No progress bar and no warnings; errors are still printed.")
def bench(folder, codecs, qualities, pillow_qualities, output, model_id, device, force, quiet) -> None:
    """Rate-distortion benchmark of aecodec against classical codecs on a folder of images: per-image and mean
    points (bpp of the whole files, PSNR, MS-SSIM), BD-rate tables, rd.json, CSV and a PNG plot."""
    from .bench import parse_floats
    from .bench.coders import BENCH_QUALITIES

    console = _Console(quiet=quiet)
    try:
        model_id, levels = installed_levels(model_id)
        aec_qualities = [check_quality(q, levels, model_id) for q in parse_floats(qualities, "-q")]
        sweep = parse_floats(pillow_qualities, "--pillow-qualities") if pillow_qualities else list(BENCH_QUALITIES)
        names, notes = _versus(codecs)
        from .data import image_files

        try:
            paths = image_files(folder)
        except FileNotFoundError as e:
            raise AecError(str(e)) from None
        out = Path(output or f"bench-{Path(folder).resolve().name}")
        from .bench.rd import REPORT_FILES

        for name in REPORT_FILES.values():
            if (out / name).resolve() in {p.resolve() for p in paths}:
                raise AecError(f"{out / name}: output would overwrite an input")
            files.check_output(str(out / name), force)
    except (AecError, ValueError) as e:
        _usage_error(e)
    for note in notes:
        console.warn(note)
    import_compressai_lean()
    from tqdm import tqdm

    from .bench import report
    from .bench.rd import build_coders, measure_images, report_files

    try:
        todo, descriptions, more = build_coders(
            aec_qualities, sweep, device, model_id=model_id, only=("aecodec", *names)
        )
        notes += more
        bar = tqdm(paths, desc="bench", unit="img", file=sys.stderr, disable=True if quiet else None)
        records = measure_images(bar, todo, notes)
        curves = report.aggregate(records)
        content = report_files(out.name, [p.name for p in paths], records, curves, descriptions, notes)
        for name, data in content.items():
            files.write_output(str(out / name), data, force)
    except AecError as e:
        _fail(str(e))
        sys.exit(EXIT_BAD_INPUT)
    except Exception as e:  # noqa: BLE001 - the CLI promises one line, never a traceback
        _fail(f"internal error: {type(e).__name__}: {e}")
        sys.exit(EXIT_OTHER)
    console.line(f"wrote {', '.join(str(out / n) for n in content)}")
    _print(content[REPORT_FILES["bdrate"]].decode(), nl=False)


def train_options(command: Callable) -> Callable:
    """The ``train`` command's options, one per field of ``TrainConfig`` (its defaults and help: one place)."""
    import dataclasses

    from .trainconfig import cli_fields

    for f in reversed(cli_fields()):
        meta = f.metadata
        name = meta.get("flag", "--" + f.name.replace("_", "-"))
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        kw: dict = {"help": meta["help"], "show_default": default not in (None, False, {})}
        if meta.get("switch"):
            decl = [f"{name}/--no-{name[2:]}", f.name]
            kw["default"] = default
        elif meta.get("multiple"):
            decl = [name, f.name]
            kw.update(multiple=True, metavar="KEY=VALUE", show_default=False)
        else:
            decl = [name, f.name]
            kw["default"] = default
            if "choices" in meta:
                kw["type"] = click.Choice(meta["choices"])
            elif "range" in meta:
                ranged = click.IntRange if isinstance(default, int) else click.FloatRange
                kw["type"] = ranged(*meta["range"], max_open=meta.get("open", False))
            else:
                kw["type"] = meta.get("type", str if default is None else type(default))
        command = click.option(*decl, **kw)(command)
    return command


@main.command()
@click.argument("train_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--val", "val_dir", type=click.Path(exists=True, file_okay=False), help="Validation folder.")
@click.option("--run-dir", default=None, help="Checkpoints and logs (default ~/.cache/aecodec/runs/default).")
@train_options
def train(train_dir, val_dir, run_dir, **kw) -> None:
    """Train (or resume) the variable-rate network on a folder of photos.

    Resumes from RUN_DIR/last.pt when it exists. Ctrl-C saves a checkpoint. Multi-GPU:
    torchrun --nproc-per-node K -m codec.cli train ...
    """
    from .trainconfig import TrainConfig, parse_arch

    try:
        cfg = TrainConfig(train_dir=train_dir, val_dir=val_dir, **{**kw, "arch": parse_arch(kw["arch"])})
        if run_dir:
            cfg.run_dir = run_dir
        from .train import train as run_training

        state = run_training(cfg)
    except (AecError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
        sys.exit(EXIT_BAD_INPUT)
    _print(f"stopped at step {state['step']}; checkpoint in {cfg.run_dir}/last.pt")


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", "model_id", required=True, help="Model id, e.g. aec-gain-msh-128-192-v1.")
@click.option("--weights-dir", default="weights", show_default=True)
@click.option("--half/--no-half", default=False, help="Store transform weights as fp16.")
@click.option("--train-data", default=None, help="Training data description for the manifest.")
@click.option("--device-used", default=None, help="Where it was trained, for the manifest.")
@click.option("--raw", is_flag=True, help="Export the raw weights of a run trained with --ema, not their average.")
def export(checkpoint, model_id, weights_dir, half, train_data, device_used, raw) -> None:
    """Write a checkpoint's weights (entropy tables built now) and its manifest entry."""
    from .export import checkpoint_meta, model_from_checkpoint
    from .export import export as do_export

    model, state = model_from_checkpoint(checkpoint, raw)
    entry = do_export(model, model_id, Path(weights_dir), half, checkpoint_meta(state, train_data, device_used))
    _print(f"wrote {Path(weights_dir) / entry['file']} (sha256 {entry['sha256'][:16]}...)")


if __name__ == "__main__":
    main()
