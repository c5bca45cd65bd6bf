"""``aecodec`` command line: a thin shell over ``codec.api`` (click).

Exit codes: 0 success; 2 bad input, bad file, bad usage or a failed write; 130 Ctrl-C; 1 anything else.
Errors are one line on stderr, never a traceback. With several inputs each failure is reported and the rest still run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__
from .coding import jobs
from .coding.jobs import labelled as _labelled
from .coding.jobs import one_line as _one_line
from .coding.options import check_targets, own_fields
from .core import quality as Q
from .core.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OTHER, AecError
from .core.lean import import_compressai_lean
from .core.quality import (
    DEFAULT_QUALITY,
    Q_MIN,
    check_quality,
)
from .format import files
from .format.bitstream import NO_LIMIT
from .training.config import RUNS
from .weights.manifest import check_installed_quality, installed_qualities


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
        from .core.progress import shown

        if total > 1 and not self.quiet and shown():
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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings (e.g. Pillow on odd EXIF) as one ``aecodec: warning:`` line, not a source dump."""
    (_Console.current or _Console()).warn(str(message))


def _follow(outcomes: Iterable[jobs.Outcome], total: int, console: _Console, bar: bool = True) -> tuple[int, int]:
    """Report each input's outcome as it comes (a failure always, a summary with ``-v``), with a progress bar
    (images, MP/s) on a terminal; (the worst exit status, the count of failures)."""
    import time

    if bar:
        console.start_bar(total, "img")
    t0, pixels, status, failed = time.perf_counter(), 0, 0, 0
    for outcome in outcomes:
        if outcome.error:
            console.fail(outcome.error)
            status, failed = max(status, outcome.status), failed + 1
        else:
            pixels += outcome.pixels
            console.say(outcome.summary if outcome.skipped else f"{outcome.summary}, {outcome.seconds:.2f} s")
        if console.bar is not None:
            console.bar.update(1)
            console.bar.set_postfix_str(f"{pixels / 1e6 / max(time.perf_counter() - t0, 1e-9):.2f} MP/s")
    console.close_bar()
    return status, failed


def _finish(status: int, failed: int, total: int, console: _Console, where: str = "see above") -> NoReturn:
    """End a run of several inputs: the last line counts the failures, the exit status is the worst one."""
    if total > 1 and failed:
        console.fail(f"{failed} of {total} inputs failed ({where})")
    sys.exit(status)


def _count_failures(failed: int, total: int) -> None:
    """The last line of a run over several inputs of which some failed (each said why above)."""
    if total > 1 and failed:
        _fail(f"{failed} of {total} inputs failed (see above)")


def _one_rate(quality: float | None, target_bpp: float | None, max_bytes: int | None, flags: tuple[str, str]) -> None:
    """At most one of -q and the two targets (named ``flags``: each chooses the quality), the targets positive;
    the quality is checked once, with the model (``EncodeOptions.checked``)."""
    bpp_flag, bytes_flag = flags
    given = [f for f, v in (("-q", quality), (bpp_flag, target_bpp), (bytes_flag, max_bytes)) if v is not None]
    if len(given) > 1:
        raise AecError(f"give one of -q, {bpp_flag} or {bytes_flag}, not {' and '.join(given)}")
    check_targets(target_bpp, max_bytes, flags)


def _check_aec_name(dest: str) -> None:
    """An encode output named like an image (``-o x.png``) would be .aec data under an image's name, which
    every viewer then fails on: refused (the decoder's outputs are where images come from)."""
    from PIL import Image

    suffix = Path(dest).suffix.lower()
    if dest == files.STDIO or files.is_stream(dest) or suffix == ".aec":
        return
    fmt = Image.registered_extensions().get(suffix)
    if fmt is not None:
        raise AecError(
            f"{dest}: encode writes .aec data, not {fmt}; name the output .aec (aecodec decode writes images)"
        )


