"""File I/O shell: reading inputs (paths or stdin) and writing outputs atomically."""

from __future__ import annotations

import ctypes
import errno
import faulthandler
import io
import mmap
import os
import pickle
import re
import secrets
import signal
import stat
import struct
import sys
import warnings
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from ..core.errors import AecError
from . import bitstream as bs

STDIO = "-"
T = TypeVar("T")


def label(src: str) -> str:
    """How messages name an input: its path, or ``stdin`` for ``-``."""
    return "stdin" if src == STDIO else src


def read_bytes(src: str) -> bytes:
    """The bytes of a path, or of stdin for ``-``; a clear error for missing or empty input, and one line for
    whatever else the OS refuses (a symlink loop, a name too long, a path under a file, ``/proc/self/mem``,
    a closed stdin)."""
    try:
        if src == STDIO:
            if sys.stdin is None:  # started with stdin closed (``<&-``)
                raise OSError(errno.EBADF, "stdin is closed")
            data = sys.stdin.buffer.read()
        else:
            data = Path(src).read_bytes()
    except OSError as e:
        raise AecError(f"{label(src)}: {os_reason(e)}") from None
    if not data:
        raise AecError(f"{label(src)}: empty input")
    return data


def read_aec(src: str) -> bytes:
    """``read_bytes`` of an input to decode: refused in one line when its first bytes are not an ``.aec`` file's
    (an image given to ``decode`` by mistake), before anything else is looked at."""
    data = read_bytes(src)
    if data[: len(bs.MAGIC)] != bs.MAGIC:
        raise AecError(f"{label(src)}: not an .aec file")
    return data


#: How input errors name the common OS refusals; any other is its strerror.
_OS_REASONS = {
    errno.ENOENT: "no such file",
    errno.EISDIR: "is a directory",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "too many levels of symbolic links (a symlink loop?)",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOTDIR: "a part of the path is not a folder",
}


def os_reason(e: OSError) -> str:
    """An OSError as the few words a one-line message needs."""
    return _OS_REASONS.get(e.errno or 0) or e.strerror or type(e).__name__


def resolved(path: str) -> str:
    """The absolute, symlink-free form of ``path`` for comparing two paths; a symlink loop or a name too long
    stays as it is (``Path.resolve`` raises on those), since comparing must never fail."""
    try:
        return os.path.realpath(path)
    except (OSError, RuntimeError, ValueError):
        return os.path.abspath(path)


def map_or_read(src: str) -> bytes | mmap.mmap:
    """A regular file mapped rather than read, so looking at a large file costs no memory of its size;
    stdin, streams and anything unmappable are read (``read_bytes``, with its errors). The mapping closes
    when the last view into it goes (an exception's traceback may hold one, so it is not closed here)."""
    if src != STDIO:
        try:
            with open(src, "rb") as fh:
                st = os.fstat(fh.fileno())
                if st.st_size and stat.S_ISREG(st.st_mode):
                    return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError:
            pass  # missing, a folder, unreadable: read_bytes says which, in its words
    return read_bytes(src)


def isolated(fn: Callable[[], T], what: str) -> T:
    """``fn()`` run in a forked child, its result (or AecError) passed back pickled.

    For work on a mapped file: another process that truncates the file while it is mapped makes reading the
    lost pages kill the reader with SIGBUS, which Python cannot catch. The child dies instead, and ``what``
    is told it changed while being read. Without ``fork`` (not POSIX), ``fn`` runs here.
    """
    if not hasattr(os, "fork"):
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's stack
        status = 0
        try:
            os.close(r)
            faulthandler.disable()  # a SIGBUS here is expected and reported by the parent, not dumped
            try:
                out = ("ok", fn())
            except AecError as e:
                out = ("error", str(e))
            except Exception as e:  # noqa: BLE001 - passed back as one line, as the parent would report it
                out = ("internal", f"{type(e).__name__}: {e}")
            _write_all(w, pickle.dumps(out))
        except BaseException:  # noqa: BLE001 - whatever happens, the child must not run the parent's code
            status = 1
        finally:
            os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise AecError(f"{what}: the file changed while it was read ({name}: truncated by another program?)")
    if not payload:
        raise AecError(f"{what}: could not be read (its reader exited with status {os.waitstatus_to_exitcode(status)})")
    kind, value = pickle.loads(payload)
    if kind == "error":
        raise AecError(value)
    if kind == "internal":
        raise RuntimeError(value)
    return value


#: Input formats Pillow may try. EPS is left out: Pillow hands it to Ghostscript, a large attack surface
#: for untrusted files; our own .aec is refused with a hint instead.
_NOT_INPUTS = {"EPS", "AEC"}


def input_formats() -> list[str]:
    Image.init()
    return [f for f in Image.OPEN if f not in _NOT_INPUTS]


