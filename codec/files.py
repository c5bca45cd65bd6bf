"""File I/O shell: reading inputs (paths or stdin) and writing outputs atomically."""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from . import bitstream as bs
from .errors import AecError

STDIO = "-"


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
        raise AecError(f"{'stdin' if src == STDIO else src}: empty input")
    return data


def open_image(data: bytes, name: str) -> Image.Image:
    """Decode an input image fully (so truncation is caught here), honouring Pillow's bomb guard."""
    if data[: len(bs.MAGIC)] == bs.MAGIC:
        raise AecError(f"{name}: is already an .aec file (use 'aecodec decode')")
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
        return im
    except Image.DecompressionBombError as e:
        raise AecError(f"{name}: refused, image too large ({e})") from None
    except UnidentifiedImageError:
        raise AecError(f"{name}: not a readable image") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise AecError(f"{name}: damaged image ({e})") from None


def write_atomic(path: str | Path, data: bytes, force: bool) -> None:
    """Write via a temporary file in the same folder and rename, so a kill mid-write never leaves
    a partial file under the final name; refuse to replace an existing file without ``force``."""
    path = Path(path)
    if path.exists() and not force:
        raise AecError(f"{path}: exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_output(dest: str, data: bytes, force: bool) -> None:
    if dest == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        write_atomic(dest, data, force)


OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}


def image_bytes(image: Image.Image, dest: str) -> bytes:
    """Serialize a decoded image in the format its output name asks for (PNG for stdout)."""
    fmt = "PNG" if dest == STDIO else OUTPUT_FORMATS.get(Path(dest).suffix.lower())
    if fmt is None:
        raise AecError(f"{dest}: unknown output format (use .png, .jpg, .webp or .tif)")
    if fmt == "JPEG" and image.mode in ("RGBA", "LA"):
        image = image.convert(image.mode[:-1])  # JPEG has no alpha
    buf = io.BytesIO()
    params = {k: v for k, v in (("icc_profile", image.info.get("icc_profile")), ("exif", image.info.get("exif"))) if v}
    if fmt == "JPEG":
        params["quality"] = 95
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def output_path(src: str, out: str | None, suffix: str, many: bool) -> str:
    """Where one input's result goes: ``-o`` file, ``-o`` folder, stdout, or beside the input."""
    if out == STDIO or (out is None and src == STDIO):
        if many:
            raise AecError("cannot write several outputs to stdout")
        return STDIO
    if out is not None and (many or Path(out).is_dir() or out.endswith(os.sep)):
        name = "stdin" if src == STDIO else Path(src).stem
        return str(Path(out) / f"{name}{suffix}")
    if out is not None:
        return out
    return str(Path(src).with_suffix(suffix))