def _named(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``-o ""`` names nothing: a usage error, not the current folder nor a write to ``.``."""
    if value == "":
        raise click.BadParameter("an empty name is not an output (give a file, a folder/ or -)")
    return value


def _shared_options(output_help: str) -> Callable:
    """The options encode and decode share, in one place: those of ``jobs.Options`` (generated from its fields)
    and the command's own (the output, what the console shows, ``--ray``)."""
    options = [
        click.option("-o", "--output", callback=_named, help=output_help),
        options_from(own_fields(jobs.Options)),
        click.option(
            "-v", "--verbose", is_flag=True, help="Print a summary line per file (sizes, bpp, quality, time)."
        ),
        click.option("--quiet", is_flag=True, help="No progress bar and no warnings; errors are still printed."),
        click.option(
            "--ray",
            "on_ray",
            is_flag=True,
            help="Run as a Ray Data job on the cluster of RAY_ADDRESS or --ray-address (else a local one); "
            "-o names a folder, inputs may be folders and globs, OUTDIR/aecodec-results.csv lists the results. "
            "Needs Ray (aecodec's [ray] extra; without it --ray says how to install it).",
        ),
        click.option("--ray-address", help="With --ray: the cluster to join [default: RAY_ADDRESS, else a new one]."),
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            help="With --ray: coding actors [default: one per GPU, else the cluster's CPUs / --threads].",
        ),
    ]

    def decorate(f: Callable) -> Callable:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def options_from(fields: list[dataclasses.Field]) -> Callable:
    """A decorator adding one option per dataclass field, in the fields' order (``train``'s from ``TrainConfig``,
    encode's and decode's from the coding jobs' options): flag, type, default and help as the field declares
    them (its ``metadata``: ``codec.training.config``, ``codec.coding.options``), so each is written once."""

    def decorate(command: Callable) -> Callable:
        for f in reversed(fields):
            command = _field_option(f)(command)
        return command

    return decorate


def _field_option(f: dataclasses.Field) -> Callable:
    """The click option of one field: a bool is a flag (``switch``: a ``--x/--no-x`` pair), ``multiple`` a
    repeated ``KEY=VALUE``, anything else a value of the field's type (``_click_type``)."""
    meta = f.metadata
    name = meta.get("flag", "--" + f.name.replace("_", "-"))
    flags = [meta["short"], name] if "short" in meta else [name]
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    kw: dict = {"help": meta["help"], "show_default": default is not None and default is not False and default != {}}
    if meta.get("switch"):
        return click.option(f"{name}/--no-{name[2:]}", f.name, default=default, **kw)
    if isinstance(default, bool):
        return click.option(*flags, f.name, is_flag=True, **kw)
    if meta.get("multiple"):
        return click.option(*flags, f.name, multiple=True, metavar="KEY=VALUE", **{**kw, "show_default": False})
    return click.option(*flags, f.name, default=default, type=_click_type(meta, default), **kw)


def _click_type(meta: Any, default: Any) -> Any:
    """``choices``, a ``range`` of the field's type (or its ``type``), else that type (str for a None default)."""
    if "choices" in meta:
        return click.Choice(meta["choices"], case_sensitive=meta.get("case_sensitive", True))
    kind = meta.get("type", str if default is None else type(default))
    if "range" in meta:
        ranged = click.IntRange if kind is int else click.FloatRange
        return ranged(*meta["range"], max_open=meta.get("open", False))
    return kind


def _ray_args(on_ray: bool, address: str | None, workers: int | None) -> dict | None:
    """``--ray``'s settings, None without it; its options without it are a usage error."""
    if not on_ray:
        if address is not None or workers is not None:
            raise AecError("--ray-address and --workers need --ray")
        return None
    return {"address": address, "workers": workers}


def _console(verbose: bool, quiet: bool) -> _Console:
    if verbose and quiet:
        _usage_error(AecError("give either -v or --quiet, not both"))
    console = _Console(verbose, quiet)
    logging.getLogger("codec.progress").setLevel(logging.ERROR if quiet else logging.NOTSET)  # the tiles' bars
    return console


def _code_here(make: Callable[[], jobs.Coder], inputs: list[str], dests: list[str], console: _Console) -> NoReturn:
    """The local command: build the coder (its model loaded once; a failure there is a usage error, before
    any input is touched) and code every input in this process."""
    try:
        coder = make()
    except (AecError, ValueError) as e:
        _usage_error(e)
    _finish(*_follow(jobs.run(coder, zip(inputs, dests, strict=True)), len(inputs), console), len(inputs), console)


def _first_line(e: Exception) -> str:
    """Ray's exceptions carry remote tracebacks: their first line is the message."""
    return (str(e).strip().splitlines() or [""])[0]