def open_image(data: bytes, name: str) -> Image.Image:
    """Decode an input image fully (so truncation is caught here), honouring Pillow's bomb guard; an
    animation or multi-page file gives a warning naming its frame count (its first frame is coded).

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
            frames = getattr(im, "n_frames", 1)
        if frames > 1:  # a warning, not a refusal: a batch of animations still codes the rest
            warnings.warn(
                f"{name}: has {frames} frames (animated or multi-page); only the first is coded", stacklevel=2
            )
        return im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise AecError(f"{name}: refused, image too large ({e})") from None
    except UnidentifiedImageError:
        raise AecError(f"{name}: not a readable image") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as e:
        raise AecError(f"{name}: damaged image ({type(e).__name__}: {e})") from None


#: Names of this process's own descriptors: ``/dev/stdout``, ``/dev/fd/N``, ``/proc/self/fd/N``.
_DESCRIPTOR = re.compile(r"^/(?:dev/(?:std(in|out|err)|fd/(\d+))|proc/(?:self|\d+)/fd/(\d+))$")
_STD_FDS = {"in": 0, "out": 1, "err": 2}


def descriptor_of(path: str | Path) -> int | None:
    """The descriptor a path names, following symlinks (``out.png -> /proc/self/fd/1`` gives 1), else None.

    Such a path is written through the descriptor, as a shell redirection would be, never replaced.
    """
    name = os.path.abspath(path)
    for _ in range(40):  # the kernel's own symlink limit
        m = _DESCRIPTOR.match(name)
        if m:
            std, fd, proc_fd = m.groups()
            if proc_fd is not None and not name.startswith(("/proc/self/", f"/proc/{os.getpid()}/")):
                return None  # another process's descriptor: an ordinary path for us
            return _STD_FDS[std] if std else int(fd or proc_fd)
        if not os.path.islink(name):
            return None
        name = os.path.normpath(os.path.join(os.path.dirname(name), os.readlink(name)))
    return None


def is_stream(path: str | Path) -> bool:
    """True for outputs that are written into rather than replaced: descriptors, FIFOs, devices, sockets.

    Writing into them loses nothing, so they need no ``--force`` (``-o /dev/null`` works as with any tool).
    """
    if descriptor_of(path) is not None:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def check_output(dest: str, force: bool) -> None:
    """Refuse early what the write would refuse: an existing file without ``force``, binary data to a terminal.

    Only a hint: the write itself is what makes never-overwrite hold under races (``write_atomic``).
    """
    if dest == STDIO:
        if os.isatty(1) and not force:
            raise AecError("stdout is a terminal: refusing to write binary data to it (redirect it, or use --force)")
        return
    if output_exists(dest) and not force:
        raise AecError(f"{dest}: exists (use --force to overwrite)")


def output_exists(dest: str) -> bool:
    """Whether writing ``dest`` would replace a file (streams are written into, never replaced)."""
    return dest != STDIO and not is_stream(dest) and os.path.lexists(dest)


def write_atomic(path: str | Path, data: bytes, force: bool) -> None:
    """Write via a temporary file in the same folder, then move it into place, so a kill mid-write never
    leaves a partial file under the final name.

    Without ``force`` the move is itself the existence check (``renameat2(RENAME_NOREPLACE)``, else
    ``link()``), so of two racing writers exactly one wins and the other gets "exists". Streams (FIFOs,
    devices, ``/dev/stdout``) are written into, never replaced. A kill can leave the hidden
    ``.NAME.XXXX.part`` temporary behind, never a damaged ``NAME``.
    """
    if is_stream(path):
        write_stream(path, data)
        return
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise AecError(f"{path}: cannot write ({path.parent} is not a folder)") from None
    tmp = path.parent / f".{path.name[:200]}.{secrets.token_hex(4)}.part"  # within NAME_MAX for any NAME
    try:
        # os.open with 0o666 lets the umask decide the mode, as for any new file (mkstemp would give 0600).
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _move_into_place(tmp, path, force)
    except FileExistsError:
        raise AecError(f"{path}: exists (use --force to overwrite)") from None
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _move_into_place(tmp: Path, path: Path, force: bool) -> None:
    """The step that makes the written temporary ``path``: replacing it with ``force``, else only if absent."""
    if force:
        os.replace(tmp, path)
    else:
        _move_no_replace(tmp, path)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _renameat2() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.renameat2
    except (OSError, AttributeError):  # not Linux, or glibc older than 2.28
        return None


def _move_no_replace(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists (FileExistsError), atomically: no window in which
    another writer's file could be replaced."""
    renameat2 = _renameat2()
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(tmp), _AT_FDCWD, os.fsencode(path), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # else: this filesystem lacks the flag
            raise OSError(err, os.strerror(err), str(path))
    os.link(tmp, path)  # fails with EEXIST if path exists; the caller removes tmp


def write_stream(dest: str | Path, data: bytes) -> None:
    """Write all of ``data`` into stdout (``-``), a descriptor path, or a FIFO or device; a short write is an
    OSError (a pipe whose reader left gives EPIPE, a closed stdout EBADF), never a silent success."""
    fd = _stdout_fd() if dest == STDIO else descriptor_of(dest)
    if fd is None and dest == STDIO:  # stdout replaced by an in-memory stream (tests, embedding apps)
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    if fd is not None:
        _write_all(fd, data)
        return
    out = os.open(dest, os.O_WRONLY)
    try:
        _write_all(out, data)
    finally:
        os.close(out)


