"""File I/O shell: reading inputs (paths or stdin) and writing outputs atomically."""

from __future__ import annotations

import io
import os
import secrets
import struct
import sys
import time
import warnings
import zlib
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from . import bitstream as bs
from .errors import AecError

STDIO = "-"


def label(src: str) -> str:
    """How messages name an input: its path, or ``stdin`` for ``-``."""
    return "stdin" if src == STDIO else src


def read_bytes(src: str) -> bytes:
    """The bytes of a path, or of stdin for ``-``; a clear error for missing or empty input."""
    try:
        data = sys.stdin.buffer.read() if src == STDIO else Path(src).read_bytes()
    except FileNotFoundError:
        raise AecError(f"{src}: no such file") from None
    except IsADirectoryError:
        raise AecError(f"{src}: is a directory") from None
    except PermissionError:
        raise AecError(f"{src}: permission denied") from None
    if not data:
        raise AecError(f"{label(src)}: empty input")
    return data


#: Input formats Pillow may try. EPS is left out: Pillow hands it to Ghostscript, a large attack surface
#: for untrusted files; our own .aec is refused with a hint instead.
_NOT_INPUTS = {"EPS", "AEC"}


def input_formats() -> list[str]:
    Image.init()
    return [f for f in Image.OPEN if f not in _NOT_INPUTS]


def open_image(data: bytes, name: str) -> Image.Image:
    """Decode an input image fully (so truncation is caught here), honouring Pillow's bomb guard.

    Pillow only warns between ``MAX_IMAGE_PIXELS`` and twice that; here the warning is an error too, so
    a hostile header is refused before its pixels are allocated.
    """
    if data[: len(bs.MAGIC)] == bs.MAGIC:
        raise AecError(f"{name}: is already an .aec file (use 'aecodec decode')")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=input_formats())
            im.load()
        return im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise AecError(f"{name}: refused, image too large ({e})") from None
    except UnidentifiedImageError:
        raise AecError(f"{name}: not a readable image") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as e:
        raise AecError(f"{name}: damaged image ({type(e).__name__}: {e})") from None


#: Test-only hook: seconds to sleep between writing the temporary file and renaming it, so a test can
#: kill the process mid-write (tests/test_robust.py). Never set it in normal use.
TEST_WRITE_DELAY = "AECODEC_TEST_WRITE_DELAY"


def write_atomic(path: str | Path, data: bytes, force: bool) -> None:
    """Write via a temporary file in the same folder and rename, so a kill mid-write never leaves
    a partial file under the final name; refuse to replace an existing file without ``force``.

    A kill can leave the hidden ``.NAME.XXXX.part`` temporary behind, never a damaged ``NAME``.
    """
    path = Path(path)
    if path.exists() and not force:
        raise AecError(f"{path}: exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.part"
    try:
        # os.open with 0o666 lets the umask decide the mode, as for any new file (mkstemp would give 0600).
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        delay = os.environ.get(TEST_WRITE_DELAY)
        if delay:
            time.sleep(float(delay))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; best effort (not every filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_output(dest: str, data: bytes, force: bool) -> None:
    """Write to stdout or (atomically) to a file; a failed write (full disk, no permission, closed pipe) is an
    AecError naming the output, so the command reports it as bad input (exit 2), not as an internal error."""
    try:
        if dest == STDIO:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            write_atomic(dest, data, force)
    except OSError as e:
        raise AecError(f"{'stdout' if dest == STDIO else dest}: cannot write ({e.strerror or e})") from None


#: Output suffix → Pillow format. The format of a decoded image comes from its output name or ``--format``.
OUTPUT_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".ppm": "PPM",
    ".bmp": "BMP",
}
#: Lossy outputs are written at this quality (Pillow's 0-100 scale) unless ``--out-quality`` says otherwise:
#: high enough that the output adds little loss to the codec's own (Pillow's WebP default, 80, cost 1 dB).
DEFAULT_OUT_QUALITY = 95
LOSSY_FORMATS = {"JPEG", "WEBP"}
#: Formats that keep an alpha plane; to the others alpha is dropped only when asked (``--drop-alpha``).
ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}
#: Formats with nowhere to put an ICC profile or EXIF: writing them drops the metadata, with a warning.
NO_METADATA_FORMATS = {"PPM", "BMP"}