def _code_on_ray(
    inputs: tuple[str, ...], output: str | None, options: jobs.Options, ray: dict, console: _Console
) -> NoReturn:
    """``--ray``: the same options run as a Ray Data job (``codec.coding.distributed``). Failures are reported as they
    come back, then OUTDIR/aecodec-results.csv is written and the last line counts the failures. ``--quiet``
    also keeps Ray's own C++ log lines off stderr."""
    from contextlib import nullcontext

    from .coding import distributed

    try:
        distributed.require_ray()
        pairs = distributed.plan(inputs, output, options)
        distributed.check_folder(output)  # before Ray starts: what would stop the job only at its end
    except AecError as e:
        _usage_error(e)
    with distributed.without_ray_lines() if console.quiet else nullcontext():
        status, failed, table = _ray_job(pairs, output, options, ray, console)
    _finish(status, failed, len(pairs), console, f"see {table}")


def _ray_job(
    pairs: list[tuple[str, str]], output: str, options: jobs.Options, ray: dict, console: _Console
) -> tuple[int, int, str]:
    """Join or start the cluster, run the job, write its table: (exit status, failures, the table's path)."""
    from .coding import distributed

    try:
        distributed.connect(ray["address"], progress=not console.quiet and sys.stderr.isatty())
    except Exception as e:  # noqa: BLE001 - no cluster to run on: a setup failure, before any input is touched
        _usage_error(AecError(f"cannot start or join the Ray cluster: {type(e).__name__}: {_first_line(e)}"))
    kept: list[jobs.Outcome] = []

    def keep(outcomes: Iterator[jobs.Outcome]) -> Iterator[jobs.Outcome]:
        for outcome in outcomes:
            kept.append(outcome)
            yield outcome

    try:
        results = distributed.job(pairs, options, output, ray["workers"])
        status, failed = _follow(keep(distributed.outcomes(results)), len(pairs), console, bar=False)
    except AecError as e:
        _usage_error(e)
    except KeyboardInterrupt:  # Ctrl-C: the table of what finished, then "interrupted" (exit 130)
        _write_table(kept, pairs, output)
        raise
    except Exception as e:  # noqa: BLE001 - a job Ray could not finish: one line, and the table of what it did
        console.fail(f"the Ray job stopped: {type(e).__name__}: {_first_line(e)}")
        status, failed = EXIT_OTHER, len(pairs) - sum(1 for o in kept if not o.error)
    table = _write_table(kept, pairs, output)
    if not console.quiet:
        written, skipped = sum(1 for o in kept if not o.error and not o.skipped), sum(1 for o in kept if o.skipped)
        console.line(f"aecodec: {written} written, {skipped} skipped, {failed} failed; results in {table}")
    return status, failed, table


def _write_table(kept: list[jobs.Outcome], pairs: list[tuple[str, str]], output: str) -> str:
    """OUTDIR/aecodec-results.csv of the outcomes so far; a failed write is one line and exit 2."""
    from .coding import distributed

    try:
        return distributed.write_table(kept, pairs, output)
    except AecError as e:
        _usage_error(e)


#: click's wording for values of the wrong type, in the command's words.
_CLICK_WORDS = {"is not a valid float": "is not a number", "is not a valid integer": "is not a whole number"}


#: ``aecodec`` alone: click's help, shown as it is (on stderr, exit 2), not squeezed into a line.
_HELP_ERROR = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _usage_exit(e: click.UsageError) -> NoReturn:
    if isinstance(e, _HELP_ERROR):
        raise e
    _fail(_usage_line(e))
    sys.exit(e.exit_code)


def _usage_line(e: click.UsageError) -> str:
    """A usage error as one line: the option it is about, then what is wrong with it (click would print four:
    usage, a "Try --help" hint, a blank line and the error)."""
    param = getattr(e, "param", None)
    if isinstance(e, click.BadParameter) and not isinstance(e, click.MissingParameter) and param is not None:
        name = "/".join(param.opts) if isinstance(param, click.Option) else param.human_readable_name
        text = f"{name}: {e.message}"
    else:
        text = e.format_message()
    for click_words, ours in _CLICK_WORDS.items():
        text = text.replace(click_words, ours)
    return text.rstrip(".")