def _stdout_fd() -> int | None:
    """The descriptor behind ``sys.stdout`` (flushed first), None when it has none; EBADF when stdout is closed."""
    if sys.stdout is None:  # started with stdout closed (``>&-``)
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    sys.stdout.flush()
    try:
        return sys.stdout.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[n:]


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
    """Write to stdout or (atomically) to a file; a failed write (full disk, no permission, closed pipe, a
    name too long) is an AecError naming the user's output, never the temporary file, so the command
    reports it as bad input (exit 2), not as an internal error."""
    name = "stdout" if dest == STDIO else dest
    try:
        if dest == STDIO:
            check_output(dest, force)
            write_stream(dest, data)
        else:
            write_atomic(dest, data, force)
    except OSError as e:
        raise AecError(f"{name}: cannot write ({e.strerror or type(e).__name__})") from None


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


#: The largest ICC profile each output format carries so that readers take it back. JPEG spreads it over at
#: most 255 APP2 markers of 65533 bytes, 14 of them overhead (Pillow writes a wrong count above that, in time
#: quadratic in the size); Pillow's PNG reader refuses an ``iCCP`` chunk inflating past MAX_TEXT_CHUNK (1 MiB).
ICC_LIMITS = {"JPEG": 255 * (65533 - 14), "PNG": PngImagePlugin.MAX_TEXT_CHUNK}


#: The largest side each output format holds (libjpeg: 65500 px; libwebp: 16383 px); the others take any image
#: the decoder's pixel limit lets through.
MAX_SIDES = {"JPEG": 65500, "WEBP": 16383}


def check_fits_format(dest: str, fmt: str, width: int, height: int) -> None:
    """Refuse, before decoding, an image larger than ``fmt`` can hold (``MAX_SIDES``)."""
    limit = MAX_SIDES.get(fmt)
    if limit is not None and max(width, height) > limit:
        raise AecError(f"{dest}: {fmt} holds at most {limit} px on a side, the image is {width}x{height} (write .png)")


def output_format(dest: str, suffix: str | None = None) -> str:
    """The Pillow format for ``dest``: from ``suffix`` (``--format``) when given, else from the name; PNG for
    stdout and for streams named without a suffix (``/dev/null``, a FIFO)."""
    if suffix is None:
        suffix = Path(dest).suffix.lower() if dest != STDIO else ""
        if not suffix and (dest == STDIO or is_stream(dest)):
            suffix = ".png"
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
    check_fits_format(dest, fmt, image.width, image.height)
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
    icc_limit = ICC_LIMITS.get(fmt)
    if icc_limit is not None and len(meta.get("icc_profile", b"")) > icc_limit:
        raise AecError(
            f"{dest}: the image's ICC profile ({len(meta['icc_profile'])} bytes) is over the {icc_limit} bytes "
            f"{fmt} can carry; write .tif or .webp instead"
        )
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


def output_paths(srcs: tuple[str, ...] | list[str], out: str | None, suffix: str, force: bool = False) -> list[str]:
    """Where each input's result goes, decided for all inputs before anything is written.

    One input: ``-o`` file, ``-o`` folder (existing, or named with a trailing ``/``), stdout, or beside the
    input. Several inputs: ``-o`` must be such a folder (or absent: beside each input). Two inputs that would
    write the same output (``a.png a.jpg``) are refused, naming both. Binary data for a terminal is refused
    here too (``check_output``), before any work.
    """
    many = len(srcs) > 1
    folder = out is not None and out != STDIO and (os.path.isdir(out) or out.endswith(("/", os.sep)))
    if many and out == STDIO:
        raise AecError("cannot write several outputs to stdout")
    if many and out is not None and not folder:
        raise AecError(f"-o {out}: with several inputs, -o must be an existing folder or end with /")
    dests = [_output_path(src, out, suffix, folder) for src in srcs]
    refuse_shared_outputs(srcs, dests)
    if STDIO in dests:
        check_output(STDIO, force)
    return dests


def refuse_shared_outputs(srcs: Iterable[str], dests: Iterable[str]) -> None:
    """AecError naming both inputs when two of them would write the same output."""
    seen: dict[str, str] = {}
    for src, dest in zip(srcs, dests, strict=True):
        key = dest if dest == STDIO else resolved(dest)
        if key in seen:
            raise AecError(f"{label(seen[key])} and {label(src)} would both write {dest}; use different names or -o")
        seen[key] = src


def input_suffixes() -> set[str]:
    """File name suffixes of the image formats an input may be (``input_formats``): what a walked folder codes."""
    formats = set(input_formats())
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in formats}


def default_output(src: str, suffix: str) -> str:
    """An input's output without ``-o``: beside it, named with ``suffix``; stdout for stdin."""
    return STDIO if src == STDIO else str(Path(src).with_suffix(suffix))


def _output_path(src: str, out: str | None, suffix: str, folder: bool) -> str:
    if out == STDIO:
        return STDIO
    if folder:
        return str(Path(out) / f"{'stdin' if src == STDIO else Path(src).stem}{suffix}")
    if out is not None:
        return out
    return default_output(src, suffix)