def output_format(dest: str, suffix: str | None = None) -> str:
    """The Pillow format for ``dest``: from ``suffix`` (``--format``) when given, else from the name; PNG for stdout."""
    if suffix is None:
        suffix = ".png" if dest == STDIO else Path(dest).suffix.lower()
    fmt = OUTPUT_FORMATS.get(suffix)
    if fmt is None:
        known = ", ".join(OUTPUT_FORMATS)
        raise AecError(f"{dest}: unknown output format {suffix or '(no extension)'!r} (use {known} or --format)")
    return fmt


def image_bytes(
    image: Image.Image, dest: str, fmt: str, quality: int = DEFAULT_OUT_QUALITY, drop_alpha: bool = False
) -> bytes:
    """Serialize a decoded image as ``fmt``: lossy formats at ``quality``; alpha kept or refused, never
    dropped unless ``drop_alpha``."""
    if image.mode in ("RGBA", "LA") and fmt not in ALPHA_FORMATS:
        if not drop_alpha:
            raise AecError(f"{dest}: the image has alpha, which {fmt} cannot hold (write .png, or use --drop-alpha)")
        image = image.convert(image.mode[:-1])
    meta = {k: v for k, v in (("icc_profile", image.info.get("icc_profile")), ("exif", image.info.get("exif"))) if v}
    if meta and fmt in NO_METADATA_FORMATS:
        warnings.warn(
            f"{dest}: {fmt} cannot hold the image's {' and '.join(sorted(meta))}; written without", stacklevel=2
        )
        meta = {}
    params = {"quality": quality} if fmt in LOSSY_FORMATS else {}
    try:
        return _save(image, fmt, **meta, **params)
    except (OSError, SyntaxError, ValueError, struct.error) as e:
        if not meta:
            raise
        _save(image, fmt, **params)  # still fails without metadata: not a metadata problem, raise that
        # e.g. EXIF over JPEG's 64 KiB segment, or EXIF that TIFF must parse and cannot. Refuse rather than drop it.
        raise AecError(
            f"{dest}: cannot store this image's EXIF/ICC metadata as {fmt} ({type(e).__name__}: {e}); "
            "write .png or .webp instead, which keep it verbatim"
        ) from None


def _save(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def output_paths(srcs: tuple[str, ...] | list[str], out: str | None, suffix: str) -> list[str]:
    """Where each input's result goes, decided for all inputs before anything is written.

    One input: ``-o`` file, ``-o`` folder (existing, or named with a trailing ``/``), stdout, or beside the
    input. Several inputs: ``-o`` must be such a folder (or absent: beside each input). Two inputs that would
    write the same output (``a.png a.jpg``) are refused, naming both.
    """
    many = len(srcs) > 1
    folder = out is not None and out != STDIO and (Path(out).is_dir() or out.endswith(("/", os.sep)))
    if many and out == STDIO:
        raise AecError("cannot write several outputs to stdout")
    if many and out is not None and not folder:
        raise AecError(f"-o {out}: with several inputs, -o must be an existing folder or end with /")
    dests = [_output_path(src, out, suffix, folder) for src in srcs]
    seen: dict[str, str] = {}
    for src, dest in zip(srcs, dests, strict=True):
        key = dest if dest == STDIO else str(Path(dest).resolve())
        if key in seen:
            raise AecError(f"{label(seen[key])} and {label(src)} would both write {dest}; use different names or -o")
        seen[key] = src
    return dests


def _output_path(src: str, out: str | None, suffix: str, folder: bool) -> str:
    if out == STDIO or (out is None and src == STDIO):
        return STDIO
    if folder:
        return str(Path(out) / f"{'stdin' if src == STDIO else Path(src).stem}{suffix}")
    if out is not None:
        return out
    return str(Path(src).with_suffix(suffix))