class _Group(click.Group):
    """Usage errors (an unknown command, a bad or missing value, at the group or a command) are one line
    and exit 2; Ctrl-C anywhere in a command (loading torch or the weights included) is one line and exit 130,
    not click's "Aborted!" with exit 1 nor a traceback."""

    def make_context(self, *args, **kwargs) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as e:
            _usage_exit(e)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            _usage_exit(e)
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
      aecodec import compressai mbt2018-mean    CompressAI's trained networks, then --model cai-mbt2018-mean-mse
    """
    warnings.showwarning = _show_warning


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@options_from(own_fields(jobs.EncodeOptions))
@_shared_options(
    "Output file, folder (existing, or ending in /; required form for several inputs), or - for stdout. "
    "Default: beside each input, as NAME.aec."
)
def encode(inputs, output, verbose, quiet, on_ray, ray_address, workers, **fields) -> None:
    """Compress images (PNG, JPEG, WebP, TIFF, ...) to .aec. Use - to read stdin."""
    try:
        _one_rate(fields["quality"], fields["target_bpp"], fields["max_bytes"], ("--target-bpp", "--max-bytes"))
        options = jobs.EncodeOptions(**fields).checked()  # torch-free: a bad -q fails before torch loads
        ray = _ray_args(on_ray, ray_address, workers)
        srcs, dests = ([], []) if ray else jobs.plan_here(inputs, output, options)
        for dest in dests:
            _check_aec_name(dest)
    except (AecError, ValueError) as e:
        _usage_error(e)
    console = _console(verbose, quiet)
    if ray:
        _code_on_ray(inputs, output, options, ray, console)
    _effort_messages(console)
    _code_here(partial(jobs.Encoder, options), srcs, dests, console)


class _SayHandler(logging.Handler):
    """Log records as the console's ``-v`` lines."""

    def __init__(self, console: _Console) -> None:
        super().__init__(logging.INFO)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        self.console.say(record.getMessage())


def _effort_messages(console: _Console) -> None:
    """The encoder effort's messages (``codec.coding.effort.log``) on the console: with ``-v`` each gain is a line
    before its files' summaries; ``--quiet`` silences the logger, which also hides the effort's progress bar."""
    logger = logging.getLogger("codec.effort")
    logger.setLevel(logging.ERROR if console.quiet else logging.INFO)
    logger.handlers = [_SayHandler(console)]
    logger.propagate = False


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@options_from(own_fields(jobs.DecodeOptions))
@_shared_options(
    "Output file (.png .jpg .webp .tif .ppm .bmp), folder (existing, or ending in /; required form for several "
    "inputs), or - for stdout. Default: beside each input, as NAME.png."
)
def decode(inputs, output, verbose, quiet, on_ray, ray_address, workers, **fields) -> None:
    """Decompress .aec files to PNG (or the format the output name or --format asks for). Use - to read stdin."""
    options = jobs.DecodeOptions(**fields)
    try:
        ray = _ray_args(on_ray, ray_address, workers)
        srcs, dests = ([], []) if ray else jobs.plan_here(inputs, output, options)
        for dest in dests:  # an unknown output format fails before any work
            files.output_format(dest, options.suffix)
    except AecError as e:
        _usage_error(e)
    console = _console(verbose, quiet)
    if ray:
        _code_on_ray(inputs, output, options, ray, console)
    _code_here(partial(jobs.Decoder, options), srcs, dests, console)


def _describe(file: str, size: int, f) -> dict:
    """What ``info`` reports on one file of ``size`` bytes, as plain values (the text and JSON forms both
    come from this)."""
    from .weights.manifest import model_kind

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
    from .format import bitstream as bs

    records, status = [], 0
    for path in paths:

        def describe(path: str = path) -> dict:
            data = files.map_or_read(path)
            return _describe(path, len(data), bs.unpack(data, max_pixels=NO_LIMIT, views=True))

        try:  # in a child: a file truncated while mapped kills that, not this process (SIGBUS)
            records.append(files.isolated(describe, path) if path != files.STDIO else describe())
        except AecError as e:
            _fail(_labelled(path, str(e)))
            status = EXIT_BAD_INPUT
        except Exception as e:  # noqa: BLE001 - the CLI promises one line, never a traceback
            _fail(f"{path}: internal error: {e}")
            status = status or EXIT_OTHER
    if as_json:
        _print(json.dumps(records, indent=2))
    elif records:  # nothing to describe: nothing on stdout, not an empty line
        _print("\n\n".join("\n".join(f"{k + ':':16}{_text(k, v)}" for k, v in r.items()) for r in records))
    _count_failures(len(paths) - len(records), len(paths))
    sys.exit(status)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON list, one object per model.")
def models(as_json) -> None:
    """List the models this installation has: the ids --model takes, each with its quality range (or its
    qualities, for a model imported with one network per quality, with the metric it was trained for); the
    default is marked."""
    from .weights.manifest import read_manifest

    try:
        manifest = read_manifest()
    except AecError as e:
        _usage_error(e)
    rows = [_model_row(manifest, model_id, entry) for model_id, entry in sorted(manifest.get("models", {}).items())]
    if as_json:
        _print(json.dumps(rows, indent=2))
        return
    for row in rows:
        _print(_model_line(row))


def _model_row(manifest: dict, model_id: str, entry: dict) -> dict:
    """What ``models`` says of one manifest entry, as plain values (the text and JSON forms both come from this)."""
    from .weights.manifest import qualities_of, weights_dir, weights_path
    from .weights.shipping import distribution_of

    path = None  # a kind whose files carry their decoder (no weights file)
    if entry.get("file") is not None:
        try:
            path = weights_path(manifest, model_id, weights_dir())
        except (AecError, KeyError):
            path = weights_dir() / str(entry.get("file", ""))
    try:
        only = qualities_of(entry)
    except AecError:
        only = None
    arch = entry.get("arch")
    return {
        "id": model_id,
        "default": model_id == manifest.get("default"),
        "file": None if path is None else str(path),
        "present": path is None or path.is_file(),
        "package": distribution_of(manifest, model_id),
        "arch": arch,
        "qualities": _quality_range(entry),
        "levels": None if only is None else list(only),
        "metric": arch.get("metric") if isinstance(arch, dict) and only is not None else None,
        "imported": entry.get("kind") in ("compressai", "compressai-vbr"),
        "experimental": bool(entry.get("experimental")),
    }


def _model_line(row: dict) -> str:
    from .weights.shipping import MAIN

    absent = f"not installed: in {row['package']}" if row["package"] != MAIN and not row["imported"] else None
    flags = (
        ("default", row["default"]),
        (absent or "weights file missing", not row["present"]),
        ("per image: no weights, each file carries its decoder", row["file"] is None),
        (f"imported from CompressAI, {row['metric']}-trained, {_networks(row['levels'])}", row["imported"]),
        ("experimental", row["experimental"]),
    )
    notes = [n for n, on in flags if on]
    step = None if row["levels"] is None else Q.grid_step(row["levels"])
    if step is not None:
        span = f"q {min(row['levels']):g}-{max(row['levels']):g} step {step:g}"
    elif row["levels"] is not None:
        span = "q " + ",".join(f"{q:g}" for q in row["levels"])
    elif row["qualities"]:
        span = f"q {row['qualities'][0]:g}-{row['qualities'][1]:g}"
    else:
        span = "q unknown (bad arch)"
    return f"{row['id']}  {span}" + (f"  ({', '.join(notes)})" if notes else "")


def _networks(levels: list[float] | None) -> str:
    return "one network per quality" if levels is None or Q.grid_step(levels) is None else "one variable-rate network"


def _quality_range(entry: dict) -> list[float] | None:
    """[lowest, highest] quality of a manifest entry's model; None when its arch is unusable."""
    from .weights.manifest import levels_of, qualities_of

    try:
        only = qualities_of(entry)
        return [min(only), max(only)] if only else [Q_MIN, float(levels_of(entry))]
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
@click.option(
    "-q", "--quality", type=float, help=f"aecodec's quality [default: {DEFAULT_QUALITY:g}, or a model's nearest]."
)
@click.option("--bpp", type=float, help="aecodec at the highest quality at or under this many bits per pixel.")
@click.option("--bytes", "max_bytes", type=int, help="aecodec at the highest quality that fits in this many bytes.")
@click.option("--codecs", default=DEFAULT_VERSUS, show_default=True, help="Classical codecs to compare (comma list).")
@click.option(
    "-o", "--output", callback=_named, help="The HTML page [default: beside the image, as NAME.compare.html]."
)
@click.option("--model", "model_id", help="Model id (see 'aecodec models').")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing page.")
def compare(image, quality, bpp, max_bytes, codecs, output, model_id, device, force) -> None:
    """Code IMAGE with aecodec and with each classical codec at the same file size, and write one self-contained
    HTML page (no network): a slider between any two results, zoom to pixels, bytes, bpp, PSNR and MS-SSIM.

    Each classical codec gets the quality whose file is the largest at or under aecodec's bytes."""
    try:
        _one_rate(quality, bpp, max_bytes, ("--bpp", "--bytes"))
        dest = output or str(Path(image).with_suffix(".compare.html"))
        if dest == files.STDIO:
            raise AecError("-o - is not supported: the page goes to a file (stdout gets the table)")
        jobs.check_dest(image, dest, force)
        names, notes = _versus(codecs)
        model_id, quality = check_installed_quality(quality, model_id)
    except (AecError, ValueError) as e:
        _usage_error(e)
    console = _Console()
    for note in notes:
        console.warn(note)
    import_compressai_lean()
    from . import api
    from .bench import compare as cmp
    from .bench import page
    from .bench.report import json_text
    from .format import bitstream as bs
    from .weights.store import load_codec

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
@click.option(
    "-q",
    "--qualities",
    help=f"aecodec's qualities [default: {DEFAULT_BENCH_QUALITIES}; a model with one network per quality: its own].",
)
@click.option("--pillow-qualities", help="The classical codecs' quality sweep [default: 5,10,20,...,90,95].")
@click.option("-o", "--output", callback=_named, help="Output folder [default: ./bench-FOLDER/].")
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
        model_id, aec_qualities = _bench_qualities(qualities, model_id)
        sweep = parse_floats(pillow_qualities, "--pillow-qualities") if pillow_qualities else list(BENCH_QUALITIES)
        names, notes = _versus(codecs)
        paths, skipped, out = _bench_inputs(folder, output, force)
    except (AecError, ValueError) as e:
        _usage_error(e)
    for note in notes + skipped:
        console.warn(note)
    import_compressai_lean()
    from tqdm import tqdm

    from .bench import report
    from .bench.rd import REPORT_FILES, build_coders, measure_images, report_files

    try:
        todo, descriptions, more = build_coders(
            aec_qualities, sweep, device, model_id=model_id, only=("aecodec", *names)
        )
        notes += more
        bar = tqdm(paths, desc="bench", unit="img", file=sys.stderr, disable=True if quiet else None)
        failed: list[str] = []  # an unreadable image fails alone: one line each, exit 2 after the report
        records = measure_images(bar, todo, notes, failed)
        for line in failed:
            console.fail(line)
        if not records:
            raise AecError(f"none of the {len(paths)} images in {folder} could be read")
        measured = list(dict.fromkeys(r["image"] for r in records))
        curves = report.aggregate(records)
        content = report_files(out.name, measured, records, curves, descriptions, notes)
        for name, data in content.items():
            files.write_output(str(out / name), data, force)
    except AecError as e:
        _fail(str(e))
        sys.exit(EXIT_BAD_INPUT)
    except Exception as e:  # noqa: BLE001 - the CLI promises one line, never a traceback
        _fail(f"internal error: {type(e).__name__}: {e}")
        sys.exit(EXIT_OTHER)
    if not quiet:
        console.line(f"wrote {', '.join(str(out / n) for n in content)}")
    _print(content[REPORT_FILES["bdrate"]].decode(), nl=False)
    if failed:
        console.fail(f"{len(failed)} of {len(paths)} images failed (see above)")
        sys.exit(EXIT_BAD_INPUT)


def _bench_inputs(folder: str, output: str | None, force: bool) -> tuple[list[Path], list[str], Path]:
    """The images of ``folder`` (and a note for each file skipped) and the report folder, refused up front
    where a report file would overwrite an input or, without ``force``, an earlier report."""
    from .bench.rd import REPORT_FILES
    from .training.data import image_files

    skipped: list[str] = []
    try:
        paths = image_files(folder, skipped)
    except FileNotFoundError as e:
        raise AecError(str(e)) from None
    out = Path(output or f"bench-{Path(files.resolved(folder)).name}")
    for name in REPORT_FILES.values():
        if files.resolved(str(out / name)) in {files.resolved(str(p)) for p in paths}:
            raise AecError(f"{out / name}: output would overwrite an input")
        files.check_output(str(out / name), force)
    return paths, skipped, out


@main.command("import")
@click.argument("source", type=click.Choice(["compressai"]))
@click.argument("arch")
@click.option("--metric", default="mse", show_default=True, help="What the networks were trained for: mse or ms-ssim.")
@click.option(
    "-q",
    "--quality",
    "qualities",
    help="CompressAI's zoo qualities to import, comma list (1-8; ours are 2 higher) [default: every one the zoo "
    "publishes, or those of the --from files].",
)
@click.option(
    "--from",
    "files",
    multiple=True,
    help="A local checkpoint (.pth.tar state dict or .safetensors) instead of the zoo's download; repeat it, one "
    "per quality in --quality's order.",
)
def import_(source, arch, metric, qualities, files) -> None:
    """Bring in networks trained elsewhere: CompressAI's ARCH (bmshj2018-factorized, bmshj2018-hyperprior,
    mbt2018-mean; the variable-rate bmshj2018-hyperprior-vbr and mbt2018-mean-vbr, one network for qualities 3 to
    10 in steps of 0.25, imported without --quality), converted to aecodec's weights in your models folder
    ($AECODEC_MODELS, else $XDG_DATA_HOME/aecodec/models). Every command then takes them with --model cai-ARCH-METRIC.

    A checkpoint is read without running code and every tensor is checked; anything else is refused."""
    from .weights.imported import REFUSED, user_models_dir

    try:
        if arch in REFUSED:  # before loading torch
            raise AecError(f"{arch} is not importable: {REFUSED[arch]}")
        zoo = _whole_numbers(qualities, "--quality") if qualities else None
        import_compressai_lean()
        from .weights.importer import import_compressai

        model_id, entry = import_compressai(arch, metric, zoo, [Path(f) for f in files], sys.stderr.isatty())
    except AecError as e:
        _usage_error(e)
    except Exception as e:  # noqa: BLE001 - the CLI promises one line, never a traceback
        _fail(f"internal error: {type(e).__name__}: {e}")
        sys.exit(EXIT_OTHER)
    have = Q.describe(entry["arch"]["qualities"])
    _print(f"{model_id}: {have} ({metric}) in {user_models_dir() / entry['file']}; use --model {model_id}")


def _whole_numbers(text: str, flag: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise AecError(f"{flag}: {text!r} is not a comma list of whole numbers") from None


def _bench_qualities(qualities: str | None, model_id: str | None) -> tuple[str, list[float]]:
    """(model id, aecodec's qualities in ``bench``): ``-q``, else the default sweep, or for a model with one
    network per quality all of its own."""
    from .bench import parse_floats

    model_id, levels, only = installed_qualities(model_id)
    asked = parse_floats(qualities or DEFAULT_BENCH_QUALITIES, "-q") if qualities or only is None else None
    asked = Q.integer_qualities(levels, only) if asked is None else asked
    return model_id, [check_quality(q, levels, model_id, only) for q in asked]


def train_options(command: Callable) -> Callable:
    """The ``train`` command's options, one per field of ``TrainConfig`` (its defaults and help: one place)."""
    from .training.config import cli_fields

    return options_from(cli_fields())(command)


@main.command()
@click.argument("train_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--val", "val_dir", type=click.Path(exists=True, file_okay=False), help="Validation folder.")
@click.option("--run-dir", default=None, help=f"Checkpoints and logs (default {RUNS / 'default'}).")
@train_options
def train(train_dir, val_dir, run_dir, **kw) -> None:
    """Train (or resume) the variable-rate network on a folder of photos.

    Resumes from RUN_DIR/last.pt when it exists. Ctrl-C saves a checkpoint. Multi-GPU:
    torchrun --nproc-per-node K -m codec.cli train ...
    """
    from .training.config import TrainConfig, parse_arch

    try:
        cfg = TrainConfig(train_dir=train_dir, val_dir=val_dir, **{**kw, "arch": parse_arch(kw["arch"])})
        if run_dir:
            cfg.run_dir = run_dir
        from .training.train import train as run_training

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
    from .training.export import checkpoint_meta, model_from_checkpoint
    from .training.export import export as do_export

    try:
        model, state = model_from_checkpoint(checkpoint, raw)
        entry = do_export(model, model_id, Path(weights_dir), half, checkpoint_meta(state, train_data, device_used))
    except (AecError, ValueError) as e:  # a kind that only trains, a bad checkpoint: one line
        _usage_error(e)
    _print(f"wrote {Path(weights_dir) / entry['file']} (sha256 {entry['sha256'][:16]}...)")


if __name__ == "__main__":
    main()
